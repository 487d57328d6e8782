package bot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slack-go/slack"
	bolt "go.etcd.io/bbolt"

	"github.com/recoverbot/recoverbot/internal/slacktest"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
)

// tooDeep is valid JSON nested deeper than encoding/json reads back: what a
// 10,000-deep event becomes once wrapped in an execution and its audit.
func tooDeep() []byte {
	return []byte(strings.Repeat(`{"a":`, 10_050) + "1" + strings.Repeat("}", 10_050))
}

// runCourier delivers the outbox until the test ends.
func runCourier(t *testing.T, c *recovery.Courier) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// An open execution and an outbox message that cannot be decoded (issue #12
// item 1) neither stop start-up nor block delivery: on main, Start failed
// with "load open executions: … exceeded max depth", and the courier retried
// the bad message forever, so the approval message behind it never came.
// Both are quarantined and counted in /metrics.
func TestUndecodableRecordsDoNotStopTheBot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), slackTimeout)
	defer cancel()
	path := filepath.Join(t.TempDir(), "r.db")
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	raw, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = raw.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte("executions")).Put([]byte("00DEEP"), tooDeep()); err != nil {
			return err
		}
		if err := tx.Bucket([]byte("open")).Put([]byte("00DEEP"), nil); err != nil {
			return err
		}
		out := tx.Bucket([]byte("outbox"))
		if err := out.Put(binary.BigEndian.AppendUint64(nil, 1), tooDeep()); err != nil {
			return err
		}
		return out.SetSequence(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	raw.Close()

	db, err = store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // after the engine's close
	eng := fullEngine(t, ctx, db)    // starts though an open execution is undecodable
	a, err := eng.Submit(ctx, memoryLeak())
	if err != nil || a.PlanID == "" {
		t.Fatalf("Submit = %+v, %v; want a plan", a, err)
	}

	srv := slacktest.New()
	t.Cleanup(srv.Close)
	srv.AddChannel(incident, "incident")
	api := slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL()))
	runCourier(t, &recovery.Courier{Store: db, Wake: eng.Wake(),
		Notifier: &SlackNotifier{API: api, Store: db, Engine: eng, Channel: incident}})
	err = srv.WaitFor(ctx, func(s *slacktest.Server) bool {
		for _, m := range s.Messages(incident) {
			if strings.Contains(string(m.Blocks), a.PlanID) {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("the plan behind an undecodable outbox message was never posted: %v", err)
	}

	q, err := db.Quarantine(ctx)
	if err != nil || len(q) != 2 {
		t.Fatalf("Quarantine = %+v, %v; want the execution and the outbox message", q, err)
	}
	m := NewMetrics(func() float64 { return 0 })
	m.WatchStore(db.Counts)
	if got := gathered(t, m.Registry, "recoverbot_store_quarantined_records"); got != 2 {
		t.Errorf("recoverbot_store_quarantined_records = %v, want 2", got)
	}
}

// gathered is the sum of a metric's values as /metrics would show them.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return sum
}

// noticeSource is a planSource for notices only.
type noticeSource struct{}

func (noticeSource) Describe([]recovery.Action) []string { return nil }
func (noticeSource) Paused() bool                        { return false }
func (noticeSource) Breaker() string                     { return "" }
func (noticeSource) Freezes() []recovery.Freeze          { return nil }

// A message Slack refuses for good, or that fails MaxAttempts times, is
// dead-lettered and counted; the messages behind it are delivered (issue #12:
// on main the courier retried it forever).
func TestDeadLetterDoesNotBlockTheOutbox(t *testing.T) {
	for _, tc := range []struct {
		name     string
		code     string
		failures int
	}{
		{"refused for good", "msg_too_long", 1},
		{"after max attempts", "internal_error", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), slackTimeout)
			defer cancel()
			db, err := store.Open(filepath.Join(t.TempDir(), "d.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			srv := slacktest.New()
			t.Cleanup(srv.Close)
			srv.AddChannel(incident, "incident")
			srv.FailNextWith("chat.postMessage", tc.failures, tc.code)
			err = db.Record(ctx, nil, []recovery.Notification{
				{Kind: "notice", Text: "first"}, {Kind: "notice", Text: "second"}, {Kind: "notice", Text: "third"}})
			if err != nil {
				t.Fatal(err)
			}
			metrics := NewMetrics(func() float64 { return 0 })
			api := slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL()))
			runCourier(t, &recovery.Courier{Store: db, MaxAttempts: 3, OnDeadLetter: metrics.DeadLettered,
				Notifier: &SlackNotifier{API: api, Store: db, Engine: noticeSource{}, Channel: incident}})
			if err := srv.WaitFor(ctx, func(s *slacktest.Server) bool { return len(s.Messages(incident)) == 2 }); err != nil {
				t.Fatalf("messages behind the refused one: %v", err)
			}
			if got := srv.Messages(incident); got[0].Text != "second" || got[1].Text != "third" {
				t.Errorf("delivered %q, %q; want second, third", got[0].Text, got[1].Text)
			}
			dl, err := db.DeadLetters(ctx)
			if err != nil || len(dl) != 1 || dl[0].Notification.Text != "first" || !strings.Contains(dl[0].Reason, tc.code) {
				t.Fatalf("DeadLetters = %+v, %v; want the first message with %s", dl, err, tc.code)
			}
			if got := gathered(t, metrics.Registry, "recoverbot_notifications_dead_lettered_total"); got != 1 {
				t.Errorf("recoverbot_notifications_dead_lettered_total{kind=notice} = %v, want 1", got)
			}
		})
	}
}

