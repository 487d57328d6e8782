package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/recoverbot/recoverbot/runbooks"
)

const settingPaused = "paused"

// transition is Store.Transition that also pokes the outbox courier.
func (e *Engine) transition(ctx context.Context, t Transition) (Execution, error) {
	if t.At.IsZero() {
		t.At = e.clock.Now()
	}
	x, err := e.store.Transition(ctx, t)
	if err == nil && len(t.Outbox) > 0 {
		e.poke()
	}
	if o := e.cfg.Observer; err == nil && o != nil && !(len(t.From) == 1 && t.From[0] == t.To) {
		o.Moved(t.To) // a real move, not an annotation
	}
	if err == nil && x.Silence.pending() && !e.silenceHeld(&x) {
		// Every move passes here: the one place a silence ends (silence.go).
		e.endSilence(x.ID, false)
	}
	return x, err
}

// Approve moves a plan awaiting approval to APPROVED and starts it. Authorization
// (is actor an approver?) is the caller's job; four-eyes is checked here because
// it depends on the plan. The guards run again first, with the current mode,
// runbook, pause, breaker and rate limit: a plan they now refuse is not
// approved, and its thread and audit trail say why (the plan keeps waiting).
// Two concurrent approvals: the store's compare-and-set lets exactly one
// through; the other gets a *MoveError.
func (e *Engine) Approve(ctx context.Context, id, actor string) (Execution, error) {
	now := e.clock.Now()
	cur, err := e.store.Execution(ctx, id)
	if err != nil {
		return cur, err
	}
	if !cur.CanApprove() {
		return cur, &MoveError{ID: id, From: PendingApproval, To: Approved, Actual: cur.State}
	}
	e.mu.RLock()
	why := e.recheck(&cur, true, now)
	e.mu.RUnlock()
	if why != "" {
		return cur, e.refuseApproval(ctx, &cur, actor, why)
	}
	x, err := e.transition(ctx, Transition{ID: id, From: []State{PendingApproval}, To: Approved, At: now,
		Actor: actor, Reason: "approved by " + actor,
		Mutate: func(x *Execution) error {
			if x.FourEyes && x.RequestedBy != "" && x.RequestedBy == actor {
				return Errorf(CodeForbidden, "four-eyes: %s requested this plan and cannot approve it", actor)
			}
			if !x.Deadline.IsZero() && now.After(x.Deadline) {
				return Errorf(CodeConflict, "the approval deadline passed at %s", x.Deadline.UTC().Format(time.RFC3339))
			}
			x.ApprovedBy = actor
			return nil
		},
		Outbox: []Notification{{Kind: NoteState, State: Approved, Text: fmt.Sprintf("✅ Approved by %s at %s", actor, now.UTC().Format("15:04:05")), Actor: actor}},
	})
	if err != nil {
		if ErrorCode(err) == CodeConflict && !errors.As(err, new(*MoveError)) {
			// Deadline passed but the timer has not fired yet: expire it now.
			e.expire(id)
		}
		return x, err
	}
	e.disarm(id)
	if o := e.cfg.Observer; o != nil {
		o.ApprovalWait(now.Sub(x.CreatedAt))
	}
	e.mu.Lock()
	if x.Event.Fingerprint != "" && e.fingerprints[x.Event.Fingerprint] == id {
		delete(e.fingerprints, x.Event.Fingerprint)
	}
	e.mu.Unlock()
	e.goWork(func() { e.run(id) })
	return x, nil
}

// refuseApproval records, in the plan's trail and thread, an approval the
// guards refused, and returns the error for the approver.
func (e *Engine) refuseApproval(ctx context.Context, x *Execution, actor, why string) error {
	reason := fmt.Sprintf("approval by %s refused, nothing was run: %s", actor, why)
	if _, err := e.transition(ctx, Transition{ID: x.ID, From: []State{PendingApproval}, To: PendingApproval,
		Actor: actor, Reason: reason,
		Outbox: []Notification{{Kind: NoteStep, Text: "🚫 " + reason}}}); err != nil {
		return err
	}
	return Errorf(CodeConflict, "not approved: %s", why)
}

// Reject closes a plan awaiting approval.
func (e *Engine) Reject(ctx context.Context, id, actor string) (Execution, error) {
	return e.closePending(ctx, id, Rejected, actor, "rejected by "+actor, "❌ Rejected by "+actor+": not executed")
}

