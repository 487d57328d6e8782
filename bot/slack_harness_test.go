package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/internal/slacktest"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
)

// The workspace every Slack test uses: U1 is a global approver, U3 one
// through the user group S1, U2 nobody; C1 is the incident channel.
const (
	approver    = "U1"
	bystander   = "U2"
	groupMember = "U3"
	incident    = "C1"
	elsewhere   = "C2"
)

// slackTimeout bounds every wait; nothing sleeps, so it only matters when a
// test is about to fail.
const slackTimeout = 20 * time.Second

type slackHarness struct {
	t     testing.TB
	ctx   context.Context
	srv   *slacktest.Server
	db    *store.DB
	eng   *recovery.Engine
	drv   *logdriver.Driver
	clock *recovery.ManualClock
	sl    *Slack
	dups  chan string
	close func() // stops the bot as Serve does; also run at cleanup
}

type harnessConfig struct {
	mode       recovery.Mode
	silence    time.Duration
	runbooks   string // directory; "" = the embedded defaults
	approvers  string
	serverOpts []slacktest.Option
	driver     *logdriver.Driver
	srv        *slacktest.Server // reuse a server (a restarted bot); nil: a new one
	dbPath     string            // reuse a database; "": a new one
	// engine, when set, edits the engine's settings (AI advisor and
	// timeout, breaker thresholds) before it starts.
	engine func(*recovery.Config)
	// timeout bounds the whole test's waits (default slackTimeout).
	timeout time.Duration
	// store, when set, wraps the store the engine writes (a fault injector).
	store func(recovery.Store) recovery.Store
}

// newSlackHarness runs the real Slack face (NewSlack with the options Serve
// derives from the config, the outbox courier, Listen) against an in-repo
// Slack server, on a real bbolt file in a temp dir and a manual clock.
func newSlackHarness(t testing.TB, hc harnessConfig) *slackHarness {
	t.Helper()
	if hc.mode == "" {
		hc.mode = recovery.ModeFull
	}
	if hc.approvers == "" {
		hc.approvers = approver + ",S1"
	}
	if hc.timeout == 0 {
		hc.timeout = slackTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), hc.timeout)
	if _, ok := t.(*testing.B); ok {
		cancel()
		ctx, cancel = context.WithCancel(context.Background())
	}
	t.Cleanup(cancel)

	srv := hc.srv
	if srv == nil {
		srv = slacktest.New(hc.serverOpts...)
		t.Cleanup(srv.Close)
		srv.AddUser(approver, "alice")
		srv.AddUser(bystander, "bob")
		srv.AddUser(groupMember, "carol")
		srv.AddUserGroup("S1", groupMember)
		srv.AddChannel(incident, "incident")
		srv.AddChannel(elsewhere, "random")
	}
	if hc.dbPath == "" {
		hc.dbPath = filepath.Join(t.TempDir(), "slack.db")
	}

	books, err := LoadRunbooks(hc.runbooks)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(hc.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	h := &slackHarness{t: t, ctx: ctx, srv: srv, db: db, drv: hc.driver,
		clock: recovery.NewManualClock(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)), dups: make(chan string, 16)}
	if h.drv == nil {
		h.drv = logdriver.New(nil)
	}
	log := testLogger()
	ecfg := recovery.DefaultConfig()
	ecfg.Mode, ecfg.Clock, ecfg.Log = hc.mode, h.clock, log
	if hc.engine != nil {
		hc.engine(&ecfg)
	}
	var est recovery.Store = db
	if hc.store != nil {
		est = hc.store(db)
	}
	h.eng = recovery.New(ecfg, est, books, h.drv.All())
	if err := h.eng.Start(ctx); err != nil {
		t.Fatal(err)
	}

	cfg := DefaultConfig()
	cfg.SlackChannel, cfg.SlackApprovers = incident, hc.approvers
	if hc.silence > 0 {
		cfg.SlackSilence = hc.silence
	}
	env := map[string]string{"SLACK_BOT_TOKEN": srv.BotToken(), "SLACK_APP_TOKEN": srv.AppToken(), "SLACK_API_URL": srv.APIURL()}
	o := cfg.SlackOptions(func(k string) string { return env[k] }, log)
	o.OnDuplicate = func(key string) { h.dups <- key }
	h.sl, err = NewSlack(ctx, o, h.eng)
	if err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(context.Background())
	courierDone := make(chan struct{})
	go func() {
		defer close(courierDone)
		(&recovery.Courier{Store: db, Notifier: h.sl, Wake: h.eng.Wake(), Log: log}).Run(runCtx)
	}()
	listenDone := make(chan error, 1)
	sockets := srv.TotalConnections()
	go func() { listenDone <- h.sl.Run(runCtx) }()
	var closed bool
	h.close = func() {
		if closed {
			return
		}
		closed = true
		// Serve's order: stop listening, let handlers finish, close the
		// engine, stop delivery, close bbolt.
		stop()
		if err := <-listenDone; err != nil {
			t.Errorf("slack Run: %v", err)
		}
		wctx, wcancel := context.WithTimeout(context.Background(), slackTimeout)
		defer wcancel()
		if err := h.sl.Wait(wctx); err != nil {
			t.Errorf("slack handlers: %v", err)
		}
		if err := h.eng.Close(wctx); err != nil {
			t.Errorf("engine close: %v", err)
		}
		<-courierDone
		_ = db.Close()
	}
	t.Cleanup(h.close)
	h.must(srv.WaitConnections(ctx, sockets+1), "socket")
	return h
}

