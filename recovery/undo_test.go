package recovery_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

// restartRunbook restarts a pod (never-auto) and schedules its rollback after
// ten minutes; extra is appended to its safety block.
func restartRunbook(extra string) string {
	return `
name: restart-then-revert
trigger: {eventType: CAPACITY_WARNING}
actions:
  - type: RESTART_POD
    target: {deployment: api}
    parameters: {deployment: api}
safety:
  maxExecutionsPerHour: 5
  rollbackAfterMinutes: 10
` + extra
}

func restartEvent() recovery.Event {
	return recovery.Event{Type: runbooks.CapacityWarning, Severity: runbooks.Warning, Confidence: 0.9}
}

// undoHarness is the harness on one runbook, with a RESTART_POD plan
// approved, run and succeeded, its scheduled rollback armed.
func undoHarness(t *testing.T, rb string) (*harness, string) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "rb.yaml"), rb)
	books, err := runbooks.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, recovery.ModeFull)
	h.books = books
	h.reopen()
	a := h.submit(restartEvent())
	if a.Decision != recovery.DecideApproval {
		t.Fatalf("decision %s, want approval", a.Decision)
	}
	if _, err := h.eng.Approve(context.Background(), a.PlanID, "slack:UAPPROVER"); err != nil {
		t.Fatal(err)
	}
	h.idle()
	if x := h.exec(a.PlanID); x.State != recovery.Succeeded || !x.RollbackAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("state %s rollback at %s, want SUCCEEDED with a rollback at +10m", x.State, x.RollbackAt)
	}
	return h, a.PlanID
}

func (h *harness) ops() string {
	var ops []string
	for _, c := range h.drv.Calls() {
		ops = append(ops, c.Op+" "+string(c.Action.Type))
	}
	return strings.Join(ops, ",")
}

// thread is the outbox text of one execution, in order.
func (h *harness) thread(id string) string {
	h.t.Helper()
	page, err := h.db.Outbox(context.Background(), 0, 10000)
	if err != nil {
		h.t.Fatal(err)
	}
	var b strings.Builder
	for _, n := range page {
		if n.ExecutionID == id {
			b.WriteString(n.Text + "\n")
		}
	}
	return b.String()
}

// Before #11 item 7, the scheduled rollback restarted the pod again, unasked.
func TestScheduledUndoOfANeverAutoActionAsksForApproval(t *testing.T) {
	h, id := undoHarness(t, restartRunbook(""))
	h.clock.Advance(10 * time.Minute)
	h.idle()
	x := h.exec(id)
	if x.State != recovery.Succeeded || x.UndoAwaits != recovery.UndoScheduled {
		t.Fatalf("state %s awaits %q, want SUCCEEDED with the scheduled rollback awaiting approval", x.State, x.UndoAwaits)
	}
	if got, want := x.RollbackAt, t0.Add(15*time.Minute); !got.Equal(want) {
		t.Errorf("approval deadline %s, want %s (the approval timeout)", got, want)
	}
	if got := h.ops(); got != "apply RESTART_POD" {
		t.Fatalf("driver calls %s: the undo ran without a human", got)
	}
	if th := h.thread(id); !strings.Contains(th, "The scheduled rollback needs approval") || !strings.Contains(th, "RESTART_POD) runs it again, and it is never run without approval") {
		t.Errorf("the thread does not say the rollback awaits approval:\n%s", th)
	}

	t.Run("an approver's Roll back is the approval", func(t *testing.T) {
		if _, err := h.eng.Rollback(context.Background(), id, "slack:UAPPROVER"); err != nil {
			t.Fatal(err)
		}
		h.idle()
		x := h.exec(id)
		if x.State != recovery.RolledBack || x.UndoAwaits != "" {
			t.Fatalf("state %s awaits %q, want ROLLED_BACK", x.State, x.UndoAwaits)
		}
		if got := h.ops(); got != "apply RESTART_POD,undo RESTART_POD" {
			t.Errorf("driver calls %s, want apply then undo", got)
		}
		if th := h.thread(id); !strings.Contains(th, "the scheduled rollback was approved by slack:UAPPROVER") {
			t.Errorf("the thread does not say who approved the rollback:\n%s", th)
		}
		h.clock.Advance(time.Hour) // the deadline timer was disarmed
		h.idle()
		if got := h.ops(); got != "apply RESTART_POD,undo RESTART_POD" {
			t.Errorf("driver calls after the deadline %s", got)
		}
	})
}

