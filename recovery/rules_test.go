package recovery_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

// Each test here reproduces one failure of issue #11 against the engine as it
// was, and shows the rule's one owner now holds on every path.

// Item 3: the README tour. Sample events posted in dry-run, the bot restarted
// in full, the same events posted again: each is planned for real (it was
// "duplicate … cooling down" though nothing had been done).
func TestDryRunNeverBlocksTheRealThing(t *testing.T) {
	h := newHarness(t, recovery.ModeDryRun)
	evs := referenceEvents(t)
	for typ, ev := range evs {
		if a := h.submit(ev); a.Decision != recovery.DecideDryRun {
			t.Fatalf("%s in dry-run: %s %v", typ, a.Decision, a.Reasons)
		}
	}
	h.cfg.Mode = recovery.ModeFull
	h.reopen()
	for typ, ev := range evs {
		a := h.submit(ev)
		if a.Decision != recovery.DecideAuto && a.Decision != recovery.DecideApproval {
			t.Errorf("%s in full after the dry run: %s %v, want a real plan", typ, a.Decision, a.Reasons)
		}
	}
	h.idle()
}

// A dry-run storm still makes one report: repeats fold into it while the
// guards decide dry-run again, and a mode change plans at once.
func TestDryRunStormFoldsIntoOneReport(t *testing.T) {
	h := newHarness(t, recovery.ModeDryRun)
	ev := referenceEvents(t)["ERROR_RATE_SPIKE"]
	first := h.submit(ev)
	for i := 0; i < 5; i++ {
		a := h.submit(ev)
		if a.Decision != recovery.DecideDuplicate || a.DuplicateOf != first.PlanID {
			t.Fatalf("repeat %d: %s %v, want folded into %s", i, a.Decision, a.Reasons, first.PlanID)
		}
	}
	if got := h.exec(first.PlanID).Repeats; got != 5 {
		t.Errorf("repeats %d, want 5", got)
	}
	if k := outboxKinds(t, h); len(k["plan"]) != 1 {
		t.Errorf("%d plan messages, want 1", len(k["plan"]))
	}
	h.cfg.Mode = recovery.ModeFull
	h.reopen()
	if a := h.submit(ev); a.Decision != recovery.DecideAuto {
		t.Fatalf("in full right after: %s %v, want auto", a.Decision, a.Reasons)
	}
	h.idle()
}

// A plan that failed before any driver wrote starts no cooldown; one that
// changed something does (TestCooldownAfterAPlanCloses).
func TestFailureBeforeAnyWriteStartsNoCooldown(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	h.drv.FailApply = func(a runbooks.Action) error { return errors.New("refused by the backend") }
	ev := referenceEvents(t)["ERROR_RATE_SPIKE"]
	first := h.submit(ev)
	h.idle()
	if x := h.exec(first.PlanID); x.State != recovery.Failed {
		t.Fatalf("state %s, want FAILED", x.State)
	}
	h.drv.FailApply = nil
	if a := h.submit(ev); a.Decision != recovery.DecideAuto {
		t.Fatalf("after a failure that changed nothing: %s %v, want auto", a.Decision, a.Reasons)
	}
	h.idle()
	h.reopen()
	if a := h.submit(ev); a.Decision != recovery.DecideDuplicate {
		t.Fatalf("after a success, restarted: %s %v, want duplicate (cooling down)", a.Decision, a.Reasons)
	}
}

// refusingDrivers is a driver set whose Check refuses one deployment name, as
// the Kubernetes driver refuses an invalid one.
type refusingDrivers struct {
	recovery.DriverMap
	bad string
}

func (d refusingDrivers) Check(a runbooks.Action) (string, error) {
	if fmt.Sprint(a.Parameters["deployment"]) == d.bad {
		return "", errors.New("invalid deployment name " + d.bad)
	}
	return d.DriverMap.Check(a)
}

