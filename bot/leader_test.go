package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/recoverbot/recoverbot/internal/etcdtest"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/store/etcdstore"
)

type noFence struct{}

func (noFence) SetFence(string, int64) {}

func etcdCli(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// servedReplica is one Serve on loopback with a bbolt file and the given
// leadership.
type servedReplica struct {
	base string
	done chan error
	stop context.CancelFunc
}

func serveReplica(t *testing.T, name string, lead Leadership) *servedReplica {
	t.Helper()
	env := map[string]string{"RECOVERBOT_MODE": "full", "RECOVERBOT_LISTEN": "127.0.0.1:0",
		"RECOVERBOT_DATA": filepath.Join(t.TempDir(), "r.db"), "POD_NAME": name}
	getenv := func(k string) string { return env[k] }
	cfg, err := LoadConfig("", getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	r := &servedReplica{done: make(chan error, 1), stop: stop}
	addr := make(chan string, 1)
	go func() {
		r.done <- Serve(ctx, cfg, Options{Getenv: getenv, Log: NewLogger("text", io.Discard), Drivers: logdriver.New(nil).All(),
			Leadership: lead, Ready: func(a string) { addr <- a }})
	}()
	select {
	case r.base = <-addr:
	case err := <-r.done:
		t.Fatalf("Serve: %v", err)
	case <-time.After(slackTimeout):
		t.Fatal("Serve did not become ready")
	}
	r.base = "http://" + r.base
	t.Cleanup(func() {
		stop()
		select {
		case <-r.done:
		case <-time.After(slackTimeout):
			t.Error("Serve did not stop")
		}
	})
	return r
}

func (r *servedReplica) do(t *testing.T, method, path, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, r.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// waitFor polls cond until it holds or the deadline passes: the replica has
// no event to wait on from outside but its HTTP answers.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s", what)
		}
		<-tick.C
	}
}

var writeEndpoints = []struct{ path, body string }{
	{"/v1/events", `{"type":"LATENCY_ANOMALY","severity":"WARNING","confidence":0.9,"context":{"cause":"DATABASE"}}`},
	{"/v1/alertmanager", `{"version":"4","status":"firing","alerts":[]}`},
	{"/v1/executions/x/approve", ""},
	{"/v1/executions/x/reject", ""},
	{"/v1/executions/x/rollback", ""},
	{"/v1/executions/x/false", ""},
	{"/v1/pause", ""},
	{"/v1/resume", ""},
	{"/v1/ask", `{"question":"why"}`},
}