// CancelAlert cancels the plan awaiting approval for a resolved alert's
// fingerprint. It reports whether there was one.
func (e *Engine) CancelAlert(ctx context.Context, fingerprint, actor string) (string, bool, error) {
	e.mu.Lock()
	id, ok := e.fingerprints[fingerprint]
	e.mu.Unlock()
	if !ok {
		return "", false, nil
	}
	_, err := e.closePending(ctx, id, Cancelled, actor, "the alert resolved before approval", "Cancelled: the alert resolved")
	var m *MoveError
	if errors.As(err, &m) {
		return id, false, nil // approved or expired in between: nothing to cancel
	}
	return id, err == nil, err
}

func (e *Engine) expire(id string) {
	_, err := e.closePending(e.ctx, id, Expired, ActorBot, "approval deadline passed", "⏰ Approval timed out — not executed")
	if err != nil && !errors.As(err, new(*MoveError)) {
		e.log.Error("expire plan", "plan", id, "err", err)
	}
}

func (e *Engine) closePending(ctx context.Context, id string, to State, actor, reason, text string) (Execution, error) {
	now := e.clock.Now()
	cur, err := e.store.Execution(ctx, id)
	if err != nil {
		return cur, err
	}
	x, err := e.transition(ctx, Transition{ID: id, From: []State{PendingApproval}, To: to, At: now,
		Actor: actor, Reason: reason,
		Outbox: []Notification{{Kind: NoteState, State: to, Text: text, Actor: actor}},
		Dedup:  e.closeDedup(&cur, now),
	})
	if err != nil {
		return x, err
	}
	e.disarm(id)
	e.closeTarget(&x, now)
	return x, nil
}

// Rollback undoes a finished execution's applied actions, restoring what each
// driver observed before acting. It is a person's decision: it runs while
// paused and after the runbook changed, but not where no driver may be called
// (mode dry-run, runbook in dry-run: undoCheck), and then says why
// (CodeConflict, in the trail and thread).
func (e *Engine) Rollback(ctx context.Context, id, actor string) (Execution, error) {
	x, err := e.store.Execution(ctx, id)
	if err != nil {
		return x, err
	}
	if err := x.CheckRollBack(); err != nil {
		if x.checkRollBackState() == nil {
			// Refused for what the execution holds, not its state: said in
			// the thread and the audit, not only to the one who asked.
			return x, e.refuseRollback(ctx, &x, actor, ErrorMessage(err))
		}
		return x, err
	}
	if refuse, _ := e.undoCheck(&x, e.clock.Now()); refuse != "" {
		// A person may roll back while paused, or after the runbook changed;
		// but where no driver may be called, nobody's click calls one.
		return x, e.refuseRollback(ctx, &x, actor, refuse)
	}
	reason, text := "rollback requested by "+actor, "↩️ Rolling back, requested by "+actor
	if x.UndoAwaits != "" {
		reason, text = string(x.UndoAwaits)+" approved by "+actor, "↩️ Rolling back: the "+string(x.UndoAwaits)+" was approved by "+actor
	}
	x, err = e.transition(ctx, Transition{ID: id, From: []State{x.State}, To: RollingBack,
		Actor: actor, Reason: reason,
		Mutate: func(x *Execution) error { x.RollbackAt, x.UndoAwaits = time.Time{}, ""; return nil },
		Outbox: []Notification{{Kind: NoteState, State: RollingBack, Text: text, Actor: actor}}})
	if err != nil {
		return x, err
	}
	e.disarm(id)
	e.goWork(func() { e.undoAll(id, x.Actions, "", false) })
	return x, nil
}

// scheduledRollback fires at RollbackAt: the scheduled rollback itself, or
// the end of the wait for its approval (undo.go).
func (e *Engine) scheduledRollback(id string) {
	x, err := e.store.Execution(e.ctx, id)
	if err != nil {
		e.log.Error("scheduled rollback", "plan", id, "err", err)
		return
	}
	if !CanMove(x.State, RollingBack) || x.State == Interrupted {
		return // rolled back, or needs a human (INTERRUPTED), in the meantime
	}
	if x.UndoAwaits != "" {
		e.undoWaitExpired(&x)
		return
	}
	e.autoUndo(e.ctx, &x, UndoScheduled, "↩️ Scheduled rollback: restoring the previous state")
}

// Pause stops all new plans until Resume; the flag survives a restart.
func (e *Engine) Pause(ctx context.Context, actor string) error { return e.setPaused(ctx, true, actor) }

