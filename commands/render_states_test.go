package commands

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

// aiPlan is the playbook's failover as the AI proposed it from /recover ask,
// with its explanation, during a storm, while the blast-radius breaker is
// open.
func aiPlan() *recovery.Execution {
	x := pendingRestart()
	x.Runbook = "failover-upstream-degraded"
	x.Event = recovery.Event{ID: "ai_01KB5Z8Q6M3V0R7T9W2X4Y6Z8B", Type: runbooks.UpstreamDegradation, Severity: runbooks.Warning,
		Confidence: 1, Source: "ai", Summary: "asked by slack:U0ASKER: payments p99 is 4s since 12:00",
		Context: map[string]any{"upstream": "payments", "backup_service": "payments-dr"}}
	x.Actions = []runbooks.Action{{Type: runbooks.Failover, Parameters: map[string]any{"from": "payments", "to": "payments-dr"}}}
	x.Targets = []string{"route/payments"}
	x.Rollback = []string{"undo action 1 (FAILOVER route/payments): restore the state observed before it ran"}
	x.Reasons = []string{"proposed by AI: a human must approve", "action 1 (FAILOVER) is never run without approval",
		"the blast-radius breaker is open (more than 20 distinct targets failing within 5m0s): every plan needs a human until someone resumes"}
	x.RequestedBy = "slack:U0ASKER"
	x.AI = &recovery.AIInfo{Model: "claude-test", Confidence: 0.72, Rationale: "The primary is degraded & a DR replica <payments-dr> exists."}
	x.Explanation = "payments answers slowly since 12:00; failing over sends its traffic to payments-dr until it recovers."
	x.Repeats = 9999
	return x
}

var describeFailover = []string{"switch route payments from payments to payments-dr"}

// ran is the memory-leak plan after an approver let it run at t0+90s.
func ran(state recovery.State, mutate func(x *recovery.Execution)) func() *recovery.Execution {
	return func() *recovery.Execution {
		x := pendingRestart()
		x.State, x.ApprovedBy = state, "slack:U0APPROVER"
		x.Steps = []recovery.Step{{Action: 0, Type: "RESTART_POD", Phase: "apply", Before: json.RawMessage(`{"restartedAt":""}`),
			StartedAt: t0.Add(90 * time.Second), EndedAt: t0.Add(150 * time.Second)}}
		x.Verify = &runbooks.Verify{Prometheus: `sum(rate(http_requests_total{code=~"5..",service="{{deployment}}"}[1m])) < 1`}
		x.VerifyQuery = `sum(rate(http_requests_total{code=~"5..",service="api-gateway"}[1m])) < 1`
		if mutate != nil {
			mutate(x)
		}
		return x
	}
}

