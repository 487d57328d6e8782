package bot

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/internal/slacktest"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/claude"
	"github.com/recoverbot/recoverbot/runbooks"
)

// fakeAnthropic speaks the Anthropic Messages API (POST /v1/messages): it
// checks the request's shape, records it, and answers a propose_runbook
// call (a forced tool_choice) with propose and an explanation request with
// explain. Both are scripted per test.
type fakeAnthropic struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	requests []map[string]any
	propose  func(w http.ResponseWriter)
	explain  func(w http.ResponseWriter)
}

func newFakeAnthropic(t testing.TB) *fakeAnthropic {
	f := &fakeAnthropic{t: t, propose: toolUse(`{"runbook":"none","confidence":0.1,"rationale":"nothing fits"}`),
		explain: textAnswer("payments answers slowly since the deploy; failing over moves its traffic to payments-dr until it recovers.")}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" {
			t.Errorf("AI request %s %s, want POST /v1/messages", r.Method, r.URL.Path)
		}
		if r.Header.Get("x-api-key") != "sk-test" || r.Header.Get("anthropic-version") != claude.APIVersion {
			t.Errorf("AI request headers: key %q, version %q", r.Header.Get("x-api-key"), r.Header.Get("anthropic-version"))
		}
		var body map[string]any
		raw, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("AI request body is not JSON: %v", err)
		}
		f.mu.Lock()
		f.requests = append(f.requests, body)
		propose, explain := f.propose, f.explain
		f.mu.Unlock()
		w.Header().Set("content-type", "application/json")
		if _, forced := body["tool_choice"]; forced {
			propose(w)
		} else {
			explain(w)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAnthropic) script(propose func(w http.ResponseWriter)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.propose = propose
}

func (f *fakeAnthropic) proposals() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for _, r := range f.requests {
		if _, forced := r["tool_choice"]; forced {
			out = append(out, r)
		}
	}
	return out
}

// advisor wires the fake into the harness's engine, as Serve does with
// ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL.
func (f *fakeAnthropic) advisor(timeout time.Duration) func(*recovery.Config) {
	return func(c *recovery.Config) {
		c.Advisor, c.AITimeout = claude.New("sk-test", f.srv.URL, "claude-test"), timeout
	}
}

