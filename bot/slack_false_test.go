package bot

import (
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/internal/slacktest"
	"github.com/recoverbot/recoverbot/recovery"
)

// Mark as false action: the button appears on the final message of an
// execution that ran, for approvers only; a bystander and forged or borrowed
// values are refused and audited; an approver's click marks it once, the
// message then says so and drops the button, the thread tells it, and the
// false-action rate counts it. /recover false does the same from chat.
func TestSlackMarkFalseAction(t *testing.T) {
	h := newSlackHarness(t, harnessConfig{})
	id, root := h.pending(memoryLeak())
	if hasButton(root, commands.ActionMarkFalse) {
		t.Errorf("a plan awaiting approval offers Mark as false action")
	}
	if got := h.command(approver, incident, "false "+id); !strings.Contains(got.Text, "only executions that ran can be marked as false actions: nothing was done") {
		t.Errorf("/recover false before it ran = %q", got.Text)
	}
	h.click(approver, incident, root.TS, commands.ActionApprove, buttonValue(t, root, commands.ActionApprove))
	m := h.rootShows(root.TS, "Recovery succeeded")
	h.must(h.eng.Idle(h.ctx), "idle")
	m, _ = h.srv.Message(incident, m.TS)
	value := buttonValue(t, m, commands.ActionMarkFalse)

	t.Run("a bystander is refused and audited", func(t *testing.T) {
		if got := h.clickReply(bystander, root.TS, commands.ActionMarkFalse, value); got.Text != "You are not an approver for restart-pod-memory-leak." {
			t.Errorf("reply = %q", got.Text)
		}
		if got := h.command(bystander, incident, "false "+id); got.Text != "You are not an approver for restart-pod-memory-leak." {
			t.Errorf("/recover false by a bystander = %q", got.Text)
		}
		// The first refusal is the engine's, before the plan ran.
		r := h.refusals(id)
		if len(r) != 3 || !strings.Contains(r[0], "slack:U1 refused: mark as false refused: execution "+id+" is PENDING_APPROVAL") ||
			!strings.HasPrefix(r[1], "slack:U2 refused: mark as false: U2 is not an approver") || r[2] != r[1] {
			t.Errorf("refusals = %q", r)
		}
	})
	t.Run("forged and borrowed values are refused and audited", func(t *testing.T) {
		for name, v := range map[string]string{
			"the roll back button's value": buttonValue(t, m, commands.ActionRollback),
			"another plan id":              "01OTHERPLAN" + value[len(id):],
			"a forged signature":           id + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		} {
			if got := h.clickReply(approver, root.TS, commands.ActionMarkFalse, v); !strings.Contains(got.Text, "not one recoverbot made (altered or forged): nothing was done") {
				t.Errorf("%s: reply = %q", name, got.Text)
			}
		}
		recs, err := h.db.AuditSince(h.ctx, time.Time{})
		h.must(err, "audit")
		n := 0
		for _, r := range recs {
			if strings.Contains(r.Reason, "refused: button mark_false_action with a value recoverbot did not sign") {
				n++
			}
		}
		if n != 3 {
			t.Errorf("%d forged clicks audited, want 3", n)
		}
	})
	if x, _ := h.db.Execution(h.ctx, id); x.FalseAction {
		t.Fatalf("marked as false by a refused click")
	}

	t.Run("an approver's click marks it; the message says so", func(t *testing.T) {
		h.click(approver, incident, root.TS, commands.ActionMarkFalse, value)
		m := h.rootShows(root.TS, "🏷️ Marked as a false action by <@U1>")
		if hasButton(m, commands.ActionMarkFalse) || !hasButton(m, commands.ActionRollback) {
			t.Errorf("marked message buttons: %s", m.Blocks)
		}
		h.waitFor("the mark in the thread", func(s *slacktest.Server) bool {
			th := s.Thread(incident, root.TS)
			return len(th) > 0 && strings.Contains(th[len(th)-1].Text, "Marked as a false action by <@U1>")
		})
		x, _ := h.db.Execution(h.ctx, id)
		if !x.FalseAction || x.FalseBy != "slack:U1" {
			t.Errorf("execution: false %v by %q", x.FalseAction, x.FalseBy)
		}
		marked := 0
		for _, r := range h.audit(id) {
			if r.Actor == "slack:U1" && r.Reason == "marked as a false action by slack:U1" {
				marked++
			}
		}
		if marked != 1 {
			t.Errorf("%d audit records of the mark, want 1", marked)
		}
		// A second click, from a copy of the message shown before: told, not marked again.
		if got := h.clickReply(approver, root.TS, commands.ActionMarkFalse, value); !strings.Contains(got.Text, "already counted as a false action (marked by <@U1>)") {
			t.Errorf("second click = %q", got.Text)
		}
		if got := h.command(approver, incident, "stats"); !strings.Contains(got.Text, "(1 of 1 executions)") {
			t.Errorf("stats = %q", got.Text)
		}
	})

	t.Run("/recover false", func(t *testing.T) {
		for text, want := range map[string]string{
			"false":             "`false` needs exactly one execution id",
			"false a b":         "`false` needs exactly one execution id",
			"false 01NOPE":      "No execution `01NOPE`.",
			"false " + id:       "already counted as a false action",
			"status " + id:      "🏷️ Marked as a false action by <@U1>",
			"help":              "`false &lt;execution-id&gt;`",
			"false " + id + "!": "`false` needs exactly one execution id",
		} {
			if got := h.command(approver, incident, text); !strings.Contains(got.Text, want) {
				t.Errorf("/recover %s = %q, want %q", text, got.Text, want)
			}
		}
		id2, root2 := h.pending(degraded("pay"))
		h.click(approver, incident, root2.TS, commands.ActionApprove, buttonValue(t, root2, commands.ActionApprove))
		h.rootShows(root2.TS, "Recovery succeeded")
		h.must(h.eng.Idle(h.ctx), "idle")
		got := h.command(approver, incident, "false "+id2)
		if !strings.Contains(got.Text, "Marked `"+id2+"` (failover-upstream-degraded) as a false action") {
			t.Errorf("/recover false = %q", got.Text)
		}
		m2 := h.rootShows(root2.TS, "🏷️ Marked as a false action by <@U1>")
		if hasButton(m2, commands.ActionMarkFalse) {
			t.Errorf("the button stayed after /recover false")
		}
		if got := h.command(approver, elsewhere, "false "+id2); !strings.Contains(got.Text, "only takes commands in <#C1>") {
			t.Errorf("/recover false elsewhere = %q", got.Text)
		}
	})
	if n := h.applies(); n != 2 {
		t.Errorf("driver applies = %d, want 2: marking runs nothing", n)
	}
}

