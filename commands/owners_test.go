package commands

import (
	"strings"
	"testing"

	"github.com/recoverbot/recoverbot/recovery"
)

// The Roll back button is offered exactly when Execution.CanRollBack says so,
// as /recover status and the engine decide. Before the fix it also asked for
// rollback text: an execution without it had no button, though Rollback
// accepted it.
func TestRollBackButtonAsksCanRollBack(t *testing.T) {
	sign := testSigner(t)
	for _, s := range recovery.States {
		for _, text := range []bool{true, false} {
			x := ran(s, nil)()
			if !text {
				x.Rollback = nil
			}
			_, blocks := Message(View{X: x, Describe: describe, Signer: sign})
			if got, want := strings.Contains(readable(t, blocks), ActionRollback), x.CanRollBack(); got != want {
				t.Errorf("%s (rollback text: %v): Roll back button %v, want %v (CanRollBack)", s, text, got, want)
			}
		}
	}
}

// A late Approve or Reject is told the plan was already approved exactly when
// Execution.WasApproved says so.
func TestMovedTextAsksWasApproved(t *testing.T) {
	for _, s := range recovery.States {
		x := ran(s, nil)()
		for _, verb := range []string{"approve", "reject"} {
			if got, want := strings.Contains(movedText(x, verb), "already approved"), x.WasApproved(); got != want {
				t.Errorf("%s, %s: says already approved %v, want %v", s, verb, got, want)
			}
		}
	}
}