// Resume lifts a pause.
func (e *Engine) Resume(ctx context.Context, actor string) error {
	return e.setPaused(ctx, false, actor)
}

// Paused reports whether the engine is paused.
func (e *Engine) Paused() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.paused
}

func (e *Engine) setPaused(ctx context.Context, on bool, actor string) error {
	v, word := "false", "resumed"
	if on {
		v, word = "true", "paused"
	}
	if err := e.store.PutSetting(ctx, settingPaused, []byte(v)); err != nil {
		return Errorf(CodeUnavailable, "could not persist the pause flag").wrap(err)
	}
	now := e.clock.Now()
	e.mu.Lock()
	e.paused = on
	open := e.breaker
	e.mu.Unlock()
	if !on && open.Reason != "" {
		// Resuming is the human decision that closes the blast-radius breaker;
		// its windows count anew from here, after a restart too. Persisted
		// first, then closed in memory: a write that failed leaves it open in
		// both (the store answers a write it took with what the commit did).
		closed := breakerState{ClosedAt: now}
		if err := e.putBreaker(ctx, closed); err != nil {
			return Errorf(CodeUnavailable, "could not persist the breaker reset; it stays open").wrap(err)
		}
		e.mu.Lock()
		if e.breaker.Reason == open.Reason && e.breaker.At.Equal(open.At) {
			e.breaker = closed
			e.blast = blastWindows{failing: map[string]time.Time{}}
		}
		e.mu.Unlock()
		word = "resumed (blast-radius breaker closed)"
	}
	err := e.store.Record(ctx,
		[]AuditRecord{{At: now, Actor: actor, Reason: "recoverbot " + word + " by " + actor}},
		[]Notification{{At: now, Kind: NoteNotice, Text: fmt.Sprintf("⏯️ recoverbot %s by %s", word, actor), Actor: actor}})
	if err == nil {
		e.poke()
	}
	return err
}

// run executes an APPROVED plan: rate limit, target locks, then each action
// through its driver, persisting each step before and after the call (persist,
// then act). A failed action rolls back what was applied, in reverse.
func (e *Engine) run(id string) {
	ctx := e.ctx
	log := e.log.With("plan", id)
	x, err := e.store.Execution(ctx, id)
	if err != nil {
		log.Error("load execution", "err", err)
		return
	}
	if x.State != Approved {
		return
	}
	now := e.clock.Now()
	if why := e.admit(&x, now); why != "" {
		e.abandon(ctx, &x, "not started: "+why)
		return
	}
	release, err := e.locks.acquire(ctx, e.lockKeys(&x.Plan), e.cfg.LockWait)
	if err != nil {
		e.abandon(ctx, &x, err.Error())
		return
	}
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	x, err = e.transition(ctx, Transition{ID: id, From: []State{Approved}, To: Executing,
		Actor: ActorBot, Reason: "execution started",
		Rate:   &RateStamp{Runbook: x.Runbook, At: now, ExecutionID: id},
		Outbox: []Notification{{Kind: NoteState, State: Executing, Text: fmt.Sprintf("▶️ Executing %d action(s) of %s", len(x.Actions), x.Runbook)}}})
	if err != nil {
		log.Error("start execution", "err", err)
		return
	}
	e.startSilence(&x) // in the background: Alertmanager never delays the actions
	for i, a := range x.Actions {
		if err := e.applyOne(ctx, id, i, a, len(x.Actions)); err != nil {
			if e.leaseLost(id, err) {
				return // EXECUTING: the next leader reports it INTERRUPTED (Start)
			}
			e.fail(ctx, id, i, a, err)
			return
		}
	}
	x, err = e.succeed(ctx, id)
	if err != nil {
		log.Error("finish execution", "err", err)
		return
	}
	release() // verification watches; it does not act on the targets
	released = true
	e.startVerify(ctx, &x)
}

