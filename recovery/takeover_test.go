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
// records why, the plan fails with nothing changed, and the driver is never
// called.
func TestDriverCallsAreBoundByTheLeaseDeadline(t *testing.T) {
	t.Run("lease ran out: refused", func(t *testing.T) {
		h := newHarness(t, recovery.ModeFull)
		h.close()
		h.cfg.LeaseDeadline = func() time.Time { return t0.Add(-time.Millisecond) }
		h.open()
		a := h.submit(referenceEvents(t)["ERROR_RATE_SPIKE"])
		h.idle()
		x := h.exec(a.PlanID)
		if x.State != recovery.Failed {
			t.Fatalf("state %s, want FAILED", x.State)
		}
		if n := len(h.drv.Calls()); n != 0 {
			t.Errorf("driver calls %d, want 0", n)
		}
		if len(x.Steps) == 0 || !strings.Contains(x.Steps[0].Error, "leadership lease ran out") {
			t.Errorf("steps %+v: want the first one to say the lease ran out", x.Steps)
		}
		if x.Changed() {
			t.Error("a refused call counts as a change")
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
