package recovery

import (
	"context"
	"fmt"

	"github.com/recoverbot/recoverbot/runbooks"
)

// What chat edges (Slack) need from the engine besides the state moves:
// recording a refused request in the audit trail, and saying a runbook's
// approval rule and hourly budget in words. Kept out of engine.go so the edges
// and the engine can change separately.

// RecordRefusal appends an audit record saying that actor asked for something
// that was refused (not an approver, a forged button, a click after the plan
// closed, a command from the wrong channel) and why. Nothing else changes: no
// state moves, no notification. executionID may be empty when the request
// named no plan that can be trusted (a forged button value).
// It shows in the execution's trail and in AuditSince.
func (e *Engine) RecordRefusal(ctx context.Context, executionID, actor, reason string) error {
	err := e.store.Record(ctx,
		[]AuditRecord{{At: e.clock.Now(), ExecutionID: executionID, Actor: actor, Reason: "refused: " + reason}}, nil)
	if err != nil {
		return Errorf(CodeUnavailable, "could not record the refusal").wrap(err)
	}
	return nil
}

// ApprovalRule says in one line when a runbook's plans run unattended under the
// current mode and threshold: what the never-auto and dry-run guards say for
// it (guard.go), without an event.
func (e *Engine) ApprovalRule(rb *runbooks.Runbook) string {
	p := &Proposal{Event: &Event{Confidence: 1}, RunbookName: rb.Name, Runbook: rb}
	s := &Situation{Mode: e.cfg.Mode, AutoThreshold: e.cfg.AutoThreshold}
	rule := fmt.Sprintf("runs unattended at confidence ≥ %.0f%%, else needs approval", e.cfg.AutoThreshold*100)
	if _, why, _ := (NeverAutoGuard{}).Check(p, s); why != "" {
		rule = "always needs approval (" + why + ")"
	}
	if _, why, _ := (DryRunGuard{}).Check(p, s); why != "" {
		rule += "; " + why + " (reports only)"
	}
	return rule
}

// RateUse returns how many executions of runbook started in the last hour
// (reservations of plans about to start included) and the hourly limit.
func (e *Engine) RateUse(runbook string) (used, limit int) {
	if rb := e.books.Get(runbook); rb != nil {
		limit = rb.Safety.MaxExecutionsPerHour
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rate.count(runbook, "", e.clock.Now()), limit
}