// succeed records that every action of an execution succeeded, starts its
// cooldown and arms its scheduled rollback, if any.
func (e *Engine) succeed(ctx context.Context, id string) (Execution, error) {
	ran, err := e.store.Execution(ctx, id) // with its steps: what it changed
	if err != nil {
		return ran, err
	}
	done := e.clock.Now()
	rollbackAt := rollbackTime(&ran.Plan, done)
	text := "✅ Recovery succeeded"
	if !rollbackAt.IsZero() {
		text += "; scheduled rollback at " + rollbackAt.UTC().Format(time.RFC3339)
	}
	x, err := e.transition(ctx, Transition{ID: id, From: []State{Executing}, To: Succeeded, At: done,
		Actor: ActorBot, Reason: "every action succeeded",
		Mutate: func(x *Execution) error { x.RollbackAt = rollbackAt; return nil },
		Outbox: []Notification{{Kind: NoteState, State: Succeeded, Text: text}},
		Dedup:  e.closeDedup(&ran, done)})
	if err != nil {
		return x, err
	}
	e.closeTarget(&x, done)
	if !rollbackAt.IsZero() {
		e.arm(id, rollbackAt, e.scheduledRollback)
	}
	return x, nil
}

// rollbackTime is when a plan that succeeded at done rolls back on its own
// (zero: never): rollbackAfterMinutes, or the end of its first time-boxed
// action (circuit breaker 60 s, rate limit 30 min), whichever comes first,
// through the same persisted timer.
func rollbackTime(p *Plan, done time.Time) time.Time {
	var at time.Time
	if m := p.Safety.RollbackAfterMinutes; m > 0 {
		at = done.Add(time.Duration(m) * time.Minute)
	}
	for _, a := range p.Actions {
		if a.Duration > 0 {
			if t := done.Add(time.Duration(a.Duration) * time.Second); at.IsZero() || t.Before(at) {
				at = t
			}
		}
	}
	return at
}

// admit runs the guards again at the start of a run — the current mode,
// runbook, pause, breaker and rate limit — and, if they let it run, holds its
// hourly slot. An auto plan runs only if they would still run it unattended;
// a plan a human approved, if they ask for nothing more. It returns why not,
// or "".
func (e *Engine) admit(x *Execution, now time.Time) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	why := e.recheck(x, x.Decision != DecideAuto, now)
	if why == "" {
		e.rate.reserve(x.Runbook, x.ID, now)
	}
	return why
}

// abandon ends an approved plan that may not start (its guards now refuse, a
// busy target): nothing ran, so its rate slot is freed and no cooldown starts.
func (e *Engine) abandon(ctx context.Context, x *Execution, reason string) {
	now := e.clock.Now()
	e.mu.Lock()
	e.rate.drop(x.Runbook, x.ID)
	e.mu.Unlock()
	if _, err := e.transition(ctx, Transition{ID: x.ID, From: []State{Approved}, To: Suppressed, At: now,
		Actor: ActorBot, Reason: reason,
		Outbox: []Notification{{Kind: NoteState, State: Suppressed, Text: "🚫 Not executed: " + reason}},
		Dedup:  e.closeDedup(x, now)}); err != nil {
		e.log.Error("abandon execution", "plan", x.ID, "err", err)
	}
	e.closeTarget(x, now)
}

// applyOne runs action i: a step record is persisted before the driver is
// called, so a crash mid-call leaves evidence that it may have acted.
func (e *Engine) applyOne(ctx context.Context, id string, i int, a runbooks.Action, n int) error {
	drv, err := e.drivers.For(a)
	if err != nil {
		return err
	}
	start := e.clock.Now()
	if _, err := e.transition(ctx, Transition{ID: id, From: []State{Executing}, To: Executing, At: start,
		Actor: ActorBot, Reason: fmt.Sprintf("action %d/%d %s starting", i+1, n, a.Type),
		Mutate: func(x *Execution) error {
			x.Steps = append(x.Steps, Step{Action: i, Type: string(a.Type), Phase: PhaseApply, StartedAt: start})
			return nil
		},
		Outbox: []Notification{{Kind: NoteStep, Text: fmt.Sprintf("▶️ Step %d/%d: %s", i+1, n, drv.Describe(a))}}}); err != nil {
		return fmt.Errorf("persist step start: %w", err)
	}
	var before json.RawMessage
	dctx, cancel, applyErr := e.leaseCtx(ctx)
	notCalled := applyErr != nil
	if !notCalled {
		before, applyErr = drv.Apply(WithExecution(dctx, id, i), a, e.reporter(ctx, id, Executing))
		applyErr = leaseCut(dctx, applyErr)
		cancel()
	}
	end := e.clock.Now()
	if o := e.cfg.Observer; o != nil {
		o.ActionDone(a.Type, end.Sub(start), applyErr)
	}
	text := fmt.Sprintf("✅ Step %d/%d done: %s", i+1, n, a.Type)
	if applyErr != nil {
		text = fmt.Sprintf("❌ Step %d/%d failed: %s: %v", i+1, n, a.Type, applyErr)
	}
	if _, err := e.transition(ctx, Transition{ID: id, From: []State{Executing}, To: Executing, At: end,
		Actor: ActorBot, Reason: fmt.Sprintf("action %d/%d %s ended", i+1, n, a.Type),
		Mutate: func(x *Execution) error {
			s := &x.Steps[len(x.Steps)-1]
			s.Before, s.EndedAt, s.NotCalled = before, end, notCalled
			s.CutOff = !notCalled && errors.Is(applyErr, errLeaseOver)
			if applyErr != nil {
				s.Error = applyErr.Error()
			}
			return nil
		},
		Outbox: []Notification{{Kind: NoteStep, Text: text}}}); err != nil {
		return errors.Join(applyErr, fmt.Errorf("persist step end: %w", err))
	}
	return applyErr
}