func toolUse(input string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		_, _ = io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-test","stop_reason":"tool_use",
			"content":[{"type":"tool_use","id":"toolu_1","name":"propose_runbook","input":`+input+`}],
			"usage":{"input_tokens":10,"output_tokens":10}}`)
	}
}

func textAnswer(text string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		b, _ := json.Marshal(text)
		_, _ = io.WriteString(w, `{"id":"msg_2","type":"message","role":"assistant","stop_reason":"end_turn","content":[{"type":"text","text":`+string(b)+`}]}`)
	}
}

const failoverProposal = `{"runbook":"failover-upstream-degraded","context":{"upstream":"payments","backup_service":"payments-dr"},` +
	`"confidence":0.72,"rationale":"The primary is degraded and a DR replica exists."}`

// /recover ask: the AI's proposal becomes a plan awaiting approval, posted
// by the notifier like any plan and saying it was proposed by AI (with its
// confidence and rationale); the asker is told its id privately. The AI
// explanation that follows updates the same message and posts nothing new.
// An event no runbook matches gets an AI plan the same way.
func TestSlackAskMakesAnAIPlan(t *testing.T) {
	ai := newFakeAnthropic(t)
	ai.script(toolUse(failoverProposal))
	h := newSlackHarness(t, harnessConfig{engine: ai.advisor(5 * time.Second)})

	got := h.command(approver, incident, "ask payments is slow &amp; its p99 is &gt; 4s since the deploy")
	xs, err := h.db.Executions(h.ctx, recovery.ExecutionFilter{})
	h.must(err, "executions")
	if len(xs) != 1 {
		t.Fatalf("%d executions after /recover ask, want the AI's plan; reply %q", len(xs), got.Text)
	}
	x := xs[0]
	want := "🤖 The AI proposed plan `" + x.ID + "` (failover-upstream-degraded): it is posted in this channel and waits for an approver."
	if !strings.HasPrefix(got.Text, want) {
		t.Errorf("reply = %q\nwant it to start with %q", got.Text, want)
	}
	if x.State != recovery.PendingApproval || x.AI == nil || x.AI.Confidence != 0.72 || x.RequestedBy != "slack:U1" {
		t.Fatalf("plan: state %s, AI %+v, requested by %q", x.State, x.AI, x.RequestedBy)
	}
	// What the AI was asked: the question as typed (Slack's escapes undone)
	// and the catalogue.
	reqs := ai.proposals()
	if len(reqs) != 1 || reqs[0]["model"] != "claude-test" {
		t.Fatalf("AI proposal requests: %v", reqs)
	}
	var prompt struct {
		Question  string
		Catalogue []struct{ Name string }
	}
	content := reqs[0]["messages"].([]any)[0].(map[string]any)["content"].(string)
	h.must(json.Unmarshal([]byte(content), &prompt), "prompt")
	if prompt.Question != "payments is slow & its p99 is > 4s since the deploy" || len(prompt.Catalogue) != 6 {
		t.Errorf("the AI was asked %q with %d runbooks; want the question as typed and the 6 runbooks", prompt.Question, len(prompt.Catalogue))
	}

	root := h.root(x.ID)
	text := blocksText(root.Blocks)
	for _, w := range []string{"proposed by AI · confidence 72 % · rationale: The primary is degraded and a DR replica exists.",
		"*Confidence:* AI 72%", "*Requested by:* <@U1>", "asked by slack:U1: payments is slow", "proposed by AI: a human must approve"} {
		if !strings.Contains(text, w) {
			t.Errorf("AI plan message lacks %q:\n%s", w, text)
		}
	}
	if !hasButton(root, commands.ActionApprove) {
		t.Errorf("AI plan message has no Approve button")
	}
	m := h.rootShows(root.TS, "AI explanation:* payments answers slowly since the deploy")
	h.must(h.eng.Idle(h.ctx), "idle") // the explanation is recorded

	// Approving tells the thread; once that reply is there, every earlier
	// notification (the explanation's among them) was delivered: the thread
	// holds no reply for the explanation, and the channel one message.
	h.click(approver, incident, root.TS, commands.ActionApprove, buttonValue(t, m, commands.ActionApprove))
	h.waitFor("the approval in the thread", func(s *slacktest.Server) bool {
		th := s.Thread(incident, root.TS)
		return len(th) > 0 && strings.Contains(th[0].Text, "Approved by <@U1>")
	})
	for _, r := range h.srv.Thread(incident, root.TS) {
		if strings.Contains(r.Text, "AI explanation") {
			t.Errorf("the explanation was posted as a reply: %q", r.Text)
		}
	}
	if n := len(h.srv.Messages(incident)); n != 1 {
		t.Errorf("%d channel messages, want 1", n)
	}

	t.Run("an event no runbook matches", func(t *testing.T) {
		ai.script(toolUse(`{"runbook":"failover-upstream-degraded","context":{"upstream":"checkout","backup_service":"checkout-dr"},"confidence":0.55,"rationale":"checkout is degraded."}`))
		a := h.submit(recovery.Event{Type: runbooks.UpstreamDegradation, Severity: runbooks.Critical, Confidence: 0.6,
			Summary: "checkout p99 at 4s", Context: map[string]any{"service": "checkout"}})
		if a.Decision != recovery.DecideNoRunbook {
			t.Fatalf("decision %s, want no_runbook answered at once", a.Decision)
		}
		h.must(h.eng.Idle(h.ctx), "idle") // the proposal was made in the background
		var planID string
		xs, _ := h.db.Executions(h.ctx, recovery.ExecutionFilter{State: recovery.PendingApproval})
		for _, x := range xs {
			if x.Event.Context["source_event"] == a.EventID {
				planID = x.ID
			}
		}
		if planID == "" {
			t.Fatalf("no AI plan for the unmatched event: %+v", xs)
		}
		text := blocksText(h.root(planID).Blocks)
		for _, w := range []string{"*Confidence:* 60% (event) · AI 55%", "proposed by AI · confidence 55 % · rationale: checkout is degraded."} {
			if !strings.Contains(text, w) {
				t.Errorf("message lacks %q:\n%s", w, text)
			}
		}
	})
}

// Every way an ask ends without a plan is told privately, in the engine's
// words, and nothing is posted: the AI found nothing, proposed what
// validation refuses (audited), was rate limited, or did not answer in time.
func TestSlackAskRefused(t *testing.T) {
	for _, c := range []struct {
		name    string
		answer  func(w http.ResponseWriter)
		timeout time.Duration
		want    string
		audited bool
	}{
		{"no runbook fits", toolUse(`{"runbook":"none","confidence":0.2,"rationale":"Nothing in the catalogue fits."}`), 0,
			"🤖 The AI found no runbook for this. Nothing was planned.", false},
		{"an invented runbook", toolUse(`{"runbook":"delete-the-database","context":{},"confidence":0.9,"rationale":"x"}`), 0,
			`🤖 AI proposal rejected: runbook "delete-the-database" does not exist. Nothing was planned.`, true},
		{"an undeclared parameter", toolUse(`{"runbook":"failover-upstream-degraded","context":{"upstream":"payments","backup_service":"dr","namespace":"kube-system"},"confidence":0.9,"rationale":"x"}`), 0,
			`runbook failover-upstream-degraded declares no parameter "namespace". Nothing was planned.`, true},
		{"a value that fails validation", toolUse(`{"runbook":"clear-cache-on-stale-data","context":{"route":"*"},"confidence":0.9,"rationale":"x"}`), 0,
			`contains the character '*'`, true},
		{"rate limited", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`)
		}, 0, "🤖 The AI could not propose a plan: anthropic API 429 rate_limit_error: slow down. Nothing was planned.", false},
		{"too slow", nil, 300 * time.Millisecond,
			"🤖 The AI could not propose a plan: the AI did not answer in time. Nothing was planned.", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ai := newFakeAnthropic(t)
			answer := c.answer
			if answer == nil {
				// An AI that never answers; released before the fake
				// server closes (cleanups run last-in first-out).
				release := make(chan struct{})
				t.Cleanup(func() { close(release) })
				answer = func(http.ResponseWriter) { <-release }
			}
			ai.script(answer)
			timeout := c.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			h := newSlackHarness(t, harnessConfig{engine: ai.advisor(timeout)})
			got := h.command(approver, incident, "ask payments is slow")
			if !strings.Contains(got.Text, c.want) {
				t.Errorf("reply = %q, want %q", got.Text, c.want)
			}
			h.must(h.eng.Idle(h.ctx), "idle")
			if xs, _ := h.db.Executions(h.ctx, recovery.ExecutionFilter{}); len(xs) != 0 {
				t.Errorf("%d executions, want none: a refused proposal is never a plan", len(xs))
			}
			if n := len(h.srv.Messages(incident)); n != 0 {
				t.Errorf("%d channel messages, want none", n)
			}
			recs, err := h.db.AuditSince(h.ctx, time.Time{})
			h.must(err, "audit")
			audited := false
			for _, r := range recs {
				audited = audited || (r.Actor == "ai" && strings.Contains(r.Reason, "AI proposal rejected"))
			}
			if audited != c.audited {
				t.Errorf("rejection audited = %v, want %v", audited, c.audited)
			}
		})
	}
}

