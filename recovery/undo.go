package recovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Never-auto covers undo. Undoing a rolling restart is another rolling
// restart, undoing a failover fails traffic over again: an automatic undo (a
// scheduled rollback, a failed verification) of an action that never runs
// without a human asks a human too, unless the runbook opted in with
// safety.autoRollback. Asking moves nothing: the execution stays where it is
// (SUCCEEDED, VERIFYING, VERIFIED or VERIFY_FAILED), UndoAwaits says what
// waits, and RollbackAt becomes the deadline, so the timer Start re-arms for
// a scheduled rollback also ends the wait after a restart. An approver's Roll
// back (Rollback) is the approval; DeclineRollback, or the deadline, keeps
// the target as it is. The thread says which happened.

// undoNeedsApproval says why an automatic undo of x must wait for a human
// ("" when it may run at once): an applied, not yet undone action is on the
// never-auto list or marked risk: high (needsHuman, guard.go), and the runbook did not set
// safety.autoRollback.
func undoNeedsApproval(x *Execution) string {
	if x.Safety.AutoRollback {
		return ""
	}
	return neverAutoUndo(x)
}

// neverAutoUndo says which of x's pending undos re-run a never-auto action.
func neverAutoUndo(x *Execution) string {
	var why []string
	for _, j := range pendingUndo(x) {
		i := x.Steps[j].Action
		if i < 0 || i >= len(x.Actions) {
			continue
		}
		if h := needsHuman(&x.Actions[i]); h != "" {
			why = append(why, fmt.Sprintf("undoing action %d (%s) runs it again, and it %s", i+1, x.Actions[i].Type, h))
		}
	}
	return strings.Join(why, "; ")
}

// undoCheck is the one re-check of an undo against the engine's state now,
// for an automatic undo and a person's Roll back alike, asked of the same
// guards as a plan (guard.go). refuse says why no driver may be called at all:
// the mode is dry-run or the runbook is in dry-run; nothing is undone, whoever
// asks. ask says why an automatic undo waits for a human: recoverbot is
// paused (a pause stops the bot acting on its own, not a person), a freeze
// covers the plan (an undo changes the frozen target as much as the plan
// did), or the runbook is gone or changed since the plan. A person's Roll back is that
// human decision: the undo restores what each driver observed before acting,
// whatever the runbook says now.
func (e *Engine) undoCheck(x *Execution, now time.Time) (refuse, ask string) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	p := e.proposalOf(x)
	s := e.situation(p, now)
	var asks []string
	for _, g := range []Guard{RunbookGuard{}, PausedGuard{}, FreezeGuard{}} {
		if v, why, _ := g.Check(p, s); v != Pass {
			asks = append(asks, why)
		}
	}
	if p.Runbook != nil || s.Mode == ModeDryRun { // the dry-run guard reads the runbook after the mode
		if v, why, _ := (DryRunGuard{}).Check(p, s); v == Dry {
			return why, ""
		}
	}
	return "", strings.Join(asks, "; ")
}

// autoUndo is the one door of an automatic undo: it moves x to ROLLING_BACK
// and undoes, or asks for approval (see above), or, when no driver may be
// called (undoCheck), undoes nothing and says why. x is the execution as last
// read; the move is a compare-and-set from its state.
func (e *Engine) autoUndo(ctx context.Context, x *Execution, trigger UndoTrigger, text string) {
	refuse, ask := e.undoCheck(x, e.clock.Now())
	if refuse != "" {
		e.skipUndo(ctx, x, trigger, refuse)
		return
	}
	if why := undoNeedsApproval(x); why != "" {
		ask = strings.Join(slices.DeleteFunc([]string{ask, why + " (runbook " + x.Runbook + " has no safety.autoRollback)"},
			func(s string) bool { return s == "" }), "; ")
	}
	if ask != "" {
		e.askUndo(ctx, x, trigger, ask)
		return
	}
	reason := string(trigger)
	if why := neverAutoUndo(x); why != "" {
		// The runbook opted in: say so, since it skips a human.
		reason += " without approval, as runbook " + x.Runbook + " sets safety.autoRollback: " + why
		text += " (no approval asked: runbook " + x.Runbook + " sets safety.autoRollback)"
	}
	if _, err := e.transition(ctx, Transition{ID: x.ID, From: []State{x.State}, To: RollingBack,
		Actor: ActorBot, Reason: reason,
		Mutate: func(x *Execution) error { x.RollbackAt, x.UndoAwaits = time.Time{}, ""; return nil },
		Outbox: []Notification{{Kind: NoteState, State: RollingBack, Text: text}}}); err != nil {
		if !errors.As(err, new(*MoveError)) {
			e.log.Error(string(trigger), "plan", x.ID, "err", err)
		}
		return
	}
	e.disarm(x.ID)
	e.undoAll(x.ID, x.Actions, string(trigger), false)
}

