package bot

import (
	"strings"
	"testing"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/internal/slacktest"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

// /recover freeze, freezes, status and unfreeze through the Slack-compatible
// server: approvers only (a bystander is refused and audited), usage errors
// name what was wrong, the freeze and its lift are announced in the channel
// naming the approver, an in-scope event waits for approval with a message
// naming the freeze, and an approver's click runs it.
func TestSlackFreeze(t *testing.T) {
	h := newSlackHarness(t, harnessConfig{})
	for _, c := range []struct {
		name, user, text, want string
	}{
		{"bystander", bystander, "freeze 1h deploy", "You are not an approver: only approvers can freeze recoverbot."},
		{"no reason", approver, "freeze 1h", "`freeze` needs a duration and a reason"},
		{"bad duration", approver, "freeze soon deploy", "`soon` is not a duration"},
		{"unknown option", approver, "freeze 1h deploy --scope all", "`--scope` is not an option of `freeze`"},
		{"option without a value", approver, "freeze 1h deploy --runbook", "`--runbook` needs a value"},
		{"unknown runbook", approver, "freeze 1h deploy --runbook nope", `no runbook named "nope"`},
		{"too long", approver, "freeze 200h deploy", "at most 168h0m0s"},
		{"unfreeze without id", approver, "unfreeze", "`unfreeze` takes one freeze id"},
		{"unfreeze unknown", approver, "unfreeze fz_nope", "no active freeze fz_nope"},
		{"unfreeze by a bystander", bystander, "unfreeze --all", "only approvers can unfreeze recoverbot"},
		{"freezes, none", approver, "freezes", "No freeze holds"},
		{"status, none", approver, "status", "Freezes: none"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := h.command(c.user, incident, c.text); !strings.Contains(got.Text, c.want) {
				t.Errorf("/recover %s replied %q, want %q", c.text, got.Text, c.want)
			}
		})
	}
	if fs := h.eng.Freezes(); len(fs) != 0 {
		t.Fatalf("a refused command froze: %+v", fs)
	}
	recs, err := h.db.AuditPage(h.ctx, h.clock.Now().Add(-1), 0, 100)
	h.must(err, "audit")
	if got := auditReasons(recs); !strings.Contains(got, "slack:U2: refused: freeze: not an approver") {
		t.Errorf("the bystander's freeze is not audited:\n%s", got)
	}

	// A plan already waiting when the freeze begins shows a banner naming it.
	waiting, waitingRoot := h.pending(memoryLeak())
	got := h.command(approver, incident, "freeze 90m deploying api")
	fs := h.eng.Freezes()
	if len(fs) != 1 || !strings.Contains(got.Text, "🧊 Frozen: everything until") || !strings.Contains(got.Text, "`"+fs[0].ID+"`") {
		t.Fatalf("freeze replied %q, freezes %+v", got.Text, fs)
	}
	id := fs[0].ID
	h.waitFor("freeze notice", func(s *slacktest.Server) bool {
		return channelSays(s, "🧊 Freeze "+id+": everything until 2026-11-27T13:30:00Z (deploying api), by <@U1>.")
	})
	h.rootShows(waitingRoot.TS, "🧊 *Frozen*: `"+id+"` until")
	for _, sub := range []string{"freezes", "status"} {
		if got := h.command(bystander, incident, sub); !strings.Contains(got.Text, "`"+id+"` everything until") || !strings.Contains(got.Text, "deploying api (by <@U1>)") {
			t.Errorf("/recover %s = %q", sub, got.Text)
		}
	}

	// An event that would run by itself waits, and its message says which
	// freeze and until when; an approver's click runs it.
	ev := recovery.Event{Type: runbooks.CircuitBreakerCandidate, Severity: runbooks.Warning, Confidence: 0.9,
		Summary: "payments errors", Data: map[string]any{"errorRate": 75.0}, Context: map[string]any{"upstream": "payments"}}
	planID, root := h.pending(ev)
	h.rootShows(root.TS, "frozen by "+id+" (deploying api, everything) until 2026-11-27T13:30:00Z: a human must approve")
	if h.applies() != 0 {
		t.Fatalf("%d driver calls during the freeze before any approval", h.applies())
	}
	h.click(approver, incident, root.TS, commands.ActionApprove, buttonValue(h.t, root, commands.ActionApprove))
	h.rootShows(root.TS, "Approved by <@U1>")
	if x, err := h.db.Execution(h.ctx, planID); err != nil || x.ApprovedBy != "slack:"+approver {
		t.Fatalf("approved by %q (%v)", x.ApprovedBy, err)
	}

	got = h.command(approver, incident, "unfreeze "+id)
	if !strings.Contains(got.Text, "🔥 Lifted `"+id+"`") || len(h.eng.Freezes()) != 0 {
		t.Fatalf("unfreeze replied %q", got.Text)
	}
	h.waitFor("unfreeze notice", func(s *slacktest.Server) bool {
		return channelSays(s, "🔥 Freeze "+id+" lifted by <@U1>.")
	})
	h.waitFor("the freeze banner to go", func(s *slacktest.Server) bool {
		m, _ := s.Message(incident, waitingRoot.TS)
		return !strings.Contains(blocksText(m.Blocks), "Frozen") && strings.Contains(blocksText(m.Blocks), "Approval Required")
	})
	if x, _ := h.db.Execution(h.ctx, waiting); x.State != recovery.PendingApproval {
		t.Errorf("the plan waiting across the freeze is %s", x.State)
	}
	recs, err = h.db.AuditPage(h.ctx, h.clock.Now().Add(-1), 0, 1000)
	h.must(err, "audit")
	if got := auditReasons(recs); !strings.Contains(got, "slack:U1: freeze "+id+" lifted by slack:U1") {
		t.Errorf("the lift is not audited with its actor:\n%s", got)
	}
}

func channelSays(s *slacktest.Server, text string) bool {
	for _, m := range s.Messages(incident) {
		if strings.Contains(m.Text, text) {
			return true
		}
	}
	return false
}