// errLeaseEnds is the cause of a driver call's deadline under an election:
// past it, another replica may lead.
var errLeaseEnds = errors.New("this replica's leadership lease ends: the driver call is cut off")

// errLeaseOver marks a driver call refused, or cut off, because this
// replica's lease ran out: not a failure of the action but the end of this
// replica's leadership (leaseLost).
var errLeaseOver = errors.New("this replica's leadership lease ran out (another replica may lead now)")

// leaseCtx bounds a driver call by the leadership lease (Config.LeaseDeadline)
// and refuses, right before acting, a call whose lease has run out: a deposed
// leader still running (paused, partitioned) must not act, and its store
// writes are fenced but a driver call is not. The refusal is the step's error,
// persisted with it (audited, Step.NotCalled); nothing was called.
func (e *Engine) leaseCtx(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if e.cfg.LeaseDeadline == nil {
		return ctx, func() {}, nil
	}
	dl := e.cfg.LeaseDeadline()
	if now := e.clock.Now(); !now.Before(dl) {
		return nil, nil, fmt.Errorf("not called: %w at %s", errLeaseOver, dl.UTC().Format(time.RFC3339Nano))
	}
	dctx, cancel := context.WithDeadlineCause(ctx, dl, errLeaseEnds)
	return dctx, cancel, nil
}

// leaseCut marks the error of a driver call that the lease deadline cut off
// (errLeaseOver): the driver may have acted, so its step is not NotCalled.
func leaseCut(dctx context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(dctx), errLeaseEnds) {
		return fmt.Errorf("%w: the call was cut off and may have acted: %w", errLeaseOver, err)
	}
	return err
}

// leaseLost reports whether a driver call's error is this replica's lease
// running out. Then the replica stops acting and writing for execution id:
// its state (EXECUTING, ROLLING_BACK) and steps are left for the next
// leader's Start, which resumes an undo no call of which may have acted and
// reports anything else INTERRUPTED; and Config.LeaseLost ends this
// replica's leadership.
func (e *Engine) leaseLost(id string, err error) bool {
	if !errors.Is(err, errLeaseOver) {
		return false
	}
	e.log.Warn("leadership lease ran out: this execution is left to the next leader", "plan", id, "err", err)
	if e.cfg.LeaseLost != nil {
		e.cfg.LeaseLost(err)
	}
	return true
}

// reporter turns a driver's progress lines into step notifications.
func (e *Engine) reporter(ctx context.Context, id string, state State) Reporter {
	return func(line string) {
		if _, err := e.transition(ctx, Transition{ID: id, From: []State{state}, To: state,
			Actor: ActorDriver, Reason: line,
			Outbox: []Notification{{Kind: NoteStep, Text: "• " + line}}}); err != nil {
			e.log.Warn("record driver report", "plan", id, "err", err)
		}
	}
}