// Every state the storm, AI, verification and false-action work added, as
// Slack will show it: the lines are the ones people read, so they are
// golden files.
func TestMessageGoldenStates(t *testing.T) {
	sign := testSigner(t)
	approvedAt := t0.Add(90 * time.Second)
	done := t0.Add(150 * time.Second)
	cases := []struct {
		name    string
		x       func() *recovery.Execution
		facts   Facts
		breaker string
		desc    []string
		want    []string // lines the message must carry, besides the golden file
		absent  []string
	}{
		{name: "ai_plan_pending_breaker_storm", x: aiPlan,
			breaker: "more than 20 distinct targets failing within 5m0s", desc: describeFailover,
			want: []string{"proposed by AI · confidence 72 % · rationale: The primary is degraded &amp; a DR replica &lt;payments-dr&gt; exists.",
				"*AI explanation:* payments answers slowly", "*Confidence:* AI 72%", "*Repeats:* seen 9,999 more times",
				"*Blast-radius breaker open* (more than 20 distinct targets failing within 5m0s)", "*Requested by:* <@U0ASKER>",
				"asked by slack:U0ASKER: payments p99"},
		},
		{name: "ai_plan_from_event", x: func() *recovery.Execution {
			x := aiPlan()
			x.Event.Confidence, x.Event.Context["source_event"] = 0.6, "ev-42"
			x.Event.Summary, x.RequestedBy, x.Repeats, x.Explanation = "payments p99 at 4s", "", 0, ""
			x.AI.OutsideTrigger = []string{"confidence is 0.6, want at least 0.85", "severity is WARNING, want CRITICAL"}
			x.AI.Params = []recovery.AIParam{{Key: "backup_service", Value: "payments-dr", From: recovery.FromAI},
				{Key: "upstream", Value: "payments", From: recovery.FromEvent}}
			return x
		}, desc: describeFailover,
			want: []string{"*Confidence:* 60% (event) · AI 72%", "proposed by AI · confidence 72 %",
				"⚠️ *Outside the runbook's trigger:* confidence is 0.6, want at least 0.85; severity is WARNING, want CRITICAL",
				"*Parameters:* `backup_service` = `payments-dr` (*chosen by the AI*) · `upstream` = `payments` (from the event)"},
			absent: []string{"AI explanation", "Repeats", "Blast-radius"}},
		{name: "breaker_not_shown_after_approval", x: ran(recovery.Executing, nil), breaker: "more than 10 automatic executions within 1h0m0s",
			facts:  Facts{ApprovedAt: approvedAt, LastBy: "recoverbot", LastAt: approvedAt, LastTo: recovery.Executing},
			absent: []string{"Blast-radius"}},
		{name: "verifying", x: ran(recovery.Verifying, func(x *recovery.Execution) { x.VerifyUntil = done.Add(5 * time.Minute) }),
			facts: Facts{ApprovedAt: approvedAt, LastBy: "recoverbot", LastAt: done, LastTo: recovery.Verifying},
			// Rollback accepts VERIFYING, so the button is there (it was not: issue #11 item 6).
			want:   []string{"🔎 Recovery done, verifying `sum(rate(http_requests_total{code=~\"5..\",service=\"api-gateway\"}[1m])) &lt; 1` until <!date^", ActionRollback},
			absent: []string{ActionMarkFalse}},
		{name: "verified", x: ran(recovery.Verified, func(x *recovery.Execution) { x.LastVerify, x.VerifiedAt = "0.2", done.Add(time.Minute) }),
			facts: Facts{ApprovedAt: approvedAt, LastBy: "recoverbot", LastAt: done.Add(time.Minute), LastTo: recovery.Verified},
			want:  []string{"✅ Auto-Recovery Succeeded and Verified", "✅ Recovery succeeded and verified at <!date^", "returned `0.2`", ActionMarkFalse, ActionRollback}},
		{name: "verify_failed_escalated", x: ran(recovery.VerifyFailed, func(x *recovery.Execution) { x.LastVerify = "3.5" }),
			facts: Facts{ApprovedAt: approvedAt, LastBy: "recoverbot", LastAt: done.Add(5 * time.Minute), LastTo: recovery.VerifyFailed},
			want:  []string{"🚨 Verification failed at <!date^", "still unhealthy (last value: `3.5`); escalated, a human must look", ActionMarkFalse}},
		{name: "verify_unavailable", x: ran(recovery.VerifyFailed, func(x *recovery.Execution) {
			x.LastVerify = "verification unavailable: prometheus query timed out"
		}), facts: Facts{ApprovedAt: approvedAt, LastBy: "recoverbot", LastAt: done.Add(5 * time.Minute), LastTo: recovery.VerifyFailed},
			want:   []string{"⚠️ Verification unavailable at <!date^", "(prometheus query timed out): not counted as a success and not rolled back; a human must decide"},
			absent: []string{"Recovery succeeded"}},
		{name: "rolled_back_after_failed_verification", x: ran(recovery.RolledBack, func(x *recovery.Execution) {
			x.LastVerify, x.FalseAction, x.FalseBy = "", true, "verification"
			x.Steps = append(x.Steps, recovery.Step{Action: 0, Type: "RESTART_POD", Phase: "undo", StartedAt: done.Add(5 * time.Minute), EndedAt: done.Add(6 * time.Minute)})
		}), facts: Facts{ApprovedAt: approvedAt, LastBy: "recoverbot", LastAt: done.Add(6 * time.Minute), LastTo: recovery.RolledBack, RollbackBy: "recoverbot"},
			want:   []string{"↩️ Rolled back after failed verification (last value: an empty result) at <!date^", "🏷️ Counted as a false action (verification failed)"},
			absent: []string{ActionMarkFalse, ActionRollback, "actions"}},
		{name: "scheduled_rollback_awaits_approval", x: ran(recovery.Succeeded, func(x *recovery.Execution) {
			x.UndoAwaits, x.RollbackAt = recovery.UndoScheduled, done.Add(15*time.Minute)
		}), facts: Facts{ApprovedAt: approvedAt, LastBy: "recoverbot", LastAt: done, LastTo: recovery.Succeeded},
			want: []string{"✋ the scheduled rollback awaits an approver until <!date^", "*Roll back* approves it, *Keep as is* (or no answer) leaves the target as it is",
				ActionRollback, ActionKeep}},
		{name: "verify_failed_rollback_awaits_approval", x: ran(recovery.VerifyFailed, func(x *recovery.Execution) {
			x.LastVerify, x.FalseAction, x.FalseBy = "3.5", true, recovery.FalseByVerification
			x.UndoAwaits, x.RollbackAt = recovery.UndoVerifyFailed, done.Add(10*time.Minute)
		}), facts: Facts{ApprovedAt: approvedAt, LastBy: "recoverbot", LastAt: done.Add(5 * time.Minute), LastTo: recovery.VerifyFailed},
			want: []string{"still unhealthy (last value: `3.5`); not rolled back yet", "✋ the rollback after failed verification awaits an approver until <!date^",
				ActionRollback, ActionKeep},
			absent: []string{"rolling back"}},
		{name: "rolled_back_after_approved_verify_rollback", x: ran(recovery.RolledBack, func(x *recovery.Execution) {
			x.LastVerify, x.FalseAction, x.FalseBy = "3.5", true, recovery.FalseByVerification
		}), facts: Facts{ApprovedAt: approvedAt, LastBy: "recoverbot", LastAt: done.Add(7 * time.Minute), LastTo: recovery.RolledBack, RollbackBy: "slack:U0SECOND"},
			want: []string{"↩️ Rolled back after failed verification (last value: `3.5`), approved by <@U0SECOND> at <!date^"}},
		{name: "marked_false", x: ran(recovery.Succeeded, func(x *recovery.Execution) { x.FalseAction, x.FalseBy = true, "slack:U0APPROVER" }),
			facts:  Facts{ApprovedAt: approvedAt, LastBy: "recoverbot", LastAt: done, LastTo: recovery.Succeeded},
			want:   []string{"✅ Recovery succeeded at <!date^", "🏷️ Marked as a false action by <@U0APPROVER>", ActionRollback},
			absent: []string{ActionMarkFalse, ActionKeep}},
		{name: "failed_can_be_marked", x: ran(recovery.Failed, func(x *recovery.Execution) {
			x.Error, x.Steps = "deployment api-gateway not found", nil
		}), facts: Facts{ApprovedAt: approvedAt, LastBy: "recoverbot", LastAt: done, LastTo: recovery.Failed},
			want:   []string{"❌ Failed at <!date^", ActionMarkFalse, ActionDetails},
			absent: []string{ActionRollback}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			desc := describe
			if c.desc != nil {
				desc = c.desc
			}
			text, blocks := Message(View{X: c.x(), Describe: desc, Facts: c.facts, Breaker: c.breaker, Signer: sign})
			checkLimits(t, blocks, MaxBlocks, true)
			golden(t, c.name, map[string]any{"text": text, "blocks": blocks})
			all := readable(t, blocks)
			for _, w := range c.want {
				if !strings.Contains(all, w) {
					t.Errorf("message lacks %q:\n%s", w, all)
				}
			}
			for _, w := range c.absent {
				if strings.Contains(all, w) {
					t.Errorf("message has %q, it should not:\n%s", w, all)
				}
			}
		})
	}
}

