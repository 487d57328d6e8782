package recovery

import "fmt"

// State is where an execution is in its life. The allowed moves are one table,
// transitions; every move is a compare-and-set in the store.
type State string

// States.
const (
	PendingApproval State = "PENDING_APPROVAL"
	Approved        State = "APPROVED"
	Executing       State = "EXECUTING"
	Succeeded       State = "SUCCEEDED"
	Verifying       State = "VERIFYING"
	Verified        State = "VERIFIED"
	VerifyFailed    State = "VERIFY_FAILED"
	Rejected        State = "REJECTED"
	Expired         State = "EXPIRED"
	Cancelled       State = "CANCELLED"
	Suppressed      State = "SUPPRESSED"
	DryRun          State = "DRY_RUN"
	Failed          State = "FAILED"
	RollingBack     State = "ROLLING_BACK"
	RolledBack      State = "ROLLED_BACK"
	RollbackFailed  State = "ROLLBACK_FAILED"
	Interrupted     State = "INTERRUPTED"
)

// States lists every state.
var States = []State{PendingApproval, Approved, Executing, Succeeded, Verifying, Verified,
	VerifyFailed, Rejected, Expired, Cancelled, Suppressed, DryRun, Failed, RollingBack,
	RolledBack, RollbackFailed, Interrupted}

// transitions is the whole state machine: from → allowed next states.
var transitions = map[State][]State{
	PendingApproval: {Approved, Rejected, Expired, Cancelled},
	Approved:        {Executing, Suppressed, Interrupted},
	Executing:       {Succeeded, Failed, RollingBack, Interrupted},
	Succeeded:       {Verifying, RollingBack},
	Verifying:       {Verified, VerifyFailed, RollingBack, Interrupted},
	Verified:        {RollingBack},
	VerifyFailed:    {RollingBack},
	RollingBack:     {RolledBack, RollbackFailed, Interrupted},
	Failed:          {},
	Rejected:        {},
	Expired:         {},
	Cancelled:       {},
	Suppressed:      {},
	DryRun:          {},
	RolledBack:      {},
	RollbackFailed:  {},
	Interrupted:     {RollingBack},
}

// CanMove reports whether the state machine allows from → to. A move to the
// same state is always allowed: it annotates the execution (a step, a repeat, a
// "false action" mark) and is audited like any other.
func CanMove(from, to State) bool {
	if from == to {
		return from.Valid()
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Terminal reports whether no timer or worker will move s on its own.
func (s State) Terminal() bool {
	switch s {
	case PendingApproval, Approved, Executing, Verifying, RollingBack:
		return false
	}
	return true
}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// MoveError is returned when a compare-and-set finds the execution elsewhere.
type MoveError struct {
	ID       string
	From, To State // From is what the caller expected
	Actual   State
}

func (e *MoveError) Error() string {
	return fmt.Sprintf("execution %s is %s, not %s: cannot move to %s", e.ID, e.Actual, e.From, e.To)
}

// What a person may do with an execution. Each rule has this one owner: the
// engine refuses with it, and the buttons, the admin API and the CLI ask it.

// CanApprove reports whether the execution awaits a human's approval.
func (x *Execution) CanApprove() bool { return x.State == PendingApproval }

// approvedStates are the states a plan reaches only through an approval (a
// human's or the guards' auto), on its way to or after running.
var approvedStates = map[State]bool{Approved: true, Executing: true, Succeeded: true, Verifying: true,
	Verified: true, VerifyFailed: true, Failed: true, RollingBack: true, RolledBack: true, RollbackFailed: true}

// WasApproved reports whether the plan was approved and went on from there:
// a late Approve or Reject click is told who approved it, and that it runs
// once.
func (x *Execution) WasApproved() bool { return approvedStates[x.State] }

// settledStates are the states of an execution that acted and then came to
// rest: VERIFYING and ROLLING_BACK are left out because they end on their own,
// and a failed verification marks the execution false itself.
var settledStates = map[State]bool{Succeeded: true, Verified: true, VerifyFailed: true,
	Failed: true, RolledBack: true, RollbackFailed: true, Interrupted: true}

// CheckMarkFalse says why the execution cannot be marked as a false action
// (nil: it can): it must have run and settled, and nobody counted it as false
// yet.
func (x *Execution) CheckMarkFalse() error {
	switch {
	case x.State == Verifying || x.State == RollingBack:
		return Errorf(CodeConflict, "execution %s is %s: it can be marked as a false action once that ends", x.ID, x.State)
	case !settledStates[x.State]:
		return Errorf(CodeConflict, "execution %s is %s: only executions that ran can be marked as false actions", x.ID, x.State)
	case x.FalseAction:
		return Errorf(CodeConflict, "execution %s is already marked as a false action (by %s)", x.ID, x.FalseBy)
	}
	return nil
}

// CanMarkFalse reports whether CheckMarkFalse allows it.
func (x *Execution) CanMarkFalse() bool { return x.CheckMarkFalse() == nil }

// CheckRollBack says why a person cannot roll the execution back (nil: they
// can): it must have ended, or be verifying, a driver must have recorded a
// state to restore that is not restored yet, and no undo of it may have acted
// with no known outcome (unsureUndo).
func (x *Execution) CheckRollBack() error {
	if err := x.checkRollBackState(); err != nil {
		return err
	}
	if why := unsureUndo(x); why != "" {
		// Undoing the others would break the reverse order the undo keeps:
		// a person checks the targets by hand.
		return Errorf(CodeConflict, "execution %s is not rolled back by recoverbot: %s", x.ID, why)
	}
	if len(pendingUndo(x)) == 0 {
		return Errorf(CodeConflict, "execution %s changed nothing that can be undone", x.ID)
	}
	return nil
}

// checkRollBackState is CheckRollBack's rule on the state alone.
func (x *Execution) checkRollBackState() error {
	switch x.State {
	case Succeeded, Verifying, Verified, VerifyFailed, Interrupted:
		return nil
	}
	return Errorf(CodeConflict, "execution %s is %s: only SUCCEEDED, VERIFYING, VERIFIED, VERIFY_FAILED or INTERRUPTED executions can be rolled back", x.ID, x.State)
}

// CanRollBack reports whether CheckRollBack allows it.
func (x *Execution) CanRollBack() bool { return x.CheckRollBack() == nil }

// Changed reports whether a driver may have written anything for this
// execution: an apply step that started and did not fail cleanly (a failure
// with no state observed changed nothing; a step that never ended may have).
// Only such an execution starts a cooldown: a dry run, a refused or
// suppressed plan, a rejection or a failure before any write never makes a
// later event a duplicate.
func (x *Execution) Changed() bool {
	for _, s := range x.Steps {
		if s.Phase == PhaseApply && (s.Error == "" || len(s.Before) > 0) {
			return true
		}
	}
	return false
}