func testLogger() *slog.Logger {
	if os.Getenv("RECOVERBOT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (h *slackHarness) must(err error, what string) {
	h.t.Helper()
	if err != nil {
		h.t.Fatalf("%s: %v", what, err)
	}
}

func (h *slackHarness) waitFor(what string, cond func(*slacktest.Server) bool) {
	h.t.Helper()
	h.must(h.srv.WaitFor(h.ctx, cond), "waiting for "+what)
}

// command runs /recover text as user in channel and returns what only that
// user was shown in reply.
func (h *slackHarness) command(user, channel, text string) slacktest.Ephemeral {
	h.t.Helper()
	before := len(h.srv.Ephemerals(channel, user))
	id := h.srv.SlashCommand(user, channel, "/recover", text)
	_, err := h.srv.WaitAck(h.ctx, id)
	h.must(err, "ack of /recover "+text)
	return h.nextEphemeral(user, channel, before, "/recover "+text)
}

func (h *slackHarness) nextEphemeral(user, channel string, before int, what string) slacktest.Ephemeral {
	h.t.Helper()
	h.waitFor("reply to "+what, func(s *slacktest.Server) bool { return len(s.Ephemerals(channel, user)) > before })
	return h.srv.Ephemerals(channel, user)[before]
}

// click presses a button of the message at ts and waits for the ack.
func (h *slackHarness) click(user, channel, ts, actionID, value string) string {
	h.t.Helper()
	block := commands.BlockApproval
	if actionID == commands.ActionRollback || actionID == commands.ActionMarkFalse || actionID == commands.ActionKeep {
		block = commands.BlockOutcome
	}
	id := h.srv.Click(user, channel, ts, actionID, block, value)
	_, err := h.srv.WaitAck(h.ctx, id)
	h.must(err, "ack of click "+actionID)
	return id
}

// clickReply presses a button and returns the private reply it gets.
func (h *slackHarness) clickReply(user, ts, actionID, value string) slacktest.Ephemeral {
	h.t.Helper()
	before := len(h.srv.Ephemerals(incident, user))
	h.click(user, incident, ts, actionID, value)
	return h.nextEphemeral(user, incident, before, "click "+actionID)
}

func (h *slackHarness) submit(ev recovery.Event) recovery.Answer {
	h.t.Helper()
	a, err := h.eng.Submit(h.ctx, ev)
	h.must(err, "submit")
	return a
}

// root waits for the plan's root message in the incident channel.
func (h *slackHarness) root(planID string) slacktest.Message {
	h.t.Helper()
	var m slacktest.Message
	h.waitFor("root message of "+planID, func(s *slacktest.Server) bool {
		for _, x := range s.Messages(incident) {
			if strings.Contains(string(x.Blocks), planID) || strings.Contains(x.Text, planID) {
				m = x
				return true
			}
		}
		return false
	})
	return m
}

// rootShows waits until the root message (as edited) contains want.
func (h *slackHarness) rootShows(ts, want string) slacktest.Message {
	h.t.Helper()
	var m slacktest.Message
	h.waitFor(fmt.Sprintf("root %s to show %q", ts, want), func(s *slacktest.Server) bool {
		m, _ = s.Message(incident, ts)
		return strings.Contains(blocksText(m.Blocks), want) || strings.Contains(m.Text, want)
	})
	return m
}

// pending submits an event that needs approval and returns its plan id and
// root message.
func (h *slackHarness) pending(ev recovery.Event) (string, slacktest.Message) {
	h.t.Helper()
	a := h.submit(ev)
	if a.Decision != recovery.DecideApproval {
		h.t.Fatalf("decision = %s (%v), want approval", a.Decision, a.Reasons)
	}
	return a.PlanID, h.root(a.PlanID)
}

func (h *slackHarness) applies() int {
	n := 0
	for _, c := range h.drv.Calls() {
		if c.Op == "apply" {
			n++
		}
	}
	return n
}

func (h *slackHarness) audit(planID string) []recovery.AuditRecord {
	h.t.Helper()
	recs, err := h.db.Audit(h.ctx, planID)
	h.must(err, "audit")
	return recs
}

func (h *slackHarness) refusals(planID string) []string {
	var out []string
	for _, r := range h.audit(planID) {
		if strings.HasPrefix(r.Reason, "refused: ") {
			out = append(out, r.Actor+" "+r.Reason)
		}
	}
	return out
}

// buttonValue finds a button's value in a message's blocks.
func buttonValue(t testing.TB, m slacktest.Message, actionID string) string {
	t.Helper()
	var blocks []struct {
		Elements []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
		} `json:"elements"`
	}
	if err := json.Unmarshal(m.Blocks, &blocks); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		for _, e := range b.Elements {
			if e.ActionID == actionID {
				return e.Value
			}
		}
	}
	t.Fatalf("no %s button in %s", actionID, m.Blocks)
	return ""
}