func TestDeclinedOrExpiredUndoLeavesTheTargetAsItIs(t *testing.T) {
	for _, c := range []struct {
		name, said string
		answer     func(h *harness, id string)
	}{
		{"declined", "Rollback declined by slack:UKEEPER", func(h *harness, id string) {
			if _, err := h.eng.DeclineRollback(context.Background(), id, "slack:UKEEPER"); err != nil {
				h.t.Fatal(err)
			}
			if _, err := h.eng.DeclineRollback(context.Background(), id, "slack:UKEEPER"); recovery.ErrorCode(err) != recovery.CodeConflict {
				h.t.Errorf("second decline: %v, want a conflict", err)
			}
		}},
		{"deadline passed", "Nobody approved the scheduled rollback in time", func(h *harness, id string) {
			h.clock.Advance(5 * time.Minute)
		}},
		{"deadline passed while the bot was down", "Nobody approved the scheduled rollback in time", func(h *harness, id string) {
			h.reopen()
			h.clock.Advance(5 * time.Minute)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, id := undoHarness(t, restartRunbook(""))
			h.clock.Advance(10 * time.Minute)
			h.idle()
			c.answer(h, id)
			h.idle()
			x := h.exec(id)
			if x.State != recovery.Succeeded || x.UndoAwaits != "" || !x.RollbackAt.IsZero() {
				t.Fatalf("state %s awaits %q rollback at %s, want SUCCEEDED with nothing pending", x.State, x.UndoAwaits, x.RollbackAt)
			}
			h.clock.Advance(time.Hour)
			h.idle()
			if got := h.ops(); got != "apply RESTART_POD" {
				t.Fatalf("driver calls %s: nothing may be undone", got)
			}
			if th := h.thread(id); !strings.Contains(th, c.said) {
				t.Errorf("the thread does not say %q:\n%s", c.said, th)
			}
			// A person may still roll back later.
			if _, err := h.eng.Rollback(context.Background(), id, "slack:UAPPROVER"); err != nil {
				t.Fatal(err)
			}
			h.idle()
			if got := h.exec(id).State; got != recovery.RolledBack {
				t.Errorf("state %s after a later Roll back, want ROLLED_BACK", got)
			}
		})
	}
}

func TestAutoRollbackOptInUndoesWithoutAsking(t *testing.T) {
	h, id := undoHarness(t, restartRunbook("  autoRollback: true\n"))
	h.clock.Advance(10 * time.Minute)
	h.idle()
	if x := h.exec(id); x.State != recovery.RolledBack {
		t.Fatalf("state %s, want ROLLED_BACK", x.State)
	}
	if got := h.ops(); got != "apply RESTART_POD,undo RESTART_POD" {
		t.Errorf("driver calls %s, want apply then undo", got)
	}
	if th := h.thread(id); !strings.Contains(th, "no approval asked: runbook restart-then-revert sets safety.autoRollback") {
		t.Errorf("the thread does not say the runbook opted in:\n%s", th)
	}
}

// A reversible action still rolls back on its own (the playbook's circuit
// breaker reverting after 60 s).
func TestScheduledUndoOfAnAutoActionNeedsNoApproval(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	a := h.submit(referenceEvents(t)["CIRCUIT_BREAKER_CANDIDATE"])
	h.idle()
	h.clock.Advance(time.Minute)
	h.idle()
	if x := h.exec(a.PlanID); x.State != recovery.RolledBack || x.UndoAwaits != "" {
		t.Fatalf("state %s awaits %q, want ROLLED_BACK", x.State, x.UndoAwaits)
	}
}

