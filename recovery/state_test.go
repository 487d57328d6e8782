package recovery

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
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

// An undo whose call may have acted with no known outcome (never ended, or
// cut off by the lease) counts as called: never listed again, named by
// unsureUndo, and it holds a person's Roll back of the whole execution; a
// failed undo is listed again (a person's Roll back retries it).
func TestPendingUndoNeverRepeatsAnUnsureUndo(t *testing.T) {
	applied := func(i int) Step {
		return Step{Action: i, Type: "RATE_LIMIT", Phase: PhaseApply, Before: json.RawMessage(`{}`), EndedAt: time.Unix(1, 0)}
	}
	undo := func(i int, s Step) Step { s.Action, s.Type, s.Phase = i, "RATE_LIMIT", PhaseUndo; return s }
	for _, c := range []struct {
		name   string
		undo   Step // of action 1
		want   []int
		unsure bool
	}{
		{"never ended", undo(1, Step{}), []int{0}, true},
		{"cut off", undo(1, Step{Error: "cut off", CutOff: true, EndedAt: time.Unix(2, 0)}), []int{0}, true},
		{"failed", undo(1, Step{Error: "refused", EndedAt: time.Unix(2, 0)}), []int{1, 0}, false},
		{"not called", undo(1, Step{Error: "lease", NotCalled: true, EndedAt: time.Unix(2, 0)}), []int{1, 0}, false},
		{"ended well", undo(1, Step{EndedAt: time.Unix(2, 0)}), []int{0}, false},
	} {
		x := &Execution{Plan: Plan{ID: "x"}, State: Interrupted, Steps: []Step{applied(0), applied(1), c.undo}}
		if got := pendingUndo(x); !slices.Equal(got, c.want) {
			t.Errorf("%s: pendingUndo = %v, want %v", c.name, got, c.want)
		}
		if got := unsureUndo(x) != ""; got != c.unsure {
			t.Errorf("%s: unsureUndo = %q", c.name, unsureUndo(x))
		}
		// An unsure undo holds the whole rollback (the reverse order would
		// break); otherwise action 1 is left to undo.
		if x.CanRollBack() == c.unsure {
			t.Errorf("%s: CanRollBack = %v, want %v", c.name, x.CanRollBack(), !c.unsure)
		}
	}
}