// Item 2: a plan its driver refuses is refused at plan time with the
// driver's reason, never runs, starts no cooldown, and dryrun says the same.
func TestPlanTheDriverRefusesIsRefusedAtPlanTime(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	h.drivers = refusingDrivers{DriverMap: h.drv.All(), bad: "api-gateway"}
	h.reopen()
	ev := referenceEvents(t)["CAPACITY_WARNING"] // restart deployment api-gateway
	p, err := h.eng.Evaluate(&ev)
	if err != nil {
		t.Fatal(err)
	}
	a := h.submit(ev)
	for _, got := range []struct {
		d       recovery.Decision
		reasons []string
	}{{p.Decision, p.Reasons}, {a.Decision, a.Reasons}} {
		if got.d != recovery.DecideRefused || !strings.Contains(strings.Join(got.reasons, ";"), "invalid deployment name api-gateway") {
			t.Errorf("got %s %v, want refused with the driver's reason", got.d, got.reasons)
		}
	}
	h.drivers = nil
	h.reopen()
	if a := h.submit(ev); a.Decision != recovery.DecideApproval {
		t.Fatalf("next event: %s %v, want a plan: a refusal starts no cooldown", a.Decision, a.Reasons)
	}
	if n := len(h.drv.Calls()); n != 0 {
		t.Errorf("%d driver calls, want 0", n)
	}
}

