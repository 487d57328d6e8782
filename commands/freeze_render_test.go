package commands

import (
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

var testFreeze = recovery.Freeze{ID: "fz_01KB5Z9A1B2C3D4E5F6G7H8J9K", Reason: "deploying api-gateway", Runbook: "restart-pod-memory-leak",
	Start: t0, End: t0.Add(90 * time.Minute), By: "slack:U0APPROVER"}

// The approval message of a plan held by a freeze: the reason the freeze
// guard gives reaches "Why approval is needed", naming the freeze, its
// reason, its scope and its end; the buttons are there (approving is the
// point).
func TestMessageHeldByAFreezeGolden(t *testing.T) {
	x := pendingRestart()
	x.Safety.RequiresApproval, x.Actions[0].Risk = false, ""
	v, why, _ := recovery.FreezeGuard{}.Check(&recovery.Proposal{RunbookName: x.Runbook, Targets: x.Targets},
		&recovery.Situation{Now: t0, Freezes: []recovery.Freeze{testFreeze}})
	if v != recovery.NeedApproval {
		t.Fatalf("the freeze guard passed the plan: %q", why)
	}
	x.Reasons = []string{why}
	other := testFreeze
	other.ID, other.Runbook = "fz_01KB5Z9A1B2C3D4E5F6G7H8J9M", "open-circuit-breaker"
	text, blocks := Message(View{X: x, Describe: describe, Freezes: []recovery.Freeze{testFreeze, other}, Signer: testSigner(t)})
	checkLimits(t, blocks, MaxBlocks, true)
	golden(t, "approval_pending_freeze", map[string]any{"text": text, "blocks": blocks})
	seen := visibleText(t, blocks)
	for _, line := range []string{"🤖 Auto-Recovery Approval Required",
		"*Why approval is needed:*\n• frozen by fz_01KB5Z9A1B2C3D4E5F6G7H8J9K (deploying api-gateway, runbook restart-pod-memory-leak) until 2026-11-27T13:34:00Z: a human must approve",
		"🧊 *Frozen*: `fz_01KB5Z9A1B2C3D4E5F6G7H8J9K` until <!date^1795786440^{time}|13:34 UTC> (deploying api-gateway). Nothing here runs by itself; an approver may still approve.",
		"✅ Approve & Execute", "❌ Reject"} {
		if !strings.Contains(seen, line) {
			t.Errorf("a person must see %q; the message shows:\n%s", line, seen)
		}
	}
	if strings.Contains(seen, other.ID) {
		t.Errorf("a freeze of another runbook is shown:\n%s", seen)
	}
	x.State = recovery.Approved
	if _, blocks := Message(View{X: x, Describe: describe, Freezes: []recovery.Freeze{testFreeze}}); strings.Contains(visibleText(t, blocks), "Frozen") {
		t.Error("the banner stays after approval")
	}
}

// The channel notices of a freeze and its lift, as posted (NoteText): the
// approver is a mention, the rest is text.
func TestFreezeNoticesGolden(t *testing.T) {
	for _, c := range []struct {
		name string
		n    recovery.Notification
		want string
	}{
		{"freeze_notice", recovery.FreezeNotice(testFreeze),
			"🧊 Freeze fz_01KB5Z9A1B2C3D4E5F6G7H8J9K: runbook restart-pod-memory-leak until 2026-11-27T13:34:00Z (deploying api-gateway), by <@U0APPROVER>. Plans in scope wait for approval; nothing is dropped."},
		{"unfreeze_notice", recovery.UnfreezeNotice([]string{testFreeze.ID}, t0.Add(time.Hour), "slack:U0APPROVER"),
			"🔥 Freeze fz_01KB5Z9A1B2C3D4E5F6G7H8J9K lifted by <@U0APPROVER>. Plans already waiting still need their approval."},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := NoteText(c.n)
			golden(t, c.name, map[string]any{"text": got})
			if got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}