// Without ANTHROPIC_API_KEY /recover ask says AI planning is off and asks
// nothing; its usage and channel rules hold either way.
func TestSlackAskWithoutAI(t *testing.T) {
	h := newSlackHarness(t, harnessConfig{})
	for _, c := range []struct{ user, channel, text, want string }{
		{approver, incident, "ask payments is slow", "AI planning is off (set ANTHROPIC_API_KEY): nothing was asked."},
		{approver, incident, "ask", "`ask` needs a question"},
		{approver, incident, "ASK   ", "`ask` needs a question"},
		{approver, elsewhere, "ask payments is slow", "recoverbot only takes commands in <#C1>: run `/recover ask` there."},
		{approver, incident, "help", "`ask &lt;free text&gt;`"},
		{approver, incident, "status", "AI planning: off (set ANTHROPIC_API_KEY)"},
	} {
		if got := h.command(c.user, c.channel, c.text); !strings.Contains(got.Text, c.want) {
			t.Errorf("/recover %s in %s replied %q, want %q", c.text, c.channel, got.Text, c.want)
		}
	}
	if xs, _ := h.db.Executions(h.ctx, recovery.ExecutionFilter{}); len(xs) != 0 {
		t.Errorf("%d executions, want none", len(xs))
	}
	recs, _ := h.db.AuditSince(h.ctx, time.Time{})
	elsewhereAudited := false
	for _, r := range recs {
		elsewhereAudited = elsewhereAudited || strings.Contains(r.Reason, "/recover ask from channel C2")
	}
	if !elsewhereAudited {
		t.Errorf("an ask from another channel was not audited")
	}
}
