package bot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/internal/slacktest"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

// #11 item 7 through Slack: the scheduled rollback of a RESTART_POD asks in
// the thread, shows Roll back and Keep as is, and Keep as is (approvers
// only) leaves the pod alone.
func TestSlackAutomaticUndoOfARestartAsksAndKeepAsIsKeepsIt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(`
name: restart-then-revert
trigger: {eventType: CAPACITY_WARNING}
actions:
  - type: RESTART_POD
    target: {deployment: api}
    parameters: {deployment: api}
safety: {maxExecutionsPerHour: 5, rollbackAfterMinutes: 10}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newSlackHarness(t, harnessConfig{runbooks: dir})
	id, root := h.pending(recovery.Event{Type: runbooks.CapacityWarning, Severity: runbooks.Warning, Confidence: 0.9, Summary: "api leaks"})
	h.click(approver, incident, root.TS, commands.ActionApprove, buttonValue(t, root, commands.ActionApprove))
	h.rootShows(root.TS, "scheduled rollback at")
	h.must(h.eng.Idle(h.ctx), "idle")

	h.clock.Advance(10 * time.Minute)
	h.must(h.eng.Idle(h.ctx), "idle")
	m := h.rootShows(root.TS, "the scheduled rollback awaits an approver until")
	if !hasButton(m, commands.ActionRollback) || !hasButton(m, commands.ActionKeep) {
		t.Fatalf("the root lacks Roll back and Keep as is: %s", m.Blocks)
	}
	h.waitFor("the question in the thread", func(s *slacktest.Server) bool {
		return threadSays(s.Thread(incident, root.TS), "The scheduled rollback needs approval")
	})
	keep := buttonValue(t, m, commands.ActionKeep)
	if got := h.clickReply(bystander, root.TS, commands.ActionKeep, keep); got.Text != "You are not an approver for restart-then-revert." {
		t.Errorf("a bystander's Keep as is: %q", got.Text)
	}
	h.click(approver, incident, root.TS, commands.ActionKeep, keep)
	h.waitFor("the answer in the thread", func(s *slacktest.Server) bool {
		return threadSays(s.Thread(incident, root.TS), "Rollback declined by <@U1>: nothing is undone")
	})
	h.must(h.eng.Idle(h.ctx), "idle")
	for _, c := range h.drv.Calls() {
		if c.Op == "undo" {
			t.Fatalf("the pod was restarted again: %+v", h.drv.Calls())
		}
	}
	if x, _ := h.db.Execution(h.ctx, id); x.State != recovery.Succeeded || x.UndoAwaits != "" {
		t.Errorf("state %s awaits %q, want SUCCEEDED with nothing pending", x.State, x.UndoAwaits)
	}
}

func threadSays(th []slacktest.Message, want string) bool {
	for _, m := range th {
		if strings.Contains(m.Text, want) {
			return true
		}
	}
	return false
}
