package recovery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/recoverbot/recoverbot/runbooks"
)

// Verification defaults (the playbook's monitor: 5 minutes, every 10 seconds).
const (
	DefaultVerifyWithin = 5 * time.Minute
	DefaultVerifyEvery  = 10 * time.Second
)

// startVerify moves a SUCCEEDED execution with a verify query to VERIFYING and
// runs the checks. Without a configured Verifier it says verification was
// skipped, rather than pretending it passed.
func (e *Engine) startVerify(ctx context.Context, x *Execution) {
	if !e.verifies(&x.Plan) {
		if x.VerifyQuery == "" {
			return
		}
		if _, err := e.transition(ctx, Transition{ID: x.ID, From: []State{Succeeded}, To: Succeeded,
			Actor: ActorBot, Reason: "verification skipped: no Prometheus is configured (RECOVERBOT_PROMETHEUS_URL)",
			Outbox: []Notification{{Kind: NoteStep, Text: "⚠️ Verification skipped: no Prometheus is configured"}}}); err != nil {
			e.log.Error("record skipped verification", "plan", x.ID, "err", err)
		}
		return
	}
	within, every := e.verifyTimes(x.Verify)
	until := e.clock.Now().Add(within)
	if _, err := e.transition(ctx, Transition{ID: x.ID, From: []State{Succeeded}, To: Verifying,
		Actor: ActorBot, Reason: "verifying against Prometheus: " + x.VerifyQuery,
		Mutate: func(x *Execution) error { x.VerifyUntil = until; return nil },
		Outbox: []Notification{{Kind: NoteState, State: Verifying,
			Text: fmt.Sprintf("🔎 Verifying `%s` every %s for up to %s", x.VerifyQuery, every, within)}}}); err != nil {
		e.log.Error("start verification", "plan", x.ID, "err", err)
		return
	}
	e.verifyLoop(ctx, x.ID, x.VerifyQuery, until, every, x.Verify)
}

// verifies says whether a plan that succeeded goes on to VERIFYING: it has a
// verify query, and a Verifier is configured. startVerify acts by it, and a
// silence is held through it (silenceHeld).
func (e *Engine) verifies(p *Plan) bool { return p.VerifyQuery != "" && e.cfg.Verifier != nil }

func (e *Engine) verifyTimes(v *runbooks.Verify) (within, every time.Duration) {
	within, every = DefaultVerifyWithin, DefaultVerifyEvery
	if v != nil && v.Within > 0 {
		within = time.Duration(v.Within)
	}
	if v != nil && v.Every > 0 {
		every = time.Duration(v.Every)
	}
	return within, every
}

// verifyLoop checks until healthy or until the window ends. The last answer
// decides: healthy → VERIFIED; unhealthy → VERIFY_FAILED and the runbook's
// onVerifyFailure (rollback by default, or escalate); unknown (Prometheus
// unreachable, query invalid) → VERIFY_FAILED "verification unavailable",
// escalated to a human: neither success nor an automatic rollback on a guess.
func (e *Engine) verifyLoop(ctx context.Context, id, query string, until time.Time, every time.Duration, v *runbooks.Verify) {
	last, lastErr, ended := e.poll(ctx, id, query, until, every)
	if !ended {
		return
	}
	now := e.clock.Now()
	switch {
	case lastErr != nil:
		e.verifyUnavailable(ctx, id, now, lastErr)
	case v != nil && v.OnVerifyFailure == "escalate":
		e.verifyEscalated(ctx, id, now, unhealthyReason(last), last)
	default:
		e.verifyFailed(ctx, id, now, unhealthyReason(last), last)
	}
}