const restartVerified = `
name: restart-verified
trigger: {eventType: CAPACITY_WARNING}
actions:
  - type: FAILOVER
    parameters: {from: payments, to: payments-backup}
safety: {maxExecutionsPerHour: 5%s}
verify:
  prometheus: 'up{job="payments"} == 1'
  within: 200ms
  every: 20ms
`

// Before #11 item 7, a failed verification failed traffic over again, unasked.
func TestFailedVerificationUndoOfANeverAutoAction(t *testing.T) {
	for _, c := range []struct {
		name, safety string
		state        recovery.State
		awaits       recovery.UndoTrigger
		ops, said    string
	}{
		{"asks for approval", "", recovery.VerifyFailed, recovery.UndoVerifyFailed, "apply",
			"The rollback after failed verification needs approval"},
		{"runbook opted in", ", autoRollback: true", recovery.RolledBack, "", "apply,undo",
			"no approval asked: runbook restart-verified sets safety.autoRollback"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := &scripted{answers: []answer{{false, "0", nil}}}
			eng, db, drv := verifyEngine(t, strings.Replace(restartVerified, "%s", c.safety, 1), v)
			a, err := eng.Submit(context.Background(), restartEvent())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := eng.Approve(context.Background(), a.PlanID, "slack:UAPPROVER"); err != nil {
				t.Fatal(err)
			}
			settle(t, eng)
			x, _ := db.Execution(context.Background(), a.PlanID)
			if x.State != c.state || x.UndoAwaits != c.awaits {
				t.Fatalf("state %s awaits %q, want %s awaiting %q", x.State, x.UndoAwaits, c.state, c.awaits)
			}
			var ops []string
			for _, call := range drv.Calls() {
				ops = append(ops, call.Op)
			}
			if got := strings.Join(ops, ","); got != c.ops {
				t.Errorf("driver calls %s, want %s", got, c.ops)
			}
			page, _ := db.Outbox(context.Background(), 0, 1000)
			var th strings.Builder
			for _, n := range page {
				th.WriteString(n.Text + "\n")
			}
			if !strings.Contains(th.String(), c.said) {
				t.Errorf("the thread does not say %q:\n%s", c.said, th.String())
			}
		})
	}
}