// fail handles a failed action: roll back what was applied, or just FAILED.
func (e *Engine) fail(ctx context.Context, id string, i int, a runbooks.Action, cause error) {
	now := e.clock.Now()
	x, err := e.store.Execution(ctx, id)
	if err != nil {
		e.log.Error("load failed execution", "plan", id, "err", err)
		return
	}
	reason := fmt.Sprintf("action %d (%s) failed: %v", i+1, a.Type, cause)
	if len(pendingUndo(&x)) == 0 {
		if _, err := e.transition(ctx, Transition{ID: id, From: []State{Executing}, To: Failed, At: now,
			Actor: ActorBot, Reason: reason + "; nothing was changed, nothing to roll back",
			Mutate: func(x *Execution) error { x.Error = reason; return nil },
			Outbox: []Notification{{Kind: NoteState, State: Failed, Text: "❌ Failed: " + reason + ". Nothing was changed."}},
			Dedup:  e.closeDedup(&x, now)}); err != nil {
			e.log.Error("mark failed", "plan", id, "err", err)
		}
		e.closeTarget(&x, now)
		return
	}
	if _, err := e.transition(ctx, Transition{ID: id, From: []State{Executing}, To: RollingBack, At: now,
		Actor: ActorBot, Reason: reason + "; rolling back",
		Mutate: func(x *Execution) error { x.Error = reason; return nil },
		Outbox: []Notification{{Kind: NoteState, State: RollingBack, Text: "❌ " + reason + ". Rolling back what was applied."}}}); err != nil {
		e.log.Error("start rollback", "plan", id, "err", err)
		return
	}
	e.undoAll(id, x.Actions, reason, true)
}

// undoneWell says an undo step's call ended without an error: its action is
// restored.
func undoneWell(s Step) bool { return s.Phase == PhaseUndo && s.Error == "" && !s.EndedAt.IsZero() }

// pendingUndo lists the applied steps (with a before-state) not yet undone,
// newest first: the order to undo them in. An action whose undo was called
// and ended well is undone; one whose undo call may have acted with no known
// outcome (Step.OutcomeUnknown) is not listed either: it is never called
// twice (unsureUndo names it). A failed undo is listed: a person's Roll back
// retries it.
func pendingUndo(x *Execution) []int {
	undone := map[int]bool{}
	for _, s := range x.Steps {
		if undoneWell(s) || s.Phase == PhaseUndo && s.OutcomeUnknown() {
			undone[s.Action] = true
		}
	}
	var out []int
	for j := len(x.Steps) - 1; j >= 0; j-- {
		s := x.Steps[j]
		if s.Phase == PhaseApply && len(s.Before) > 0 && !undone[s.Action] && undoable(runbooks.ActionType(s.Type)) {
			out = append(out, j)
			undone[s.Action] = true
		}
	}
	return out
}

// unsureUndo says which actions' undo was called with no known outcome
// (Step.OutcomeUnknown) and never ended well since: recoverbot does not call
// them again, and a person must check those targets ("" when none).
func unsureUndo(x *Execution) string {
	done := map[int]bool{}
	for _, s := range x.Steps {
		if undoneWell(s) {
			done[s.Action] = true
		}
	}
	var why []string
	for _, s := range x.Steps {
		if s.Phase == PhaseUndo && s.OutcomeUnknown() && !done[s.Action] {
			done[s.Action] = true
			why = append(why, fmt.Sprintf("the undo of action %d (%s) was called before and its outcome is unknown: it is not called twice, check the target by hand", s.Action+1, s.Type))
		}
	}
	return strings.Join(why, "; ")
}

// refuseRollback records, in the audit and the thread, a person's Roll back
// that calls nothing, and says why as a conflict.
func (e *Engine) refuseRollback(ctx context.Context, x *Execution, actor, why string) error {
	reason := fmt.Sprintf("rollback by %s refused, nothing was undone: %s", actor, why)
	if _, err := e.transition(ctx, Transition{ID: x.ID, From: []State{x.State}, To: x.State,
		Actor: actor, Reason: reason,
		Outbox: []Notification{{Kind: NoteStep, Text: "🚫 " + reason}}}); err != nil {
		return err
	}
	return Errorf(CodeConflict, "not rolled back: %s", why)
}

// undoAll restores, in reverse order, every applied action of an execution that
// is ROLLING_BACK. A failed undo does not stop the others; the end state says
// whether all of them worked. locked says the caller already holds the targets.
func (e *Engine) undoAll(id string, actions []runbooks.Action, cause string, locked bool) {
	ctx := e.ctx
	x, err := e.store.Execution(ctx, id)
	if err != nil {
		e.log.Error("load execution for rollback", "plan", id, "err", err)
		return
	}
	if !locked {
		release, err := e.locks.acquire(ctx, e.lockKeys(&x.Plan), e.cfg.LockWait)
		if err != nil {
			e.finishRollback(ctx, &x, []string{err.Error()}, cause)
			return
		}
		defer release()
	}
	var failures []string
	for _, j := range pendingUndo(&x) {
		s := x.Steps[j]
		a := actions[s.Action]
		if err := e.undoOne(ctx, id, s, a); err != nil {
			if e.leaseLost(id, err) {
				return // ROLLING_BACK: the next leader's Start decides (resumeUndo)
			}
			failures = append(failures, fmt.Sprintf("undo of action %d (%s): %v", s.Action+1, a.Type, err))
		}
	}
	e.finishRollback(ctx, &x, failures, cause)
}