// The state of an execution after it ran shows on its message: a failed
// one offers Mark as false action (and View Details), a rolled-back one
// too; an auto-executed one that changed nothing undoable still can be
// marked.
func TestSlackMarkFalseOnEveryFinalState(t *testing.T) {
	h := newSlackHarness(t, harnessConfig{})
	a := h.submit(spike("/api/users"))
	if a.Decision != recovery.DecideAuto {
		t.Fatalf("decision %s", a.Decision)
	}
	root := h.root(a.PlanID)
	m := h.rootShows(root.TS, "Recovery succeeded")
	h.waitFor("the outcome buttons", func(s *slacktest.Server) bool {
		m, _ = s.Message(incident, root.TS)
		return hasButton(m, commands.ActionMarkFalse)
	})
	if hasButton(m, commands.ActionRollback) || !hasButton(m, commands.ActionDetails) {
		t.Errorf("auto CACHE_CLEAR outcome buttons: %s", m.Blocks)
	}
	h.click(approver, incident, root.TS, commands.ActionMarkFalse, buttonValue(t, m, commands.ActionMarkFalse))
	h.rootShows(root.TS, "Marked as a false action by <@U1>")

	id, root2 := h.pending(memoryLeak())
	h.click(approver, incident, root2.TS, commands.ActionApprove, buttonValue(t, root2, commands.ActionApprove))
	h.rootShows(root2.TS, "Recovery succeeded")
	h.must(h.eng.Idle(h.ctx), "idle")
	if got := h.command(approver, incident, "rollback "+id); !strings.Contains(got.Text, "Rolling back") {
		t.Fatalf("rollback = %q", got.Text)
	}
	m2 := h.rootShows(root2.TS, "Rolled back (requested by <@U1>)")
	h.waitFor("Mark as false action on the rolled-back message", func(s *slacktest.Server) bool {
		m2, _ = s.Message(incident, root2.TS)
		return hasButton(m2, commands.ActionMarkFalse)
	})
	if hasButton(m2, commands.ActionRollback) {
		t.Errorf("a rolled-back message offers Roll back")
	}
}
