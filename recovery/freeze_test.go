package recovery_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

// notices are the channel notices in the outbox, in order.
func (h *harness) notices() string {
	h.t.Helper()
	page, err := h.db.Outbox(context.Background(), 0, 10000)
	if err != nil {
		h.t.Fatal(err)
	}
	var b strings.Builder
	for _, n := range page {
		if n.Kind == recovery.NoteNotice {
			b.WriteString(n.Text + " [" + n.Actor + "]\n")
		}
	}
	return b.String()
}

func (h *harness) auditText() string {
	h.t.Helper()
	recs, err := h.db.AuditPage(context.Background(), time.Time{}, 0, 10000)
	if err != nil {
		h.t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range recs {
		b.WriteString(r.Actor + ": " + r.Reason + "\n")
	}
	return b.String()
}

// A freeze holds an in-scope plan for approval (it would have run by
// itself), names itself in the reasons, lets a person approve it, leaves
// other runbooks alone, survives a restart and ends on time.
func TestFreezeHoldsPlansForApprovalAndEndsOnTimeAcrossRestart(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	ctx := context.Background()
	evs := referenceEvents(t)
	f, err := h.eng.Freeze(ctx, recovery.FreezeRequest{Duration: time.Hour, Reason: "deploying users", Runbook: "clear-cache-on-stale-data", Actor: "cli:alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(f.ID, "fz_") || !f.End.Equal(t0.Add(time.Hour)) {
		t.Fatalf("freeze %+v", f)
	}
	h.reopen() // the freeze is durable before it is answered

	a := h.submit(evs["ERROR_RATE_SPIKE"])
	want := "frozen by " + f.ID + " (deploying users, runbook clear-cache-on-stale-data) until 2026-11-27T04:00:00Z"
	if a.Decision != recovery.DecideApproval || !strings.Contains(strings.Join(a.Reasons, "; "), want) {
		t.Fatalf("in scope: %s %v, want approval naming %q", a.Decision, a.Reasons, want)
	}
	if x := h.exec(a.PlanID); x.State != recovery.PendingApproval {
		t.Fatalf("state %s, want PENDING_APPROVAL: nothing is dropped", x.State)
	}
	if b := h.submit(evs["CIRCUIT_BREAKER_CANDIDATE"]); b.Decision != recovery.DecideAuto {
		t.Errorf("out of scope: %s %v, want auto", b.Decision, b.Reasons)
	}
	// A person approving during the freeze is the point.
	if _, err := h.eng.Approve(ctx, a.PlanID, "slack:UAPPROVER"); err != nil {
		t.Fatalf("approval during a freeze: %v", err)
	}
	h.idle()
	if x := h.exec(a.PlanID); x.State != recovery.Succeeded {
		t.Fatalf("approved plan: %s, want SUCCEEDED", x.State)
	}
	if got := h.notices(); !strings.Contains(got, "🧊 Freeze "+f.ID+": runbook clear-cache-on-stale-data until 2026-11-27T04:00:00Z (deploying users), by cli:alice") ||
		!strings.Contains(got, "[cli:alice]") {
		t.Errorf("the freeze was not announced with its actor:\n%s", got)
	}
	if got := h.auditText(); !strings.Contains(got, "cli:alice: freeze "+f.ID+" of runbook clear-cache-on-stale-data until 2026-11-27T04:00:00Z started by cli:alice: deploying users") {
		t.Errorf("the freeze is not in the audit trail:\n%s", got)
	}

	h.clock.Advance(59*time.Minute + 59*time.Second)
	h.idle()
	if fs := h.eng.Freezes(); len(fs) != 1 || fs[0].ID != f.ID {
		t.Fatalf("a second before its end: %+v", fs)
	}
	h.clock.Advance(time.Second)
	h.reopen()
	if fs := h.eng.Freezes(); len(fs) != 0 {
		t.Fatalf("at its end, after a restart: still %+v", fs)
	}
	if a := h.submit(evs["ERROR_RATE_SPIKE"]); a.Decision != recovery.DecideAuto {
		t.Errorf("after the freeze: %s %v, want auto", a.Decision, a.Reasons)
	}
	h.idle()
}

// The scope by target uses the target the drivers named for the plan.
func TestFreezeByTargetAndUnfreeze(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	ctx := context.Background()
	ev := referenceEvents(t)["CIRCUIT_BREAKER_CANDIDATE"]
	prev, err := h.eng.Preview("open-circuit-breaker", ev.Context, "cli:alice")
	if err != nil || len(prev.Targets) == 0 {
		t.Fatalf("preview: %v %+v", err, prev)
	}
	other, err := h.eng.Freeze(ctx, recovery.FreezeRequest{Duration: time.Hour, Reason: "canary", Target: prev.Targets[0] + "-canary", Actor: "cli:bob"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := h.eng.Freeze(ctx, recovery.FreezeRequest{Duration: 2 * time.Hour, Reason: "deploy", Target: prev.Targets[0], Actor: "cli:alice"})
	if err != nil {
		t.Fatal(err)
	}
	a := h.submit(ev)
	if a.Decision != recovery.DecideApproval || !strings.Contains(strings.Join(a.Reasons, ";"), f.ID) || strings.Contains(strings.Join(a.Reasons, ";"), other.ID) {
		t.Fatalf("%s %v, want approval naming %s only", a.Decision, a.Reasons, f.ID)
	}
	if _, err := h.eng.Reject(ctx, a.PlanID, "slack:UAPPROVER"); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		id   string
		code recovery.Code
	}{{"fz_nope", recovery.CodeNotFound}, {"window:nightly", recovery.CodeConflict}} {
		if _, err := h.eng.Unfreeze(ctx, c.id, false, "cli:alice"); recovery.ErrorCode(err) != c.code {
			t.Errorf("unfreeze %s: %v, want %s", c.id, err, c.code)
		}
	}
	ended, err := h.eng.Unfreeze(ctx, f.ID, false, "cli:alice")
	if err != nil || len(ended) != 1 || ended[0].Lifted != "cli:alice" || !ended[0].End.Equal(t0) {
		t.Fatalf("unfreeze: %+v %v", ended, err)
	}
	h.reopen()
	if fs := h.eng.Freezes(); len(fs) != 1 || fs[0].ID != other.ID {
		t.Fatalf("after lifting %s and a restart: %+v", f.ID, fs)
	}
	if a := h.submit(ev); a.Decision != recovery.DecideAuto {
		t.Errorf("after unfreeze: %s %v, want auto", a.Decision, a.Reasons)
	}
	h.idle()
	if _, err := h.eng.Unfreeze(ctx, "", true, "cli:bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.eng.Unfreeze(ctx, "", true, "cli:bob"); recovery.ErrorCode(err) != recovery.CodeNotFound {
		t.Errorf("unfreeze --all with none active: %v, want not found", err)
	}
	if got := h.notices(); !strings.Contains(got, "🔥 Freeze "+f.ID+" lifted by cli:alice.") || !strings.Contains(got, "🔥 Freeze "+other.ID+" lifted by cli:bob.") {
		t.Errorf("the lifts were not announced:\n%s", got)
	}
}

func TestFreezeRefusesBadRequests(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	for _, c := range []struct {
		name string
		r    recovery.FreezeRequest
		code recovery.Code
		msg  string
	}{
		{"no duration", recovery.FreezeRequest{Reason: "x"}, recovery.CodeInvalid, "at most 168h0m0s"},
		{"too long", recovery.FreezeRequest{Duration: 8 * 24 * time.Hour, Reason: "x"}, recovery.CodeInvalid, "not 192h0m0s"},
		{"no reason", recovery.FreezeRequest{Duration: time.Hour, Reason: " "}, recovery.CodeInvalid, "needs a reason"},
		{"unknown runbook", recovery.FreezeRequest{Duration: time.Hour, Reason: "x", Runbook: "nope"}, recovery.CodeNotFound, `no runbook named "nope"`},
		{"target with a space", recovery.FreezeRequest{Duration: time.Hour, Reason: "x", Target: "a b"}, recovery.CodeInvalid, "target must be"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := h.eng.Freeze(context.Background(), c.r)
			var e *recovery.Error
			if !errors.As(err, &e) || e.Code != c.code || !strings.Contains(e.Msg, c.msg) {
				t.Fatalf("got %v, want %s containing %q", err, c.code, c.msg)
			}
		})
	}
	if fs := h.eng.Freezes(); len(fs) != 0 {
		t.Errorf("a refused freeze holds: %+v", fs)
	}
}

// Safer: an automatic undo of a frozen target waits for a human, like while
// paused; it is not done behind the freeze, and not dropped either.
func TestAutomaticUndoDuringAFreezeAsksAHuman(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	a := h.submit(referenceEvents(t)["CIRCUIT_BREAKER_CANDIDATE"]) // rolls back by itself after a minute
	h.idle()
	f, err := h.eng.Freeze(context.Background(), recovery.FreezeRequest{Duration: time.Hour, Reason: "deploy", Actor: "cli:alice"})
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Minute)
	h.idle()
	x := h.exec(a.PlanID)
	if x.State == recovery.RolledBack || x.UndoAwaits != recovery.UndoScheduled {
		t.Fatalf("state %s awaits %q, want the scheduled rollback awaiting approval", x.State, x.UndoAwaits)
	}
	if th := h.thread(a.PlanID); !strings.Contains(th, "frozen by "+f.ID) {
		t.Errorf("the thread does not name the freeze:\n%s", th)
	}
	if _, err := h.eng.Rollback(context.Background(), a.PlanID, "slack:UAPPROVER"); err != nil {
		t.Fatalf("a person's rollback during a freeze: %v", err)
	}
	h.idle()
	if x := h.exec(a.PlanID); x.State != recovery.RolledBack {
		t.Errorf("state %s, want ROLLED_BACK", x.State)
	}
}

// A recurring window from the config file holds plans while it is open.
func TestFreezeWindowHoldsPlans(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	h.cfg.Windows = []recovery.FreezeWindow{{Name: "nightly", Schedule: atHour(3), Duration: 30 * time.Minute, Reason: "backups"}}
	h.reopen()
	a := h.submit(referenceEvents(t)["ERROR_RATE_SPIKE"])
	if a.Decision != recovery.DecideApproval || !strings.Contains(strings.Join(a.Reasons, ";"), "frozen by window:nightly (backups, everything) until 2026-11-27T03:30:00Z") {
		t.Fatalf("%s %v, want approval for the window", a.Decision, a.Reasons)
	}
	if _, err := h.eng.Unfreeze(context.Background(), "window:nightly", false, "cli:alice"); recovery.ErrorCode(err) != recovery.CodeConflict {
		t.Errorf("lifting a window: %v, want conflict", err)
	}
	h.clock.Advance(30 * time.Minute)
	if fs := h.eng.Freezes(); len(fs) != 0 {
		t.Errorf("after the window: %+v", fs)
	}
}

// atHour activates daily at h:00 UTC.
type atHour int

func (a atHour) Next(t time.Time) time.Time {
	d := time.Date(t.Year(), t.Month(), t.Day(), int(a), 0, 0, 0, time.UTC)
	if !d.After(t) {
		d = d.AddDate(0, 0, 1)
	}
	return d
}