func (e *Engine) undoOne(ctx context.Context, id string, s Step, a runbooks.Action) error {
	drv, err := e.drivers.For(a)
	if err != nil {
		return err
	}
	start := e.clock.Now()
	if _, err := e.transition(ctx, Transition{ID: id, From: []State{RollingBack}, To: RollingBack, At: start,
		Actor: ActorBot, Reason: fmt.Sprintf("undo of action %d %s starting", s.Action+1, a.Type),
		Mutate: func(x *Execution) error {
			x.Steps = append(x.Steps, Step{Action: s.Action, Type: s.Type, Phase: PhaseUndo, StartedAt: start})
			return nil
		},
		Outbox: []Notification{{Kind: NoteStep, Text: fmt.Sprintf("↩️ Undoing action %d: %s", s.Action+1, a.Type)}}}); err != nil {
		return fmt.Errorf("persist undo start: %w", err)
	}
	dctx, cancel, undoErr := e.leaseCtx(ctx)
	notCalled := undoErr != nil
	if !notCalled {
		undoErr = leaseCut(dctx, drv.Undo(WithExecution(dctx, id, s.Action), a, s.Before, e.reporter(ctx, id, RollingBack)))
		cancel()
	}
	end := e.clock.Now()
	text := fmt.Sprintf("✅ Action %d restored", s.Action+1)
	if undoErr != nil {
		text = fmt.Sprintf("❌ Undo of action %d failed: %v", s.Action+1, undoErr)
	}
	if _, err := e.transition(ctx, Transition{ID: id, From: []State{RollingBack}, To: RollingBack, At: end,
		Actor: ActorBot, Reason: fmt.Sprintf("undo of action %d ended", s.Action+1),
		Mutate: func(x *Execution) error {
			st := &x.Steps[len(x.Steps)-1]
			st.EndedAt, st.NotCalled = end, notCalled
			st.CutOff = !notCalled && errors.Is(undoErr, errLeaseOver)
			if undoErr != nil {
				st.Error = undoErr.Error()
			}
			return nil
		},
		Outbox: []Notification{{Kind: NoteStep, Text: text}}}); err != nil {
		return errors.Join(undoErr, fmt.Errorf("persist undo end: %w", err))
	}
	return undoErr
}

func (e *Engine) finishRollback(ctx context.Context, x *Execution, failures []string, cause string) {
	now := e.clock.Now()
	to, reason, text := RolledBack, "every applied action was restored", "↩️ Rolled back: the previous state is restored"
	if cause != "" {
		reason = cause + "; " + reason
	}
	if len(failures) > 0 {
		to = RollbackFailed
		reason = strings.Join(failures, "; ")
		text = "🔥 Rollback FAILED, a human must look: " + reason
	}
	if _, err := e.transition(ctx, Transition{ID: x.ID, From: []State{RollingBack}, To: to, At: now,
		Actor: ActorBot, Reason: reason,
		Outbox: []Notification{{Kind: NoteState, State: to, Text: text}},
		Dedup:  e.closeDedup(x, now)}); err != nil {
		e.log.Error("finish rollback", "plan", x.ID, "err", err)
	}
	e.closeTarget(x, now)
}

// rollbackPlan says, per action in reverse, what undoing it does. The undo itself
// restores whatever the driver observed before acting, not a guess made now.
// undoable says whether an action of type t can be undone at all: the one
// owner of that rule for the rollback plan shown, what may be rolled back
// (CheckRollBack, the buttons, /recover status) and what an undo restores.
// A cleared cache refills on demand; there is nothing to restore.
func undoable(t runbooks.ActionType) bool { return t != runbooks.CacheClear }

func rollbackPlan(actions []runbooks.Action, targets []string) []string {
	var out []string
	for i := len(actions) - 1; i >= 0; i-- {
		a := actions[i]
		if undoable(a.Type) {
			out = append(out, fmt.Sprintf("undo action %d (%s %s): restore the state observed before it ran", i+1, a.Type, targets[i]))
		}
	}
	return out
}