// A follower serves reads and answers every write with 503 and Retry-After
// (Alertmanager retries 5xx), naming the leader; /readyz is ready and says
// who leads; /metrics has the leader gauge and info. When the leader goes,
// this replica takes over and takes writes; when its own lease goes, Serve
// ends with an error (the process exits and restarts as a follower).
func TestFollowerRefusesWritesThenTakesOverThenExitsOnLoss(t *testing.T) {
	endpoint := etcdtest.Start(t, 1).Endpoints[0]
	ctx := context.Background()
	holder := etcdstore.NewElection(etcdCli(t, endpoint), noFence{}, "/rb/", "pod-a", 2*time.Second, nil)
	if err := holder.Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Close(ctx) })
	r := serveReplica(t, "pod-b", etcdstore.NewElection(etcdCli(t, endpoint), noFence{}, "/rb/", "pod-b", 2*time.Second, nil))

	for _, e := range writeEndpoints {
		resp, body := r.do(t, "POST", e.path, e.body)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" ||
			!strings.Contains(body, `"not_leader"`) || !strings.Contains(body, "pod-a leads") {
			t.Errorf("follower POST %s: %d Retry-After %q %s; want 503, Retry-After 5, not_leader naming pod-a",
				e.path, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	for _, path := range []string{"/v1/executions", "/v1/status", "/v1/audit", "/healthz"} {
		if resp, body := r.do(t, "GET", path, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("follower GET %s: %d %s, want 200", path, resp.StatusCode, body)
		}
	}
	var ready struct {
		Status  string `json:"status"`
		Leader  string `json:"leader"`
		Leading bool   `json:"leading"`
	}
	resp, body := r.do(t, "GET", "/readyz", "")
	if err := json.Unmarshal([]byte(body), &ready); err != nil || resp.StatusCode != http.StatusOK ||
		ready.Status != "ready" || ready.Leader != "pod-a" || ready.Leading {
		t.Errorf("follower /readyz: %d %s, want 200 ready, leader pod-a, not leading", resp.StatusCode, body)
	}
	if _, m := r.do(t, "GET", "/metrics", ""); !strings.Contains(m, "\nrecoverbot_leader 0\n") ||
		!strings.Contains(m, `recoverbot_leader_info{leader="pod-a"} 1`) {
		t.Errorf("follower /metrics lacks recoverbot_leader 0 and the leader info:\n%s", grepLines(m, "recoverbot_leader"))
	}

	// The leader goes: this replica takes over.
	if err := holder.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod-b leads", func() bool {
		_, body := r.do(t, "GET", "/readyz", "")
		return json.Unmarshal([]byte(body), &ready) == nil && ready.Leading && ready.Leader == "pod-b"
	})
	if resp, body := r.do(t, "POST", "/v1/events", writeEndpoints[0].body); resp.StatusCode != http.StatusAccepted {
		t.Errorf("leader POST /v1/events: %d %s, want 202", resp.StatusCode, body)
	}
	if _, m := r.do(t, "GET", "/metrics", ""); !strings.Contains(m, "\nrecoverbot_leader 1\n") ||
		!strings.Contains(m, `recoverbot_leader_info{leader="pod-b"} 1`) {
		t.Errorf("leader /metrics:\n%s", grepLines(m, "recoverbot_leader"))
	}

	// Its lease goes (revoked, as an expiry would): Serve ends with an error.
	cli := etcdCli(t, endpoint)
	got, err := cli.Get(ctx, etcdstore.LeaderPrefix("/rb/"), clientv3.WithFirstCreate()...)
	if err != nil || len(got.Kvs) != 1 {
		t.Fatalf("election key: %+v, %v", got, err)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(got.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		if !errors.Is(err, ErrDeposed) {
			t.Fatalf("Serve after its lease went: %v, want a leadership-lost error", err)
		}
		r.done <- err // for the cleanup
	case <-time.After(slackTimeout):
		t.Fatal("Serve kept running after losing leadership")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// fenceAfter is a store whose writes are fenced: another replica leads.
type fencedWrites struct{ recovery.Store }

func (fencedWrites) Transition(context.Context, recovery.Transition) (recovery.Execution, error) {
	return recovery.Execution{}, fmt.Errorf("transition p1: %w", recovery.ErrFenced)
}

func (fencedWrites) PutSetting(context.Context, string, []byte) error {
	return fmt.Errorf("put setting: %w", recovery.ErrFenced)
}

// A fenced write, wherever the engine made it, is reported once on the
// channel Serve ends on; other errors are not.
func TestFencedWriteIsReportedOnce(t *testing.T) {
	f := newFencedStore(fencedWrites{})
	if _, err := f.Transition(context.Background(), recovery.Transition{}); !errors.Is(err, recovery.ErrFenced) {
		t.Fatalf("the wrapper changed the error: %v", err)
	}
	if err := f.PutSetting(context.Background(), "k", nil); !errors.Is(err, recovery.ErrFenced) {
		t.Fatalf("the wrapper changed the error: %v", err)
	}
	select {
	case err := <-f.fenced:
		if !strings.Contains(err.Error(), "transition p1") {
			t.Errorf("reported %v, want the first fenced write", err)
		}
	default:
		t.Fatal("a fenced write was not reported")
	}
	select {
	case err := <-f.fenced:
		t.Errorf("reported twice: %v", err)
	default:
	}
}

// The leader label: removed at start (a deposed leader's pod keeps it), set
// once leading, as merge patches on this replica's own pod only.
func TestPodLabelerPatchesItsOwnPod(t *testing.T) {
	cs := fake.NewClientset()
	p := &podLabeler{client: cs, namespace: "ops", name: "recoverbot-0"}
	_ = p.set(context.Background(), false) // no such pod in the fake: the patch is still what we assert
	_ = p.set(context.Background(), true)
	var got []string
	for _, a := range cs.Actions() {
		pa, ok := a.(k8stesting.PatchAction)
		if !ok {
			t.Fatalf("unexpected action %v", a)
		}
		got = append(got, fmt.Sprintf("%s %s/%s %s", pa.GetVerb(), pa.GetNamespace(), pa.GetName(), pa.GetPatch()))
	}
	want := []string{
		`patch ops/recoverbot-0 {"metadata":{"labels":{"recoverbot.io/leader":null}}}`,
		`patch ops/recoverbot-0 {"metadata":{"labels":{"recoverbot.io/leader":"true"}}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("actions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Issue #13 (HA): followers logged every 503 to a write at ERROR, flooding
// their logs under the intake's rate. A follower's refusal is expected: it is
// logged at debug, and still answered 503 not_leader.
func TestFollowerRefusalIsLoggedAtDebug(t *testing.T) {
	var logs bytes.Buffer
	a := &API{Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Leading: func() bool { return false }}
	r := httptest.NewRequest(http.MethodPost, "/v1/events", nil)
	w := httptest.NewRecorder()
	err := a.mayWrite(r)
	if err == nil {
		t.Fatal("a follower may write")
	}
	a.writeError(w, r, err)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"not_leader"`) {
		t.Errorf("answer %d %s, want 503 not_leader", w.Code, w.Body)
	}
	if got := logs.String(); !strings.Contains(got, "level=DEBUG") || strings.Contains(got, "level=ERROR") {
		t.Errorf("log %q: want one debug line, no error", got)
	}
}

// unansweredOnce is a store whose first Accept gets no answer from etcd;
// it counts the writes that reach it.
type unansweredOnce struct {
	recovery.Store
	writes int
}

func (u *unansweredOnce) Accept(context.Context, recovery.Accepted) error {
	u.writes++
	if u.writes == 1 {
		return fmt.Errorf("accept: %w", recovery.ErrOutcomeUnknown)
	}
	return nil
}

func (u *unansweredOnce) PutSetting(context.Context, string, []byte) error {
	u.writes++
	return nil
}

// After a write whose outcome is unknown the replica stops: it is reported,
// and no later write reaches the store (this replica's memory may no longer
// match it); each is refused as fenced, so nothing is told as decided.
func TestUnansweredWriteStopsEveryLaterWrite(t *testing.T) {
	u := &unansweredOnce{}
	f := newFencedStore(u)
	ctx := context.Background()
	if err := f.Accept(ctx, recovery.Accepted{}); !errors.Is(err, recovery.ErrOutcomeUnknown) {
		t.Fatalf("first write: %v, want the unknown outcome", err)
	}
	if err := f.PutSetting(ctx, "k", nil); !errors.Is(err, recovery.ErrFenced) || !recovery.Undecided(err) {
		t.Errorf("a later write: %v, want it refused as fenced", err)
	}
	if err := f.Accept(ctx, recovery.Accepted{}); !errors.Is(err, recovery.ErrFenced) {
		t.Errorf("a later accept: %v, want it refused as fenced", err)
	}
	if u.writes != 1 {
		t.Errorf("%d writes reached the store, want only the first", u.writes)
	}
	select {
	case err := <-f.fenced:
		if !errors.Is(err, recovery.ErrOutcomeUnknown) {
			t.Errorf("reported %v, want the unanswered write", err)
		}
	default:
		t.Fatal("the unanswered write was not reported")
	}
}