// The fallback text (notifications, clients without blocks) carries the
// storm count too.
func TestMessageFallbackSaysSeenMore(t *testing.T) {
	x := pendingRestart()
	x.Repeats = 1
	if text, _ := Message(View{X: x}); !strings.HasSuffix(text, "· seen 1 more time") {
		t.Errorf("fallback %q", text)
	}
	for n, want := range map[int]string{2: "seen 2 more times", 999: "seen 999 more times", 1000: "seen 1,000 more times",
		9999: "seen 9,999 more times", 1234567: "seen 1,234,567 more times"} {
		if got := SeenMore(n); got != want {
			t.Errorf("SeenMore(%d) = %q, want %q", n, got, want)
		}
	}
}

// The longest AI plan the engine can make (a 1,000-character rationale, a
// 1,500-character explanation, a summary and actions full of characters
// JSON escapes six-fold) still fits Block Kit, buttons kept; Details has it
// all.
func TestMessageLongAIPlanFits(t *testing.T) {
	x := aiPlan()
	x.AI.Rationale = strings.Repeat("<&>", 333) + "!"
	x.Explanation = strings.Repeat("a<b ", 375)
	x.Event.Summary = strings.Repeat("<heap> & <stack> ", 250)
	for range 40 {
		x.AI.OutsideTrigger = append(x.AI.OutsideTrigger, "k"+strings.Repeat("<", 60)+" is missing from the event")
		x.AI.Params = append(x.AI.Params, recovery.AIParam{Key: strings.Repeat(">", 80), Value: strings.Repeat("&", 253), From: recovery.FromAI})
	}
	for i := range 60 {
		x.Actions = append(x.Actions, runbooks.Action{Type: runbooks.Failover, Parameters: map[string]any{"from": strings.Repeat("<", 500), "n": i}})
		x.Targets = append(x.Targets, "route/"+strings.Repeat("<", 500))
	}
	_, blocks := Message(View{X: x, Describe: describeFailover, Breaker: "more than 20 distinct targets failing within 5m0s", Signer: testSigner(t)})
	checkLimits(t, blocks, MaxBlocks, true)
	all := readable(t, blocks)
	for _, w := range []string{BlockApproval, "more action(s) not shown here", "proposed by AI", "AI explanation", "Blast-radius breaker open",
		"Outside the runbook's trigger:", "*Parameters:*"} {
		if !strings.Contains(all, w) {
			t.Errorf("cut message lacks %q", w)
		}
	}
	view := DetailsModal(x, describeFailover, Facts{})
	checkLimits(t, view.Blocks.BlockSet, MaxViewBlocks, false)
	if d := readable(t, view.Blocks.BlockSet); !strings.Contains(d, strings.Repeat("a&lt;b ", 300)) {
		t.Errorf("Details does not show the whole explanation")
	}
}

func readable(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var x any
	if err := json.Unmarshal(raw, &x); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(x); err != nil {
		t.Fatal(err)
	}
	// Undo JSON's quoting of the quotes inside texts, for readable wants.
	return strings.ReplaceAll(b.String(), `\"`, `"`)
}