// skipUndo records that an automatic undo was not done because no driver may
// be called now: the target stays as it is, and nothing stays scheduled.
func (e *Engine) skipUndo(ctx context.Context, x *Execution, trigger UndoTrigger, why string) {
	text := fmt.Sprintf("🚫 The %s was not done: %s. Nothing is undone; the target stays as it is.", trigger, why)
	if _, err := e.transition(ctx, Transition{ID: x.ID, From: []State{x.State}, To: x.State,
		Actor: ActorBot, Reason: string(trigger) + " not done, nothing was undone: " + why,
		Mutate: func(x *Execution) error { x.RollbackAt, x.UndoAwaits = time.Time{}, ""; return nil },
		Outbox: []Notification{{Kind: NoteState, State: x.State, Text: text}}}); err != nil {
		if !errors.As(err, new(*MoveError)) {
			e.log.Error("skip the "+string(trigger), "plan", x.ID, "err", err)
		}
		return
	}
	e.disarm(x.ID)
}

// askUndo records that an automatic undo waits for a human until the
// approval deadline, and arms the timer that ends the wait.
func (e *Engine) askUndo(ctx context.Context, x *Execution, trigger UndoTrigger, why string) {
	now := e.clock.Now()
	deadline := now.Add(e.cfg.ApprovalTimeout)
	text := fmt.Sprintf("✋ The %s needs approval: %s. Nothing is undone until an approver presses Roll back; "+
		"Keep as is, or no answer by %s, leaves the target as it is.",
		trigger, why, deadline.UTC().Format("15:04:05 MST"))
	if _, err := e.transition(ctx, Transition{ID: x.ID, From: []State{x.State}, To: x.State, At: now,
		Actor: ActorBot, Reason: string(trigger) + " awaits approval: " + why,
		Mutate: func(x *Execution) error { x.UndoAwaits, x.RollbackAt = trigger, deadline; return nil },
		Outbox: []Notification{{Kind: NoteState, State: x.State, Text: text}}}); err != nil {
		if !errors.As(err, new(*MoveError)) {
			e.log.Error("ask for rollback approval", "plan", x.ID, "err", err)
		}
		return
	}
	e.arm(x.ID, deadline, e.scheduledRollback)
}

// DeclineRollback answers "keep as is" to an automatic undo awaiting
// approval: nothing is undone, and the execution stays where it is (a person
// may still roll it back later). CodeConflict when no undo awaits approval.
func (e *Engine) DeclineRollback(ctx context.Context, id, actor string) (Execution, error) {
	x, err := e.endUndoWait(ctx, id, actor, "rollback declined by "+actor,
		"✋ Rollback declined by "+actor+": nothing is undone; the target stays as it is.")
	if err == nil {
		e.disarm(id)
	}
	return x, err
}

// undoWaitExpired ends a wait for rollback approval whose deadline passed.
func (e *Engine) undoWaitExpired(x *Execution) {
	if _, err := e.endUndoWait(e.ctx, x.ID, ActorBot, "nobody approved the "+string(x.UndoAwaits)+" in time",
		"⏰ Nobody approved the "+string(x.UndoAwaits)+" in time: nothing is undone; the target stays as it is (Roll back is still possible)."); err != nil &&
		!errors.As(err, new(*MoveError)) && ErrorCode(err) != CodeConflict {
		e.log.Error("end the wait for rollback approval", "plan", x.ID, "err", err)
	}
}

func (e *Engine) endUndoWait(ctx context.Context, id, actor, reason, text string) (Execution, error) {
	x, err := e.store.Execution(ctx, id)
	if err != nil {
		return x, err
	}
	return e.transition(ctx, Transition{ID: id, From: []State{x.State}, To: x.State,
		Actor: actor, Reason: reason,
		Mutate: func(x *Execution) error {
			if x.UndoAwaits == "" {
				// Approved, declined or expired in between: the compare-and-set lets one through.
				return Errorf(CodeConflict, "no rollback of execution %s awaits approval", id)
			}
			x.UndoAwaits, x.RollbackAt = "", time.Time{}
			return nil
		},
		Outbox: []Notification{{Kind: NoteState, State: x.State, Text: text, Actor: actor}}})
}