// poll asks the verifier every interval until healthy (then records
// VERIFIED) or until the window ends. ended says the window ended unhealthy,
// with the last value and error seen; false: verified, no longer VERIFYING
// (rolled back, scheduled or by hand), or shutting down (VERIFYING resumes at
// the next start).
func (e *Engine) poll(ctx context.Context, id, query string, until time.Time, every time.Duration) (last string, lastErr error, ended bool) {
	for {
		if cur, err := e.store.Execution(ctx, id); err != nil || cur.State != Verifying {
			return "", nil, false
		}
		cctx, cancel := context.WithTimeoutCause(ctx, max(every, 5*time.Second), errors.New("prometheus query timed out"))
		healthy, value, err := e.cfg.Verifier.Check(cctx, query)
		cancel()
		last, lastErr = value, err
		if err == nil && healthy {
			e.verified(ctx, id, value)
			return "", nil, false
		}
		if !e.clock.Now().Before(until) {
			return last, lastErr, true
		}
		if !e.wait(ctx, every) {
			return "", nil, false
		}
	}
}

func unhealthyReason(last string) string {
	if last == "" {
		last = "empty result"
	}
	return fmt.Sprintf("still unhealthy when the verification window ended; last value seen: %s", last)
}

// verifyUnavailable ends a verification whose last answer was unknown: not a
// success, not rolled back on a guess; a human decides.
func (e *Engine) verifyUnavailable(ctx context.Context, id string, now time.Time, lastErr error) {
	reason := verifyUnavailable + ": " + lastErr.Error()
	if _, err := e.transition(ctx, Transition{ID: id, From: []State{Verifying}, To: VerifyFailed, At: now,
		Actor: ActorBot, Reason: reason + "; escalated to a human, not rolled back",
		Mutate: func(x *Execution) error { x.LastVerify = reason; return nil },
		Outbox: []Notification{{Kind: NoteState, State: VerifyFailed,
			Text: "⚠️ " + reason + ". Not counted as a success and not rolled back automatically: a human must decide."}}}); err != nil {
		e.log.Error("record unavailable verification", "plan", id, "err", err)
	}
}

// verifyEscalated ends a failed verification of a runbook with
// onVerifyFailure: escalate.
func (e *Engine) verifyEscalated(ctx context.Context, id string, now time.Time, reason, last string) {
	if _, err := e.transition(ctx, Transition{ID: id, From: []State{Verifying}, To: VerifyFailed, At: now,
		Actor: ActorBot, Reason: reason + "; onVerifyFailure: escalate",
		Mutate: func(x *Execution) error { x.LastVerify = last; return nil },
		Outbox: []Notification{{Kind: NoteState, State: VerifyFailed, Text: "🚨 Verification failed: " + reason + ". Escalated: a human must look."}}}); err != nil {
		e.log.Error("record failed verification", "plan", id, "err", err)
	}
}

// verifyFailed marks the execution a false action and hands it to the
// automatic undo (autoUndo), which may run it, ask a human, or not do it.
func (e *Engine) verifyFailed(ctx context.Context, id string, now time.Time, reason, last string) {
	x, err := e.store.Execution(ctx, id)
	if err != nil {
		e.log.Error("load execution after failed verification", "plan", id, "err", err)
		return
	}
	next, text := "; rolling back", "❌ Verification failed: "+reason+". Rolling back."
	switch refuse, ask := e.undoCheck(&x, now); {
	case refuse != "":
		next, text = "; not rolled back: "+refuse, "❌ Verification failed: "+reason+". Not rolled back: "+refuse+"."
	case ask != "" || undoNeedsApproval(&x) != "":
		next, text = "; the rollback needs approval", "❌ Verification failed: "+reason+". Not rolled back yet: the rollback needs approval."
	}
	x, err = e.transition(ctx, Transition{ID: id, From: []State{Verifying}, To: VerifyFailed, At: now,
		Actor: ActorBot, Reason: reason + next,
		Mutate: func(x *Execution) error {
			x.LastVerify = last
			x.FalseAction = true
			x.FalseBy = FalseByVerification
			return nil
		},
		Outbox: []Notification{{Kind: NoteState, State: VerifyFailed, Text: text}}})
	if err != nil {
		e.log.Error("record failed verification", "plan", id, "err", err)
		return
	}
	e.autoUndo(ctx, &x, UndoVerifyFailed, "↩️ Rolling back after failed verification")
}