// blocksText is blocks JSON as readable text: slack-go sends json.Marshal
// output, which writes <, > and & as \u escapes.
func blocksText(raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return b.String()
}

func hasButton(m slacktest.Message, actionID string) bool {
	return strings.Contains(string(m.Blocks), `"action_id":"`+actionID+`"`)
}

// The events the tests use, as monitoring would send them.
func memoryLeak() recovery.Event {
	return recovery.Event{Type: runbooks.CapacityWarning, Severity: runbooks.Warning, Confidence: 0.9,
		Summary: "api-gateway memory at 95%", Data: map[string]any{"resourceType": "MEMORY", "utilization": 95.0}}
}

func degraded(upstream string) recovery.Event {
	return recovery.Event{Type: runbooks.UpstreamDegradation, Severity: runbooks.Critical, Confidence: 0.9,
		Summary: upstream + " is degraded", Context: map[string]any{"upstream": upstream, "backup_service": upstream + "-dr"}}
}

// writeRunbook adds a runbook file to a copy-free directory of its own.
func writeRunbook(t testing.TB, yaml string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

var errNoDuplicate = errors.New("no redelivery was dropped")

func (h *slackHarness) waitDuplicate() string {
	h.t.Helper()
	select {
	case k := <-h.dups:
		return k
	case <-h.ctx.Done():
		h.t.Fatal(errNoDuplicate)
	}
	return ""
}