// Item 6: dryrun (Evaluate) renders the verify query like Submit, so it never
// shows "would run" for a plan Submit refuses.
func TestEvaluateDecidesWhatSubmitDecides(t *testing.T) {
	eng, _, _ := verifyEngine(t, verifyRunbook, &scripted{answers: []answer{{true, "x", nil}}})
	ev := breakerEvent(`pay"} or vector(1) #`)
	p, err := eng.Evaluate(&ev)
	if err != nil {
		t.Fatal(err)
	}
	a, err := eng.Submit(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if p.Decision != a.Decision || a.Decision != recovery.DecideRefused {
		t.Fatalf("Evaluate %s %v, Submit %s %v: want both refused", p.Decision, p.Reasons, a.Decision, a.Reasons)
	}
	ok := breakerEvent("payments")
	if p, _ := eng.Evaluate(&ok); p.VerifyQuery == "" {
		t.Errorf("Evaluate: no verify query, want the rendered one")
	}
}

// Item 4: a RESTART_POD plan made in full, the bot restarted in dry-run, the
// plan approved: the driver is not called, and the thread and the audit say
// why (start-up says it first).
func TestApprovalRunsTheGuardsAgain(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	a := h.submit(referenceEvents(t)["CAPACITY_WARNING"])
	h.cfg.Mode = recovery.ModeDryRun
	h.reopen()
	if got := lastReason(t, h, a.PlanID); !strings.Contains(got, "after a restart, an approval would be refused: mode dry-run") {
		t.Errorf("start-up: last audit %q, want the warning", got)
	}
	_, err := h.eng.Approve(context.Background(), a.PlanID, "alice")
	if recovery.ErrorCode(err) != recovery.CodeConflict || !strings.Contains(recovery.ErrorMessage(err), "mode dry-run") {
		t.Fatalf("approve: %v, want a conflict saying mode dry-run", err)
	}
	h.idle()
	if n := len(h.drv.Calls()); n != 0 {
		t.Fatalf("%d driver calls, want 0", n)
	}
	if got := lastReason(t, h, a.PlanID); !strings.Contains(got, "approval by alice refused, nothing was run: mode dry-run") {
		t.Errorf("last audit %q, want the refusal", got)
	}
	if x := h.exec(a.PlanID); x.State != recovery.PendingApproval {
		t.Errorf("state %s, want still PENDING_APPROVAL", x.State)
	}
}

// A plan whose runbook changed since it was made is not approved; nor is one
// while paused, until resume.
func TestApprovalRefusesAChangedRunbookAndAPause(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	a := h.submit(referenceEvents(t)["CAPACITY_WARNING"])
	if err := h.eng.Pause(context.Background(), "cli:bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.eng.Approve(context.Background(), a.PlanID, "alice"); !strings.Contains(recovery.ErrorMessage(err), "paused") {
		t.Fatalf("approve while paused: %v, want refused: paused", err)
	}
	if err := h.eng.Resume(context.Background(), "cli:bob"); err != nil {
		t.Fatal(err)
	}
	rb := h.books.Get("restart-pod-memory-leak")
	saved := rb.Hash
	rb.Hash = "edited"
	defer func() { rb.Hash = saved }()
	if _, err := h.eng.Approve(context.Background(), a.PlanID, "alice"); !strings.Contains(recovery.ErrorMessage(err), "changed since this plan was made") {
		t.Fatalf("approve after an edit: %v, want refused: changed", err)
	}
	rb.Hash = saved
	if _, err := h.eng.Approve(context.Background(), a.PlanID, "alice"); err != nil {
		t.Fatalf("approve with the same runbook, resumed: %v", err)
	}
	h.idle()
	if n := len(h.drv.Calls()); n != 1 {
		t.Fatalf("%d driver calls, want 1", n)
	}
}

// Item 5: submits and approvals cancelled at random points, with the store
// committing some of them after the caller gave up: the engine acts on what
// was committed. No plan is left APPROVED and never run, no target gets a
// second plan, no target's driver is called twice.
func TestCancelledRequestsLeaveStoreAndEngineAgreeing(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	base := referenceEvents(t)["UPSTREAM_DEGRADATION"] // a FAILOVER: waits for approval
	const targets, perTarget = 10, 30
	// A random point in a request's life: the deadline is what moves, not
	// what the test waits for (a short client timeout, as in the issue).
	cancelAtRandom := func() (context.Context, func()) {
		return context.WithTimeout(context.Background(), rand.N(20*time.Millisecond))
	}
	// Keep the committer busy with big writes, so that requests wait in its
	// queue and their deadlines pass there: after the handover, before the
	// answer.
	stop := make(chan struct{})
	var load sync.WaitGroup
	for w := range 4 {
		load.Go(func() {
			big := make([]byte, 256<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = h.db.PutSetting(context.Background(), fmt.Sprintf("load-%d", w), big)
			}
		})
	}
	// In rounds, so that a later event for a target meets what the earlier
	// ones left, in memory and in the store.
	var wg sync.WaitGroup
	for range perTarget {
		for i := range targets {
			wg.Go(func() {
				ev := base
				ev.Context = map[string]any{"upstream": fmt.Sprintf("svc-%d", i), "backup_service": fmt.Sprintf("svc-%d-dr", i)}
				ctx, cancel := cancelAtRandom()
				defer cancel()
				_, _ = h.eng.Submit(ctx, ev)
			})
		}
		wg.Wait()
	}
	for range 20 {
		pending, err := h.db.Executions(context.Background(), recovery.ExecutionFilter{State: recovery.PendingApproval})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range pending {
			wg.Go(func() {
				ctx, cancel := cancelAtRandom()
				defer cancel()
				_, _ = h.eng.Approve(ctx, x.ID, "alice")
			})
		}
		wg.Wait()
	}
	close(stop)
	load.Wait()
	// One patient approval each for what is left: the invariants must hold
	// for a mix of cancelled and completed requests on the same plans.
	pending, err := h.db.Executions(context.Background(), recovery.ExecutionFilter{State: recovery.PendingApproval})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range pending {
		_, _ = h.eng.Approve(context.Background(), x.ID, "alice")
	}
	h.idle()

	all, err := h.db.Executions(context.Background(), recovery.ExecutionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	plans := map[string]int{}
	for _, x := range all {
		if x.State == recovery.Approved {
			t.Errorf("plan %s is stuck APPROVED", x.ID)
		}
		plans[x.TargetKey]++
	}
	for key, n := range plans {
		if n > 1 {
			t.Errorf("target %s has %d plans, want at most 1", key, n)
		}
	}
	applies := map[string]int{}
	for _, c := range h.drv.Calls() {
		if c.Op == "apply" {
			applies[fmt.Sprint(c.Action.Parameters)]++
		}
	}
	for target, n := range applies {
		if n > 1 {
			t.Errorf("driver applied %d times to %s, want at most once", n, target)
		}
	}
	if len(applies) == 0 {
		t.Errorf("no target acted on: the test proved nothing")
	}
}