// Before the fix, the automatic undo called the driver while paused, in
// dry-run mode, or after the runbook changed, and a person's Roll back called
// it in dry-run mode. The runbook opts in to automatic undo here, so only the
// re-check can stop it.
func TestAutomaticUndoChecksTheGuardsAgain(t *testing.T) {
	optIn := restartRunbook("  autoRollback: true\n")
	for _, c := range []struct {
		name   string
		change func(h *harness)
		awaits bool   // the undo waits for a human (else: not done at all)
		said   string // in the thread
		manual bool   // a person's Roll back then undoes
	}{
		{"paused", func(h *harness) {
			if err := h.eng.Pause(context.Background(), "slack:UOPS"); err != nil {
				h.t.Fatal(err)
			}
		}, true, "The scheduled rollback needs approval: recoverbot is paused", true},
		{"runbook changed", func(h *harness) {
			dir := h.t.TempDir()
			writeFile(h.t, filepath.Join(dir, "rb.yaml"), strings.Replace(optIn, "maxExecutionsPerHour: 5", "maxExecutionsPerHour: 6", 1))
			books, err := runbooks.Load(dir)
			if err != nil {
				h.t.Fatal(err)
			}
			h.books = books
			h.reopen()
		}, true, "runbook restart-then-revert changed since this plan was made", true},
		{"restarted in dry-run", func(h *harness) {
			h.cfg.Mode = recovery.ModeDryRun
			h.reopen()
		}, false, "The scheduled rollback was not done: mode dry-run: nothing is executed", false},
		{"runbook now in dry-run", func(h *harness) {
			dir := h.t.TempDir()
			writeFile(h.t, filepath.Join(dir, "rb.yaml"), optIn+"  dryRun: true\n")
			books, err := runbooks.Load(dir)
			if err != nil {
				h.t.Fatal(err)
			}
			h.books = books
			h.reopen()
		}, false, "runbook restart-then-revert is in dry-run", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, id := undoHarness(t, optIn)
			c.change(h)
			h.clock.Advance(10 * time.Minute)
			h.idle()
			x := h.exec(id)
			if got := h.ops(); got != "apply RESTART_POD" {
				t.Fatalf("driver calls %s: the automatic undo ran", got)
			}
			if x.State != recovery.Succeeded || (x.UndoAwaits != "") != c.awaits {
				t.Fatalf("state %s awaits %q, want SUCCEEDED, awaiting a human: %v", x.State, x.UndoAwaits, c.awaits)
			}
			if th := h.thread(id); !strings.Contains(th, c.said) {
				t.Errorf("the thread does not say %q:\n%s", c.said, th)
			}
			if !c.awaits && !x.RollbackAt.IsZero() {
				t.Errorf("rollback still scheduled at %s", x.RollbackAt)
			}
			_, err := h.eng.Rollback(context.Background(), id, "slack:UAPPROVER")
			h.idle()
			if c.manual {
				if err != nil {
					t.Fatal(err)
				}
				if got := h.ops(); got != "apply RESTART_POD,undo RESTART_POD" {
					t.Errorf("driver calls %s after a person's Roll back, want apply then undo", got)
				}
				return
			}
			if recovery.ErrorCode(err) != recovery.CodeConflict {
				t.Errorf("Roll back: %v, want a conflict", err)
			}
			if got := h.ops(); got != "apply RESTART_POD" {
				t.Errorf("driver calls %s: a person's Roll back called a driver where none may be called", got)
			}
			if th := h.thread(id); !strings.Contains(th, "rollback by slack:UAPPROVER refused, nothing was undone") {
				t.Errorf("the thread does not say the Roll back was refused:\n%s", th)
			}
		})
	}
}

// pausingVerifier pauses the engine during its check (a person pausing while
// verification runs), then answers as v does.
type pausingVerifier struct {
	v   recovery.Verifier
	eng *recovery.Engine
}

func (p *pausingVerifier) Check(ctx context.Context, q string) (bool, string, error) {
	if err := p.eng.Pause(ctx, "slack:UOPS"); err != nil {
		return false, "", err
	}
	return p.v.Check(ctx, q)
}

// The undo after a failed verification is checked again too: paused while
// verifying, a runbook that opts in to automatic undo still waits for a human.
func TestFailedVerificationUndoWhilePausedWaitsForAHuman(t *testing.T) {
	pv := &pausingVerifier{v: &scripted{answers: []answer{{false, "0", nil}}}}
	eng, db, drv := verifyEngine(t, strings.Replace(restartVerified, "%s", ", autoRollback: true", 1), pv)
	pv.eng = eng
	a, err := eng.Submit(context.Background(), restartEvent())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Approve(context.Background(), a.PlanID, "slack:UAPPROVER"); err != nil {
		t.Fatal(err)
	}
	settle(t, eng)
	x, _ := db.Execution(context.Background(), a.PlanID)
	if x.State != recovery.VerifyFailed || x.UndoAwaits != recovery.UndoVerifyFailed {
		t.Fatalf("state %s awaits %q, want VERIFY_FAILED awaiting a human", x.State, x.UndoAwaits)
	}
	if calls := drv.Calls(); len(calls) != 1 {
		t.Errorf("%d driver calls, want the apply only", len(calls))
	}
	page, _ := db.Outbox(context.Background(), 0, 1000)
	var th strings.Builder
	for _, n := range page {
		th.WriteString(n.Text + "\n")
	}
	for _, want := range []string{"Not rolled back yet: the rollback needs approval", "needs approval: recoverbot is paused"} {
		if !strings.Contains(th.String(), want) {
			t.Errorf("the thread does not say %q:\n%s", want, th.String())
		}
	}
}
