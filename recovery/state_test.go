package recovery

import (
	"encoding/json"
	"testing"
)

// TestPredicatesAgreeWithTheStateTable: what the buttons, the admin API and
// the engine offer (the predicates on Execution) is never a move the state
// table refuses, and each predicate's refusal names the state.
func TestPredicatesAgreeWithTheStateTable(t *testing.T) {
	for _, s := range States {
		applied := &Execution{Plan: Plan{ID: "x"}, State: s,
			Steps: []Step{{Action: 0, Phase: "apply", Before: json.RawMessage(`{}`)}}}
		if applied.CanApprove() && !CanMove(s, Approved) {
			t.Errorf("%s: CanApprove, but the table has no move to APPROVED", s)
		}
		if applied.CanRollBack() && !CanMove(s, RollingBack) {
			t.Errorf("%s: CanRollBack, but the table has no move to ROLLING_BACK", s)
		}
		if applied.CanMarkFalse() && !s.Terminal() {
			t.Errorf("%s: CanMarkFalse on a state that moves on its own", s)
		}
		nothing := &Execution{Plan: Plan{ID: "x"}, State: s}
		if nothing.CanRollBack() {
			t.Errorf("%s: CanRollBack with no recorded state to restore", s)
		}
		marked := *applied
		marked.FalseAction = true
		if marked.CanMarkFalse() {
			t.Errorf("%s: CanMarkFalse on an execution already marked", s)
		}
	}
	for s, want := range map[State]bool{Verifying: true, Succeeded: true, Interrupted: true, RollingBack: false, Failed: false} {
		x := &Execution{Plan: Plan{ID: "x"}, State: s, Steps: []Step{{Phase: "apply", Before: json.RawMessage(`{}`)}}}
		if got := x.CanRollBack(); got != want {
			t.Errorf("%s: CanRollBack() = %v, want %v", s, got, want)
		}
	}
}

// A cache clear cannot be undone, whatever its driver recorded: no Roll back
// is offered or accepted for it (the button used to ask len(Rollback) on top
// of CanRollBack; the rule is now undoable, asked by both).
func TestCacheClearCannotBeRolledBack(t *testing.T) {
	x := &Execution{Plan: Plan{ID: "x"}, State: Succeeded,
		Steps: []Step{{Action: 0, Type: "CACHE_CLEAR", Phase: PhaseApply, Before: json.RawMessage(`{}`)}}}
	if x.CanRollBack() {
		t.Error("CanRollBack on a cache clear")
	}
	x.Steps = append(x.Steps, Step{Action: 1, Type: "RATE_LIMIT", Phase: PhaseApply, Before: json.RawMessage(`{}`)})
	if got := pendingUndo(x); len(got) != 1 || got[0] != 1 {
		t.Errorf("pending undo %v, want only the rate limit's step 1", got)
	}
}