// The admin API lists dead letters and quarantined records, and exports an
// audit trail longer than one page in full (it streams page by page).
func TestSetAsideAndAuditExportOverHTTP(t *testing.T) {
	h := newAPI(t, recovery.ModeDryRun, "", "ad-tok")
	ctx := context.Background()
	if err := h.db.Record(ctx, nil, []recovery.Notification{{Kind: "notice", Text: "refused"}}); err != nil {
		t.Fatal(err)
	}
	page, err := h.db.Outbox(ctx, 0, 10)
	if err != nil || len(page) != 1 {
		t.Fatalf("outbox = %v, %v", page, err)
	}
	if err := h.db.DeadLetter(ctx, page[0].Seq, "slack: msg_too_long"); err != nil {
		t.Fatal(err)
	}
	r := h.do("GET", "/v1/deadletters", "ad-tok", nil)
	if r.status != 200 || !strings.Contains(r.raw, `"text":"refused"`) || !strings.Contains(r.raw, "msg_too_long") {
		t.Errorf("GET /v1/deadletters = %d %s; want the refused notice and its reason", r.status, r.raw)
	}
	if r := h.do("GET", "/v1/quarantine", "ad-tok", nil); r.status != 200 || !strings.Contains(r.raw, `"quarantined":[]`) {
		t.Errorf("GET /v1/quarantine = %d %s; want an empty list", r.status, r.raw)
	}

	const n = 1234 // more than two pages of the export
	recs := make([]recovery.AuditRecord, n)
	for i := range recs {
		recs[i] = recovery.AuditRecord{At: h.clock.Now(), Actor: "U1", Reason: "r"}
	}
	if err := h.db.Record(ctx, recs, nil); err != nil {
		t.Fatal(err)
	}
	r = h.do("GET", "/v1/audit?since=1h", "ad-tok", nil)
	if got := strings.Count(r.raw, "\n"); r.status != 200 || got != n {
		t.Errorf("GET /v1/audit = %d with %d lines, want 200 with %d", r.status, got, n)
	}
}

// failingTransport fails the first n round trips as a dropped connection
// would, then lets requests through.
type failingTransport struct {
	mu sync.Mutex
	n  int
}

func (f *failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	fail := f.n > 0
	if fail {
		f.n--
	}
	f.mu.Unlock()
	if fail {
		return nil, errors.New("connect: connection refused")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// A Slack outage (5xx answers, or no connection at all) is a wait, not an
// attempt: more failures than MaxAttempts dead-letter nothing, and once Slack
// is back every message is delivered in order (the #12 review: each outage
// of about seven minutes dead-lettered the approval messages one by one).
func TestSlackOutageDeadLettersNothing(t *testing.T) {
	const maxAttempts, failures = 2, 4
	for _, tc := range []struct {
		name  string
		setup func(srv *slacktest.Server) *http.Client
	}{
		{"503 answers", func(srv *slacktest.Server) *http.Client {
			srv.FailNextStatus("chat.postMessage", failures, http.StatusServiceUnavailable)
			return http.DefaultClient
		}},
		{"connection fails", func(*slacktest.Server) *http.Client {
			return &http.Client{Transport: &failingTransport{n: failures}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), slackTimeout)
			defer cancel()
			db, err := store.Open(filepath.Join(t.TempDir(), "d.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			srv := slacktest.New()
			t.Cleanup(srv.Close)
			srv.AddChannel(incident, "incident")
			client := tc.setup(srv)
			err = db.Record(ctx, nil, []recovery.Notification{
				{Kind: "notice", Text: "first"}, {Kind: "notice", Text: "second"}})
			if err != nil {
				t.Fatal(err)
			}
			api := slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL()), slack.OptionHTTPClient(client))
			runCourier(t, &recovery.Courier{Store: db, MaxAttempts: maxAttempts,
				Notifier: &SlackNotifier{API: api, Store: db, Engine: noticeSource{}, Channel: incident}})
			if err := srv.WaitFor(ctx, func(s *slacktest.Server) bool { return len(s.Messages(incident)) == 2 }); err != nil {
				dl, _ := db.DeadLetters(context.Background())
				t.Fatalf("messages after the outage: %v (got %+v, dead letters: %+v)", err, srv.Messages(incident), dl)
			}
			if got := srv.Messages(incident); got[0].Text != "first" || got[1].Text != "second" {
				t.Errorf("delivered %q, %q; want first, second", got[0].Text, got[1].Text)
			}
			if dl, err := db.DeadLetters(ctx); err != nil || len(dl) != 0 {
				t.Errorf("DeadLetters = %+v, %v; want none", dl, err)
			}
		})
	}
}

// Only Slack's answers about a message are attempts; everything that says
// Slack was not reached, or did not answer, is an outage.
func TestSlackDown(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"503", slack.StatusCodeError{Code: 503, Status: "503 Service Unavailable"}, true},
		{"no connection", &url.Error{Op: "Post", URL: "https://slack.com/api/chat.postMessage", Err: errors.New("connection refused")}, true},
		{"our deadline", fmt.Errorf("post: %w", context.DeadlineExceeded), true},
		{"404 is an answer", slack.StatusCodeError{Code: 404, Status: "404 Not Found"}, false},
		{"an answer about the message", slack.SlackErrorResponse{Err: "internal_error"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := slackDown(tc.err); got != tc.want {
				t.Errorf("slackDown(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
