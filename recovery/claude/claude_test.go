package claude_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/claude"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
)

// fakeAnthropic speaks the Messages API: it records requests and answers
// propose_runbook calls with a scripted tool input (or status), and explain
// calls with text.
type fakeAnthropic struct {
	t        *testing.T
	mu       sync.Mutex
	requests []map[string]any
	headers  []http.Header
	propose  func(w http.ResponseWriter) // answers a propose_runbook call
	explain  func(w http.ResponseWriter)
	srv      *httptest.Server
}

func newFake(t *testing.T) *fakeAnthropic {
	f := &fakeAnthropic{t: t}
	f.explain = textAnswer("The pod leaks memory; a rollout restart replaces it.")
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" {
			t.Errorf("request %s %s, want POST /v1/messages", r.Method, r.URL.Path)
		}
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			t.Errorf("request body is not JSON: %v", err)
		}
		f.mu.Lock()
		f.requests = append(f.requests, body)
		f.headers = append(f.headers, r.Header.Clone())
		propose, explain := f.propose, f.explain
		f.mu.Unlock()
		if _, ok := body["tool_choice"]; ok {
			propose(w)
		} else {
			explain(w)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAnthropic) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func toolAnswer(input string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("content-type", "application/json")
		io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-test","stop_reason":"tool_use",
		"content":[{"type":"tool_use","id":"toolu_1","name":"propose_runbook","input":`+input+`}],
		"usage":{"input_tokens":10,"output_tokens":10}}`)
	}
}

func textAnswer(text string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		b, _ := json.Marshal(text)
		io.WriteString(w, `{"id":"msg_2","type":"message","role":"assistant","stop_reason":"end_turn","content":[{"type":"text","text":`+string(b)+`}]}`)
	}
}

type env struct {
	eng  *recovery.Engine
	db   *store.DB
	drv  *logdriver.Driver
	fake *fakeAnthropic
}

func newEnv(t *testing.T, withKey bool, timeout time.Duration) *env {
	t.Helper()
	books, err := runbooks.LoadDefaults()
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(t.TempDir(), "ai.db"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, drv: logdriver.New(nil), fake: newFake(t)}
	cfg := recovery.DefaultConfig()
	cfg.Mode, cfg.AITimeout = recovery.ModeFull, timeout
	if withKey {
		cfg.Advisor = claude.New("sk-test", e.fake.srv.URL, "claude-test")
	}
	e.eng = recovery.New(cfg, db, books, e.drv.All())
	if err := e.eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.eng.Close(context.Background()); _ = db.Close() })
	return e
}

func (e *env) settle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.eng.Idle(ctx); err != nil {
		t.Fatal(err)
	}
}

func (e *env) executions(t *testing.T) []recovery.Execution {
	t.Helper()
	xs, err := e.db.Executions(context.Background(), recovery.ExecutionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return xs
}

// unmatched is an event no default runbook matches (no upstream, low confidence).
var unmatched = recovery.Event{Type: runbooks.UpstreamDegradation, Severity: runbooks.Critical, Confidence: 0.6,
	Summary: "payments p99 at 4s", Context: map[string]any{"service": "payments"}}

const valid = `{"runbook":"failover-upstream-degraded","context":{"upstream":"payments","backup_service":"payments-dr"},"confidence":0.72,"rationale":"The primary is degraded and a DR replica exists."}`

func TestValidProposalMakesAPlanAwaitingApproval(t *testing.T) {
	e := newEnv(t, true, 2*time.Second)
	e.fake.propose = toolAnswer(valid)
	a, err := e.eng.Submit(context.Background(), unmatched)
	if err != nil || a.Decision != recovery.DecideNoRunbook {
		t.Fatalf("intake: %+v %v, want no_runbook answered at once", a, err)
	}
	e.settle(t)
	xs := e.executions(t)
	if len(xs) != 1 {
		t.Fatalf("%d executions, want the AI's plan", len(xs))
	}
	x := xs[0]
	if x.State != recovery.PendingApproval || x.AI == nil || x.AI.Confidence != 0.72 || x.Runbook != "failover-upstream-degraded" {
		t.Fatalf("plan %+v", x)
	}
	if !strings.Contains(strings.Join(x.Reasons, ";"), "proposed by AI") {
		t.Errorf("reasons %v: want the AI approval reason", x.Reasons)
	}
	recs, _ := e.db.Audit(context.Background(), x.ID)
	if len(recs) == 0 || recs[0].Plan == nil || recs[0].Plan.AI == nil || !strings.Contains(recs[0].Plan.AI.Rationale, "DR replica") {
		t.Errorf("the audit record does not keep the rationale: %+v", recs)
	}
	page, _ := e.db.Outbox(context.Background(), 0, 100)
	if !strings.Contains(page[0].Text, "proposed by AI · confidence 72 % · rationale: The primary is degraded") {
		t.Errorf("plan message %q lacks the AI line", page[0].Text)
	}
	if x.Explanation == "" {
		t.Error("no AI explanation on the plan awaiting approval")
	}

	// The request: path, headers, model, forced tool, the catalogue and the event.
	req, h := e.fake.requests[0], e.fake.headers[0]
	if h.Get("x-api-key") != "sk-test" || h.Get("anthropic-version") != claude.APIVersion || req["model"] != "claude-test" {
		t.Errorf("headers %v model %v", h, req["model"])
	}
	if tc := req["tool_choice"].(map[string]any); tc["type"] != "tool" || tc["name"] != "propose_runbook" {
		t.Errorf("tool_choice %v", tc)
	}
	msgs := req["messages"].([]any)
	content := msgs[0].(map[string]any)["content"].(string)
	for _, want := range []string{`"catalogue"`, `"restart-pod-memory-leak"`, `"parameters":["backup_service","upstream"]`, `"payments p99 at 4s"`} {
		if !strings.Contains(content, want) {
			t.Errorf("prompt lacks %s: %s", want, content)
		}
	}
}

func TestAIPlanNeedsApprovalWhateverItsConfidence(t *testing.T) {
	e := newEnv(t, true, 2*time.Second)
	e.fake.propose = toolAnswer(`{"runbook":"clear-cache-on-stale-data","context":{"route":"/api/users"},"confidence":0.99,"rationale":"Stale cache."}`)
	a, err := e.eng.Ask(context.Background(), "users see stale profiles", "U123")
	if err != nil || a.Decision != recovery.DecideApproval {
		t.Fatalf("%+v %v, want approval: clear-cache is auto for events, never for the AI", a, err)
	}
	e.settle(t)
	if n := len(e.drv.Calls()); n != 0 {
		t.Fatalf("%d driver calls, want 0", n)
	}
}

func TestRejectedProposals(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		want   string
	}{
		{"invented runbook", toolAnswer(`{"runbook":"delete-the-database","context":{},"confidence":0.9,"rationale":"x"}`), `runbook "delete-the-database" does not exist`},
		{"undeclared parameter", toolAnswer(`{"runbook":"failover-upstream-degraded","context":{"upstream":"payments","backup_service":"dr","namespace":"kube-system"},"confidence":0.9,"rationale":"x"}`), `declares no parameter "namespace"`},
		{"value failing validation", toolAnswer(`{"runbook":"clear-cache-on-stale-data","context":{"route":"*"},"confidence":0.9,"rationale":"x"}`), `value "*" contains the character '*'`},
		{"value over the event bounds", toolAnswer(`{"runbook":"clear-cache-on-stale-data","context":{"route":"/` + strings.Repeat("a", recovery.MaxDataString) + `"},"confidence":0.9,"rationale":"x"}`), "longer than the limit of 4096 bytes"},
		{"confidence out of range", toolAnswer(`{"runbook":"clear-cache-on-stale-data","context":{"route":"/a"},"confidence":7,"rationale":"x"}`), "not between 0 and 1"},
		{"malformed JSON", func(w http.ResponseWriter) {
			io.WriteString(w, `{"content":[{"type":"tool_use","name":"propose_runbook","input":`)
		}, "malformed answer"},
		{"unexpected shape", toolAnswer(`{"runbook":"x","confidence":0.5,"rationale":"x","shell":"rm -rf /"}`), "not the expected shape"},
		{"rate limited", func(w http.ResponseWriter) {
			w.WriteHeader(429)
			io.WriteString(w, `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`)
		}, "429 rate_limit_error"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, true, 2*time.Second)
			e.fake.propose = c.answer
			_, err := e.eng.Ask(context.Background(), "payments is slow", "U1")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
			// The unmatched-event path refuses the same proposal, quietly.
			if _, err := e.eng.Submit(context.Background(), unmatched); err != nil {
				t.Fatal(err)
			}
			e.settle(t)
			if xs := e.executions(t); len(xs) != 0 {
				t.Fatalf("%d executions, want none: a rejected proposal is never a plan", len(xs))
			}
		})
	}
}

func TestSlowAIDelaysNothing(t *testing.T) {
	e := newEnv(t, true, 150*time.Millisecond)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	e.fake.propose = func(w http.ResponseWriter) { <-release }
	e.fake.explain = func(w http.ResponseWriter) { <-release }

	// An unmatched event is answered without waiting for the AI.
	a, err := e.eng.Submit(context.Background(), unmatched)
	if err != nil || a.Decision != recovery.DecideNoRunbook {
		t.Fatalf("%+v %v", a, err)
	}
	// A normal approval plan is made and announced; its explanation never comes.
	ev := recovery.Event{Type: runbooks.CapacityWarning, Severity: runbooks.Warning, Confidence: 0.85,
		Data: map[string]any{"resourceType": "MEMORY", "utilization": 95.0}}
	b, err := e.eng.Submit(context.Background(), ev)
	if err != nil || b.Decision != recovery.DecideApproval {
		t.Fatalf("%+v %v", b, err)
	}
	_, err = e.eng.Ask(context.Background(), "anything", "U1")
	if err == nil || !strings.Contains(err.Error(), "did not answer in time") {
		t.Fatalf("ask: %v, want a timeout", err)
	}
	e.settle(t) // the background calls gave up at their deadline
	x, _ := e.db.Execution(context.Background(), b.PlanID)
	if x.State != recovery.PendingApproval || x.Explanation != "" {
		t.Fatalf("plan %s explanation %q", x.State, x.Explanation)
	}
}

func TestWithoutAKeyNothingRuns(t *testing.T) {
	e := newEnv(t, false, time.Second)
	e.fake.propose = toolAnswer(valid)
	if _, err := e.eng.Submit(context.Background(), unmatched); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Ask(context.Background(), "help", "U1"); recovery.ErrorCode(err) != recovery.CodeUnavailable {
		t.Fatalf("ask without a key: %v, want unavailable", err)
	}
	e.settle(t)
	if n := e.fake.count(); n != 0 {
		t.Fatalf("%d calls to the AI without a key, want 0", n)
	}
	if xs := e.executions(t); len(xs) != 0 {
		t.Fatalf("%d executions, want 0", len(xs))
	}
}

// #11 item 8: an INFO event at confidence 0.05 became a pending FAILOVER plan
// that said nothing about being outside the runbook's trigger, nor which
// values the AI chose.
func TestAIPlanOutsideTheTriggerSaysSoAndWhoChoseEachValue(t *testing.T) {
	e := newEnv(t, true, 2*time.Second)
	e.fake.propose = toolAnswer(valid)
	info := recovery.Event{Type: runbooks.UpstreamDegradation, Severity: runbooks.Info, Confidence: 0.05,
		Summary: "payments p99 at 4s", Context: map[string]any{"upstream": "payments"}}
	if _, err := e.eng.Submit(context.Background(), info); err != nil {
		t.Fatal(err)
	}
	e.settle(t)
	xs := e.executions(t)
	if len(xs) != 1 || xs[0].AI == nil {
		t.Fatalf("executions %+v, want the AI's plan", xs)
	}
	x := xs[0]
	if x.State != recovery.PendingApproval {
		t.Fatalf("state %s, want PENDING_APPROVAL", x.State)
	}
	wantOutside := "confidence is 0.05, want at least 0.85; severity is INFO, want CRITICAL"
	if got := strings.Join(x.AI.OutsideTrigger, "; "); got != wantOutside {
		t.Errorf("outside the trigger: %q, want %q", got, wantOutside)
	}
	from := map[string]recovery.ParamSource{}
	for _, p := range x.AI.Params {
		from[p.Key+"="+p.Value.(string)] = p.From
	}
	if from["upstream=payments"] != recovery.FromEvent || from["backup_service=payments-dr"] != recovery.FromAI || len(from) != 2 {
		t.Errorf("parameter sources %v, want upstream from the event, backup_service from the AI", from)
	}
	page, _ := e.db.Outbox(context.Background(), 0, 100)
	for _, want := range []string{"outside the runbook's trigger: " + wantOutside, "parameter backup_service = payments-dr (chosen by the AI)"} {
		if !strings.Contains(page[0].Text, want) {
			t.Errorf("plan message lacks %q:\n%s", want, page[0].Text)
		}
	}
}

func TestAIMayNotChangeAValueTheEventCarries(t *testing.T) {
	e := newEnv(t, true, 2*time.Second)
	e.fake.propose = toolAnswer(`{"runbook":"failover-upstream-degraded","context":{"upstream":"orders","backup_service":"orders-dr"},"confidence":0.9,"rationale":"x"}`)
	ev := recovery.Event{Type: runbooks.UpstreamDegradation, Severity: runbooks.Info, Confidence: 0.5, Context: map[string]any{"upstream": "payments"}}
	if _, err := e.eng.Submit(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	e.settle(t)
	if xs := e.executions(t); len(xs) != 0 {
		t.Fatalf("%d executions, want none: the AI changed the event's upstream", len(xs))
	}
	recs, _ := e.db.AuditSince(context.Background(), time.Time{})
	var found bool
	for _, r := range recs {
		found = found || strings.Contains(r.Reason, `parameter "upstream": the event says payments, the AI may not change it`)
	}
	if !found {
		t.Errorf("no audit record of the refusal: %+v", recs)
	}
}