func (e *Engine) verified(ctx context.Context, id, value string) {
	now := e.clock.Now()
	x, err := e.transition(ctx, Transition{ID: id, From: []State{Verifying}, To: Verified, At: now,
		Actor: ActorBot, Reason: "verification passed: " + value,
		Mutate: func(x *Execution) error { x.VerifiedAt, x.LastVerify = now, value; return nil },
		Outbox: []Notification{{Kind: NoteState, State: Verified, Text: "✅ Verified: the query returned " + value}}})
	if err != nil {
		e.log.Error("record verification", "plan", id, "err", err)
		return
	}
	// The playbook's RECOVERY_SIGNAL: recorded with the audit trail, and handed
	// to the optional outgoing webhook.
	sig := Event{ID: "signal_" + e.ids.New(now), Type: runbooks.RecoverySignal, Severity: runbooks.Info, Confidence: 1,
		Summary: "Recovery verified for plan " + id, Source: ActorBot,
		Data:    map[string]any{"metric": "recovery_status", "value": value},
		Context: map[string]any{"plan_id": id, "runbook": x.Runbook, "query": x.VerifyQuery}}
	if err := e.store.Accept(ctx, Accepted{
		Event: EventRecord{Event: sig, ReceivedAt: now, Decision: DecideIgnored, Reasons: []string{"recovery signal"}, PlanID: id},
		Audit: []AuditRecord{{At: now, EventID: sig.ID, ExecutionID: id, Actor: ActorBot, Reason: "RECOVERY_SIGNAL: " + sig.Summary}},
	}); err != nil {
		e.log.Error("record recovery signal", "plan", id, "err", err)
	}
	if e.cfg.OnRecovery != nil {
		e.cfg.OnRecovery(sig)
	}
}

// verifyUnavailable starts LastVerify when Prometheus gave no answer.
const verifyUnavailable = "verification unavailable"

// VerificationUnavailable reports whether x's verification ended without an
// answer from Prometheus (VERIFY_FAILED, escalated, never rolled back on a
// guess) and why. The edges ask this instead of reading LastVerify.
func (x *Execution) VerificationUnavailable() (why string, ok bool) {
	rest, ok := strings.CutPrefix(x.LastVerify, verifyUnavailable)
	if !ok {
		return "", false
	}
	return strings.TrimPrefix(rest, ": "), true
}

// wait sleeps d on the engine's clock; false when ctx ended first.
func (e *Engine) wait(ctx context.Context, d time.Duration) bool {
	ch := make(chan struct{})
	stop := e.clock.AfterFunc(d, func() { close(ch) })
	defer stop()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// resumeVerify continues a verification interrupted by a restart: checking is
// read-only, so it is safe to resume (unlike an action).
func (e *Engine) resumeVerify(x Execution) {
	_, every := e.verifyTimes(x.Verify)
	e.goWork(func() { e.verifyLoop(e.ctx, x.ID, x.VerifyQuery, x.VerifyUntil, every, x.Verify) })
}

// MarkFalse records that an execution should not have happened (the
// false-action rate). Only executions that acted can be marked.
func (e *Engine) MarkFalse(ctx context.Context, id, actor string) (Execution, error) {
	x, err := e.store.Execution(ctx, id)
	if err != nil {
		return x, err
	}
	if err := x.CheckMarkFalse(); err != nil {
		return x, err
	}
	return e.transition(ctx, Transition{ID: id, From: []State{x.State}, To: x.State,
		Actor: actor, Reason: "marked as a false action by " + actor,
		Mutate: func(x *Execution) error {
			// Two clicks at once: the compare-and-set lets one mark it.
			if err := x.CheckMarkFalse(); err != nil {
				return err
			}
			x.FalseAction, x.FalseBy = true, actor
			return nil
		},
		Outbox: []Notification{{Kind: NoteStep, Text: "🏷️ Marked as a false action by " + actor, Actor: actor}}})
}
