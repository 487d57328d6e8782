package recovery_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
)

// A plan approved (committed) whose run had not started when the process
// stopped is started by the next Start, through admit, not left INTERRUPTED:
// no driver was called for it (a run persists EXECUTING first).
func TestStartRunsAnApprovedPlanThatHadNotStarted(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	a := h.submit(referenceEvents(t)["CAPACITY_WARNING"])
	if got := h.exec(a.PlanID).State; got != recovery.PendingApproval {
		t.Fatalf("state %s, want PENDING_APPROVAL", got)
	}
	h.close()
	// The approval committed; the process died before run began.
	db, err := store.Open(h.path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Transition(context.Background(), recovery.Transition{ID: a.PlanID,
		From: []recovery.State{recovery.PendingApproval}, To: recovery.Approved, At: t0, Actor: "alice", Reason: "approved by alice",
		Mutate: func(x *recovery.Execution) error { x.ApprovedBy = "alice"; return nil }}); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	h.open()
	h.idle()
	x := h.exec(a.PlanID)
	if x.State == recovery.Approved || x.State == recovery.Interrupted || x.State == recovery.Suppressed {
		t.Fatalf("after restart: %s, want the plan run", x.State)
	}
	if n := len(h.drv.Calls()); n != len(x.Actions) {
		t.Errorf("driver calls %d, want %d (every action run once)", n, len(x.Actions))
	}
	audit, err := h.db.Audit(context.Background(), a.PlanID)
	if err != nil {
		t.Fatal(err)
	}
	started := false
	for _, r := range audit {
		started = started || r.Reason == "execution started"
	}
	if !started {
		t.Errorf("no \"execution started\" record in the audit trail: %+v", audit)
	}
}

// Under an election every driver call runs with a deadline no later than the
// lease's, and a call whose lease ran out is refused before acting: the step
// records why (NotCalled), the driver is never called, the plan is not failed
// (nothing failed: this replica stops leading, LeaseLost) and the next
// leader reports it INTERRUPTED.
func TestDriverCallsAreBoundByTheLeaseDeadline(t *testing.T) {
	t.Run("lease ran out: refused", func(t *testing.T) {
		h := newHarness(t, recovery.ModeFull)
		h.close()
		lost := expireLease(h, t0.Add(-time.Millisecond))
		h.open()
		a := h.submit(referenceEvents(t)["ERROR_RATE_SPIKE"])
		h.idle()
		x := h.exec(a.PlanID)
		if x.State != recovery.Executing {
			t.Fatalf("state %s, want EXECUTING left to the next leader", x.State)
		}
		if n := len(h.drv.Calls()); n != 0 {
			t.Errorf("driver calls %d, want 0", n)
		}
		if len(x.Steps) != 1 || !x.Steps[0].NotCalled || !strings.Contains(x.Steps[0].Error, "leadership lease ran out") {
			t.Errorf("steps %+v: want one, not called, saying the lease ran out", x.Steps)
		}
		if x.Changed() {
			t.Error("a refused call counts as a change")
		}
		if n := len(lost); n != 1 {
			t.Errorf("LeaseLost called %d times, want 1", n)
		}
		h.close()
		h.cfg.LeaseDeadline = nil
		h.open()
		h.idle()
		if x := h.exec(a.PlanID); x.State != recovery.Interrupted {
			t.Errorf("after takeover: %s, want INTERRUPTED", x.State)
		}
		if n := len(h.drv.Calls()); n != 0 {
			t.Errorf("driver calls %d after takeover, want 0 (never re-run unattended)", n)
		}
	})
	t.Run("lease runs: the call's deadline is the lease's", func(t *testing.T) {
		h := newHarness(t, recovery.ModeFull)
		h.close()
		lease := time.Now().Add(time.Hour) // real time: context deadlines are
		h.cfg.LeaseDeadline = func() time.Time { return lease }
		got := make(chan time.Time, 8)
		h.drv.Block = func(ctx context.Context, _ runbooks.Action) {
			dl, ok := ctx.Deadline()
			if !ok {
				dl = time.Time{}
			}
			got <- dl
		}
		h.open()
		a := h.submit(referenceEvents(t)["ERROR_RATE_SPIKE"])
		h.idle()
		if s := h.exec(a.PlanID).State; s == recovery.Failed || s == recovery.Executing {
			t.Fatalf("state %s, want the plan run", s)
		}
		select {
		case dl := <-got:
			if dl.IsZero() || dl.After(lease) {
				t.Errorf("driver ctx deadline %v, want one no later than the lease %v", dl, lease)
			}
		default:
			t.Fatal("the driver was not called")
		}
	})
}

// expireLease sets the harness's lease deadline to dl and returns the channel
// LeaseLost reports on.
func expireLease(h *harness, dl time.Time) chan error {
	lost := make(chan error, 16)
	h.cfg.LeaseDeadline = func() time.Time { return dl }
	h.cfg.LeaseLost = func(err error) { lost <- err }
	return lost
}

// Issue #13 (HA): a leader whose lease ran out in the middle of a scheduled
// rollback refused the undo (right) but then moved the execution to
// ROLLBACK_FAILED, terminal, and the next leader never reverted it. Now the
// refusing replica leaves it ROLLING_BACK with the step not called, and the
// next leader's Start finishes the undo, once.
func TestLeaseRanOutMidRollbackTheNextLeaderUndoesOnce(t *testing.T) {
	h, id := undoHarness(t, restartRunbook("  autoRollback: true\n"))
	h.close()
	lost := expireLease(h, t0.Add(5*time.Minute)) // runs out before the rollback at +10m
	h.open()
	h.clock.Advance(10 * time.Minute)
	h.idle()
	x := h.exec(id)
	if x.State != recovery.RollingBack {
		t.Fatalf("state %s, want ROLLING_BACK left to the next leader", x.State)
	}
	if got := h.ops(); got != "apply RESTART_POD" {
		t.Fatalf("driver calls %s: the undo ran past the lease", got)
	}
	last := x.Steps[len(x.Steps)-1]
	if last.Phase != recovery.PhaseUndo || !last.NotCalled || last.EndedAt.IsZero() || !strings.Contains(last.Error, "lease ran out") {
		t.Errorf("last step %+v: want the undo, ended, not called, saying the lease ran out", last)
	}
	if n := len(lost); n != 1 {
		t.Errorf("LeaseLost called %d times, want 1", n)
	}

	// The next leader (a lease that runs).
	h.close()
	expireLease(h, t0.Add(time.Hour))
	h.open()
	h.idle()
	if x := h.exec(id); x.State != recovery.RolledBack {
		t.Fatalf("after takeover: %s, want ROLLED_BACK", x.State)
	}
	if got := h.ops(); got != "apply RESTART_POD,undo RESTART_POD" {
		t.Errorf("driver calls %s, want the undo once", got)
	}
	h.reopen()
	h.idle()
	if got := h.ops(); got != "apply RESTART_POD,undo RESTART_POD" {
		t.Errorf("driver calls %s after another restart, want the undo once", got)
	}
}

// At start-up an execution found ROLLING_BACK is finished only when no undo
// call may have acted; otherwise it is INTERRUPTED and nothing is re-run.
func TestStartResumesOnlyAnUndoNoCallOfWhichMayHaveActed(t *testing.T) {
	for _, c := range []struct {
		name string
		undo *recovery.Step // the undo step the previous leader left, if any
		want recovery.State
		ops  string
		// Then a person rolls back what was left INTERRUPTED: the undo runs
		// again only if its earlier call is known to have failed.
		rollback      string // "" when nothing is left for it; else the error it gets
		afterRollback string // the driver calls after it
	}{
		{"no undo started", nil, recovery.RolledBack, "apply RESTART_POD,undo RESTART_POD", "", ""},
		{"undo refused, not called", &recovery.Step{Error: "not called: lease ran out", NotCalled: true, EndedAt: t0}, recovery.RolledBack, "apply RESTART_POD,undo RESTART_POD", "", ""},
		{"undo started, outcome unknown", &recovery.Step{}, recovery.Interrupted, "apply RESTART_POD",
			"its outcome is unknown: it is not called twice", "apply RESTART_POD"},
		{"undo cut off by the lease", &recovery.Step{Error: "lease ran out: cut off", CutOff: true, EndedAt: t0}, recovery.Interrupted, "apply RESTART_POD",
			"its outcome is unknown: it is not called twice", "apply RESTART_POD"},
		{"undo failed", &recovery.Step{Error: "connection refused", EndedAt: t0}, recovery.Interrupted, "apply RESTART_POD",
			"ok", "apply RESTART_POD,undo RESTART_POD"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, id := undoHarness(t, restartRunbook("  autoRollback: true\n"))
			h.close()
			db, err := store.Open(h.path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Transition(context.Background(), recovery.Transition{ID: id,
				From: []recovery.State{recovery.Succeeded}, To: recovery.RollingBack, At: t0, Actor: recovery.ActorBot, Reason: "scheduled rollback",
				Mutate: func(x *recovery.Execution) error {
					x.RollbackAt = time.Time{}
					if c.undo != nil {
						s := *c.undo
						s.Action, s.Type, s.Phase, s.StartedAt = 0, string(runbooks.RestartPod), recovery.PhaseUndo, t0
						x.Steps = append(x.Steps, s)
					}
					return nil
				}}); err != nil {
				t.Fatal(err)
			}
			_ = db.Close()
			h.open()
			h.idle()
			if x := h.exec(id); x.State != c.want {
				t.Errorf("state %s, want %s", x.State, c.want)
			}
			if got := h.ops(); got != c.ops {
				t.Errorf("driver calls %s, want %s", got, c.ops)
			}
			if c.rollback == "" {
				return
			}
			_, err = h.eng.Rollback(context.Background(), id, "slack:UAPPROVER")
			h.idle()
			switch x := h.exec(id); {
			case c.rollback == "ok":
				if err != nil || x.State != recovery.RolledBack {
					t.Errorf("a person's rollback: %v, state %s; want ROLLED_BACK", err, x.State)
				}
			case recovery.ErrorCode(err) != recovery.CodeConflict || !strings.Contains(err.Error(), c.rollback):
				t.Errorf("a person's rollback: %v, want a conflict saying %q", err, c.rollback)
			default:
				audit, aerr := h.db.Audit(context.Background(), id)
				if aerr != nil {
					t.Fatal(aerr)
				}
				last := audit[len(audit)-1]
				if x.State != recovery.Interrupted || last.Actor != "slack:UAPPROVER" || !strings.Contains(last.Reason, "refused, nothing was undone") {
					t.Errorf("after the refused rollback: state %s, last audit record %+v; want INTERRUPTED and the refusal audited", x.State, last)
				}
			}
			if got := h.ops(); got != c.afterRollback {
				t.Errorf("driver calls after the rollback %s, want %s", got, c.afterRollback)
			}
		})
	}
}
