package recovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
)

var t0 = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)

// harness is an engine on a real bbolt file in a temp dir, the log driver and a
// manual clock. reopen simulates a process restart on the same file.
type harness struct {
	t     *testing.T
	path  string
	cfg   recovery.Config
	books *runbooks.Set
	clock *recovery.ManualClock
	drv   *logdriver.Driver
	// drivers, when set, stands in front of drv (a Check of its own).
	drivers recovery.Drivers
	db      *store.DB
	eng     *recovery.Engine
}

func newHarness(t *testing.T, mode recovery.Mode) *harness {
	t.Helper()
	books, err := runbooks.LoadDefaults()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "bot.db"), books: books,
		clock: recovery.NewManualClock(t0), drv: logdriver.New(nil)}
	h.cfg = recovery.DefaultConfig()
	h.cfg.Mode = mode
	h.cfg.LockWait = time.Second
	h.open()
	t.Cleanup(h.close)
	return h
}

func (h *harness) open() {
	h.t.Helper()
	db, err := store.Open(h.path)
	if err != nil {
		h.t.Fatal(err)
	}
	cfg := h.cfg
	cfg.Clock = h.clock
	h.db = db
	var drivers recovery.Drivers = h.drv.All()
	if h.drivers != nil {
		drivers = h.drivers
	}
	h.eng = recovery.New(cfg, db, h.books, drivers)
	if err := h.eng.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) close() {
	if h.eng == nil {
		return
	}
	_ = h.eng.Close(context.Background())
	_ = h.db.Close()
	h.eng, h.db = nil, nil
}

// crash stops the process without letting anything settle: the store is closed
// under the engine, as kill -9 would leave it.
func (h *harness) reopen() {
	h.close()
	h.open()
}

func (h *harness) idle() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.eng.Idle(ctx); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) exec(id string) recovery.Execution {
	h.t.Helper()
	x, err := h.db.Execution(context.Background(), id)
	if err != nil {
		h.t.Fatalf("execution %s: %v", id, err)
	}
	return x
}

func (h *harness) submit(ev recovery.Event) recovery.Answer {
	h.t.Helper()
	a, err := h.eng.Submit(context.Background(), ev)
	if err != nil {
		h.t.Fatalf("submit %s: %v", ev.Type, err)
	}
	return a
}

// referenceEvents are the playbook's six sample events (examples/events).
func referenceEvents(t *testing.T) map[string]recovery.Event {
	t.Helper()
	files, err := filepath.Glob("../examples/events/*.json")
	if err != nil || len(files) != 6 {
		t.Fatalf("want 6 reference events, got %d (%v)", len(files), err)
	}
	out := map[string]recovery.Event{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var ev recovery.Event
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[string(ev.Type)] = ev
	}
	return out
}

func TestReferenceEventsGetThePlaybooksDecisions(t *testing.T) {
	cases := []struct {
		event   runbooks.EventType
		runbook string
		full    recovery.Decision
	}{
		{runbooks.LatencyAnomaly, "scale-database-connections", recovery.DecideAuto},
		{runbooks.CircuitBreakerCandidate, "open-circuit-breaker", recovery.DecideAuto},
		{runbooks.ErrorRateSpike, "clear-cache-on-stale-data", recovery.DecideAuto},
		{runbooks.CapacityWarning, "restart-pod-memory-leak", recovery.DecideApproval},
		{runbooks.RateLimitBreach, "apply-rate-limit-abuse", recovery.DecideAuto},
		{runbooks.UpstreamDegradation, "failover-upstream-degraded", recovery.DecideApproval},
	}
	for _, mode := range []recovery.Mode{recovery.ModeFull, recovery.ModeDryRun} {
		t.Run(string(mode), func(t *testing.T) {
			h := newHarness(t, mode)
			evs := referenceEvents(t)
			for _, c := range cases {
				a := h.submit(evs[string(c.event)])
				want := c.full
				if mode == recovery.ModeDryRun {
					want = recovery.DecideDryRun
				}
				if a.Decision != want {
					t.Errorf("%s: decision %s, want %s (reasons %v)", c.event, a.Decision, want, a.Reasons)
				}
				if got := h.exec(a.PlanID).Runbook; got != c.runbook {
					t.Errorf("%s: runbook %s, want %s", c.event, got, c.runbook)
				}
			}
			h.idle()
			calls := h.drv.Calls()
			if mode == recovery.ModeDryRun && len(calls) != 0 {
				t.Errorf("dry-run mode called drivers %d times, want 0", len(calls))
			}
			if mode == recovery.ModeFull && len(calls) != 4 {
				t.Errorf("full mode: %d driver calls, want 4 (the auto runbooks)", len(calls))
			}
		})
	}
}

func TestDryRunPlanSaysWhatWouldHappen(t *testing.T) {
	h := newHarness(t, recovery.ModeDryRun)
	a := h.submit(referenceEvents(t)["CAPACITY_WARNING"])
	x := h.exec(a.PlanID)
	if x.State != recovery.DryRun {
		t.Fatalf("state %s, want DRY_RUN", x.State)
	}
	joined := strings.Join(x.Reasons, "\n")
	if !strings.Contains(joined, "mode dry-run") || !strings.Contains(joined, "would need approval") {
		t.Errorf("reasons %q: want the dry-run reason and the approval it would need", joined)
	}
	page, _ := h.db.Outbox(context.Background(), 0, 10)
	if len(page) == 0 || !strings.Contains(page[0].Text, "Would do 1: RESTART_POD") {
		t.Errorf("outbox %+v: want a would-do report naming RESTART_POD", page)
	}
}

// Flaw: the playbook substituted a missing {{route}} with ” and cleared ":*".
func TestUnresolvedTemplateRefusesThePlan(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	ev := referenceEvents(t)["ERROR_RATE_SPIKE"]
	ev.Context = map[string]any{}
	a := h.submit(ev)
	if a.Decision != recovery.DecideRefused || a.PlanID != "" {
		t.Fatalf("answer %+v: want refused without a plan", a)
	}
	if !strings.Contains(a.Reasons[0], "{{route}}") {
		t.Errorf("reason %q does not name {{route}}", a.Reasons[0])
	}
	h.idle()
	if n := len(h.drv.Calls()); n != 0 {
		t.Errorf("%d driver calls, want 0", n)
	}
}

// Flaw: names interpolated into a shell. A hostile value never reaches a driver.
func TestHostileValuesNeverReachADriver(t *testing.T) {
	for _, v := range []string{"*", "payments; rm -rf /", "a b", "../etc", "x\ny", "раyments"} {
		t.Run(v, func(t *testing.T) {
			h := newHarness(t, recovery.ModeFull)
			ev := referenceEvents(t)["CIRCUIT_BREAKER_CANDIDATE"]
			ev.Context = map[string]any{"upstream": v}
			a := h.submit(ev)
			if a.Decision != recovery.DecideRefused {
				t.Errorf("decision %s, want refused", a.Decision)
			}
			h.idle()
			if n := len(h.drv.Calls()); n != 0 {
				t.Errorf("%d driver calls, want 0", n)
			}
		})
	}
}

func TestSameEventIDGetsTheFirstAnswer(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	ev := referenceEvents(t)["CAPACITY_WARNING"]
	ev.ID = "sender-42"
	first := h.submit(ev)
	h.reopen() // the answer survives a restart too
	again := h.submit(ev)
	if !again.Replayed || again.PlanID != first.PlanID || again.Decision != first.Decision {
		t.Fatalf("second delivery %+v, want the first answer %+v replayed", again, first)
	}
	xs, _ := h.db.Executions(context.Background(), recovery.ExecutionFilter{})
	if len(xs) != 1 {
		t.Errorf("%d executions, want 1", len(xs))
	}
}

func TestConcurrentDeliveriesOfOneEventMakeOnePlan(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	ev := referenceEvents(t)["CAPACITY_WARNING"]
	ev.ID = "storm-1"
	var wg sync.WaitGroup
	answers := make([]recovery.Answer, 16)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := h.eng.Submit(context.Background(), ev)
			if err != nil {
				t.Error(err)
			}
			answers[i] = a
		}()
	}
	wg.Wait()
	for _, a := range answers {
		if a.PlanID != answers[0].PlanID {
			t.Fatalf("answers differ: %+v vs %+v", a, answers[0])
		}
	}
}

func TestDuplicateOfOpenPlanIsFoldedIn(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	ev := referenceEvents(t)["CAPACITY_WARNING"]
	first := h.submit(ev)
	for i := 0; i < 5; i++ {
		a := h.submit(ev)
		if a.Decision != recovery.DecideDuplicate || a.DuplicateOf != first.PlanID {
			t.Fatalf("repeat %d: %+v, want duplicate of %s", i, a, first.PlanID)
		}
	}
	if got := h.exec(first.PlanID).Repeats; got != 5 {
		t.Errorf("repeats %d, want 5", got)
	}
}

func TestCooldownAfterAPlanCloses(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	ev := referenceEvents(t)["ERROR_RATE_SPIKE"] // auto, default cooldown 5m
	first := h.submit(ev)
	h.idle()
	if got := h.exec(first.PlanID).State; got != recovery.Succeeded {
		t.Fatalf("state %s, want SUCCEEDED", got)
	}
	if a := h.submit(ev); a.Decision != recovery.DecideDuplicate {
		t.Fatalf("within cooldown: %s, want duplicate", a.Decision)
	}
	h.reopen() // the cooldown survives a restart
	if a := h.submit(ev); a.Decision != recovery.DecideDuplicate {
		t.Fatalf("within cooldown after restart: %s, want duplicate", a.Decision)
	}
	h.clock.Advance(5*time.Minute + time.Second)
	if a := h.submit(ev); a.Decision != recovery.DecideAuto {
		t.Fatalf("after cooldown: %s, want auto", a.Decision)
	}
	h.idle()
}

func TestHourlyRateLimitIsASlidingWindowThatSurvivesRestart(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	h.cfg.DefaultCooldown = time.Nanosecond
	h.reopen()
	ev := referenceEvents(t)["LATENCY_ANOMALY"] // scale-database-connections: 3 per hour
	for i := 0; i < 3; i++ {
		if a := h.submit(ev); a.Decision != recovery.DecideAuto {
			t.Fatalf("execution %d: %s %v, want auto", i+1, a.Decision, a.Reasons)
		}
		h.idle()
		h.clock.Advance(10 * time.Minute)
	}
	h.reopen()
	h.clock.Advance(time.Second) // past the 1ns cooldown of the last close
	a := h.submit(ev)
	if a.Decision != recovery.DecideSuppressed || !strings.Contains(a.Reasons[0], "3 of 3") {
		t.Fatalf("fourth within the hour: %s %v, want suppressed by the rate limit", a.Decision, a.Reasons)
	}
	h.clock.Advance(30 * time.Minute) // the first start left the window
	h.idle()                          // scheduled rollbacks (rollbackAfterMinutes 30) fell due too
	h.clock.Advance(time.Second)      // past their 1ns cooldowns
	if a := h.submit(ev); a.Decision != recovery.DecideAuto {
		t.Fatalf("after the window slid: %s %v, want auto", a.Decision, a.Reasons)
	}
	h.idle()
}

func TestLowConfidenceNeedsApproval(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	ev := referenceEvents(t)["ERROR_RATE_SPIKE"]
	ev.Confidence = 0.78 // matches the runbook (min 0.75) but under the 0.80 auto threshold
	a := h.submit(ev)
	if a.Decision != recovery.DecideApproval || !strings.Contains(strings.Join(a.Reasons, ";"), "below the auto-execute threshold") {
		t.Fatalf("%s %v, want approval for low confidence", a.Decision, a.Reasons)
	}
}

func TestLowRiskModeOnlyRunsCacheClearAndRateLimit(t *testing.T) {
	h := newHarness(t, recovery.ModeLowRisk)
	evs := referenceEvents(t)
	want := map[string]recovery.Decision{
		"ERROR_RATE_SPIKE": recovery.DecideAuto, "RATE_LIMIT_BREACH": recovery.DecideAuto,
		"LATENCY_ANOMALY": recovery.DecideApproval, "CIRCUIT_BREAKER_CANDIDATE": recovery.DecideApproval,
	}
	for typ, d := range want {
		if a := h.submit(evs[typ]); a.Decision != d {
			t.Errorf("%s: %s, want %s", typ, a.Decision, d)
		}
	}
	h.idle()
}

func TestPauseSuppressesAndSurvivesRestart(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	if err := h.eng.Pause(context.Background(), "cli:alice"); err != nil {
		t.Fatal(err)
	}
	h.reopen()
	a := h.submit(referenceEvents(t)["ERROR_RATE_SPIKE"])
	if a.Decision != recovery.DecideSuppressed || !strings.Contains(a.Reasons[0], "paused") {
		t.Fatalf("%s %v, want suppressed: paused", a.Decision, a.Reasons)
	}
	if err := h.eng.Resume(context.Background(), "cli:alice"); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(6 * time.Minute) // past the suppressed plan's cooldown
	if a := h.submit(referenceEvents(t)["ERROR_RATE_SPIKE"]); a.Decision != recovery.DecideAuto {
		t.Fatalf("after resume: %s, want auto", a.Decision)
	}
	h.idle()
}

// Flaw: nothing stopped two clicks from executing twice.
func TestConcurrentApprovalsExecuteOnce(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	a := h.submit(referenceEvents(t)["CAPACITY_WARNING"])
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.eng.Approve(context.Background(), a.PlanID, "alice")
			mu.Lock()
			defer mu.Unlock()
			var m *recovery.MoveError
			switch {
			case err == nil:
				wins++
			case errors.As(err, &m):
				conflicts++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	h.idle()
	if wins != 1 || conflicts != 7 {
		t.Fatalf("wins %d conflicts %d, want 1 and 7", wins, conflicts)
	}
	if n := len(h.drv.Calls()); n != 1 {
		t.Fatalf("%d driver calls, want exactly 1", n)
	}
	if got := h.exec(a.PlanID).State; got != recovery.Succeeded {
		t.Errorf("state %s, want SUCCEEDED", got)
	}
}

func TestRejectAndApproveAfterReject(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	a := h.submit(referenceEvents(t)["UPSTREAM_DEGRADATION"])
	if _, err := h.eng.Reject(context.Background(), a.PlanID, "bob"); err != nil {
		t.Fatal(err)
	}
	_, err := h.eng.Approve(context.Background(), a.PlanID, "alice")
	if recovery.ErrorCode(err) != recovery.CodeConflict {
		t.Fatalf("approve after reject: %v, want a conflict", err)
	}
	h.idle()
	if n := len(h.drv.Calls()); n != 0 {
		t.Errorf("%d driver calls, want 0", n)
	}
}

func TestRestartDuringApprovalKeepsTheDeadline(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	a := h.submit(referenceEvents(t)["CAPACITY_WARNING"])
	deadline := h.exec(a.PlanID).Deadline
	if want := t0.Add(5 * time.Minute); !deadline.Equal(want) {
		t.Fatalf("deadline %s, want %s", deadline, want)
	}
	h.clock.Advance(3 * time.Minute)
	h.reopen()
	h.clock.Advance(119 * time.Second)
	if got := h.exec(a.PlanID).State; got != recovery.PendingApproval {
		t.Fatalf("1s before the deadline: %s, want PENDING_APPROVAL", got)
	}
	h.clock.Advance(time.Second)
	if got := h.exec(a.PlanID).State; got != recovery.Expired {
		t.Fatalf("at the deadline: %s, want EXPIRED", got)
	}
	if _, err := h.eng.Approve(context.Background(), a.PlanID, "alice"); recovery.ErrorCode(err) != recovery.CodeConflict {
		t.Fatalf("approve after expiry: %v, want a conflict", err)
	}
}

func TestDeadlinePassedDuringDowntimeExpiresAtStart(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	a := h.submit(referenceEvents(t)["CAPACITY_WARNING"])
	h.close()
	h.clock.Advance(10 * time.Minute)
	h.open()
	h.clock.Advance(0) // timers due "now" fire
	if got := h.exec(a.PlanID).State; got != recovery.Expired {
		t.Fatalf("state %s, want EXPIRED", got)
	}
}

func TestRestartDuringExecutionGivesInterrupted(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	started := make(chan struct{})
	release := make(chan struct{})
	h.drv.Block = func(ctx context.Context, a runbooks.Action) {
		close(started)
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	a := h.submit(referenceEvents(t)["ERROR_RATE_SPIKE"])
	<-started
	if got := h.exec(a.PlanID).State; got != recovery.Executing {
		t.Fatalf("state %s, want EXECUTING", got)
	}
	// Simulate the crash: a second process opens the file after this one died.
	// bbolt holds a lock, so copy the file as the disk would hold it.
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	copyFile(t, h.path, crashed)
	close(release)
	h.idle()

	h2 := &harness{t: t, path: crashed, cfg: h.cfg, books: h.books, clock: h.clock, drv: logdriver.New(nil)}
	h2.open()
	t.Cleanup(h2.close)
	x := h2.exec(a.PlanID)
	if x.State != recovery.Interrupted {
		t.Fatalf("after restart: %s, want INTERRUPTED", x.State)
	}
	h2.idle()
	if n := len(h2.drv.Calls()); n != 0 {
		t.Errorf("the restarted bot made %d driver calls, want 0: never re-run", n)
	}
	page, _ := h2.db.Outbox(context.Background(), 0, 1000)
	found := false
	for _, n := range page {
		if n.ExecutionID == a.PlanID && n.State == recovery.Interrupted {
			found = true
		}
	}
	if !found {
		t.Errorf("no INTERRUPTED notification for %s in the outbox", a.PlanID)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Flaw: rollback swapped from/to instead of restoring what was observed.
func TestFailedActionRollsBackWithTheObservedState(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "two.yaml"), `
name: two-step
trigger: {eventType: CIRCUIT_BREAKER_CANDIDATE, conditions: {confidence: {min: 0.5}}}
actions:
  - type: CIRCUIT_BREAKER
    operation: OPEN
    parameters: {service: "{{upstream}}", duration: 60, halfOpenRequests: 3}
  - type: RATE_LIMIT
    parameters: {target: "{{upstream}}", limit: 10, window: 60}
  - type: CACHE_CLEAR
    parameters: {pattern: "{{upstream}}:*"}
safety: {requiresApproval: false, maxExecutionsPerHour: 5}
`)
	h := newHarness(t, recovery.ModeFull)
	books, err := runbooks.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	h.books = books
	h.drv.FailApply = func(a runbooks.Action) error {
		if a.Type == runbooks.CacheClear {
			return errors.New("redis down")
		}
		return nil
	}
	h.reopen()
	a := h.submit(recovery.Event{Type: runbooks.CircuitBreakerCandidate, Severity: runbooks.Warning,
		Confidence: 0.9, Context: map[string]any{"upstream": "payments"}})
	h.idle()
	x := h.exec(a.PlanID)
	if x.State != recovery.RolledBack {
		t.Fatalf("state %s (%s), want ROLLED_BACK", x.State, x.Error)
	}
	var ops []string
	for _, c := range h.drv.Calls() {
		ops = append(ops, c.Op+" "+string(c.Action.Type))
	}
	want := "apply CIRCUIT_BREAKER,apply RATE_LIMIT,apply CACHE_CLEAR,undo RATE_LIMIT,undo CIRCUIT_BREAKER"
	if got := strings.Join(ops, ","); got != want {
		t.Fatalf("calls\n got %s\nwant %s", got, want)
	}
	calls := h.drv.Calls()
	if string(calls[3].Before) != string(calls[1].Before) || len(calls[3].Before) == 0 {
		t.Errorf("undo got before-state %s, want what apply observed: %s", calls[3].Before, calls[1].Before)
	}
}

func TestScheduledRollbackSurvivesRestart(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	// open-circuit-breaker: duration 60 s, rollbackAfterMinutes 5 → reverts at 60 s.
	a := h.submit(referenceEvents(t)["CIRCUIT_BREAKER_CANDIDATE"])
	h.idle()
	x := h.exec(a.PlanID)
	if x.State != recovery.Succeeded || !x.RollbackAt.Equal(t0.Add(60*time.Second)) {
		t.Fatalf("state %s rollback_at %s, want SUCCEEDED with a rollback at +60s", x.State, x.RollbackAt)
	}
	h.reopen()
	h.clock.Advance(59 * time.Second)
	if got := h.exec(a.PlanID).State; got != recovery.Succeeded {
		t.Fatalf("before the time: %s", got)
	}
	h.clock.Advance(time.Second)
	h.idle()
	if got := h.exec(a.PlanID).State; got != recovery.RolledBack {
		t.Fatalf("after the time: %s, want ROLLED_BACK", got)
	}
}

func TestManualRollback(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	a := h.submit(referenceEvents(t)["LATENCY_ANOMALY"])
	h.idle()
	if _, err := h.eng.Rollback(context.Background(), a.PlanID, "alice"); err != nil {
		t.Fatal(err)
	}
	h.idle()
	if got := h.exec(a.PlanID).State; got != recovery.RolledBack {
		t.Fatalf("state %s, want ROLLED_BACK", got)
	}
	if _, err := h.eng.Rollback(context.Background(), a.PlanID, "alice"); recovery.ErrorCode(err) != recovery.CodeConflict {
		t.Fatalf("second rollback: %v, want a conflict", err)
	}
}

func TestEveryTransitionIsAudited(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	a := h.submit(referenceEvents(t)["CAPACITY_WARNING"])
	if _, err := h.eng.Approve(context.Background(), a.PlanID, "alice"); err != nil {
		t.Fatal(err)
	}
	h.idle()
	recs, err := h.db.Audit(context.Background(), a.PlanID)
	if err != nil {
		t.Fatal(err)
	}
	var moves []string
	for _, r := range recs {
		if r.From != r.To {
			moves = append(moves, string(r.From)+">"+string(r.To))
		}
	}
	want := ">PENDING_APPROVAL,PENDING_APPROVAL>APPROVED,APPROVED>EXECUTING,EXECUTING>SUCCEEDED"
	if got := strings.Join(moves, ","); got != want {
		t.Fatalf("audit moves\n got %s\nwant %s", got, want)
	}
	if recs[1].Actor != "alice" || recs[1].Plan == nil {
		t.Errorf("approval record %+v: want actor alice and a plan snapshot", recs[1])
	}
}

func TestStateTableCoversEveryPair(t *testing.T) {
	allowed := map[[2]recovery.State]bool{}
	for _, p := range [][2]recovery.State{
		{"PENDING_APPROVAL", "APPROVED"}, {"PENDING_APPROVAL", "REJECTED"}, {"PENDING_APPROVAL", "EXPIRED"}, {"PENDING_APPROVAL", "CANCELLED"},
		{"APPROVED", "EXECUTING"}, {"APPROVED", "SUPPRESSED"}, {"APPROVED", "INTERRUPTED"},
		{"EXECUTING", "SUCCEEDED"}, {"EXECUTING", "FAILED"}, {"EXECUTING", "ROLLING_BACK"}, {"EXECUTING", "INTERRUPTED"},
		{"SUCCEEDED", "VERIFYING"}, {"SUCCEEDED", "ROLLING_BACK"},
		{"VERIFYING", "VERIFIED"}, {"VERIFYING", "VERIFY_FAILED"}, {"VERIFYING", "ROLLING_BACK"}, {"VERIFYING", "INTERRUPTED"},
		{"VERIFIED", "ROLLING_BACK"}, {"VERIFY_FAILED", "ROLLING_BACK"},
		{"ROLLING_BACK", "ROLLED_BACK"}, {"ROLLING_BACK", "ROLLBACK_FAILED"}, {"ROLLING_BACK", "INTERRUPTED"},
		{"INTERRUPTED", "ROLLING_BACK"},
	} {
		allowed[p] = true
	}
	for _, from := range recovery.States {
		for _, to := range recovery.States {
			want := allowed[[2]recovery.State{from, to}] || from == to // same state: an annotation
			if got := recovery.CanMove(from, to); got != want {
				t.Errorf("CanMove(%s, %s) = %v", from, to, got)
			}
		}
	}
}

// Flaw: ids from Date.now() collide.
func TestIDsAreUniqueAndSortInCreationOrder(t *testing.T) {
	var g recovery.IDs
	ids := make([]string, 100000)
	for i := range ids {
		ids[i] = g.New(t0) // all in the same millisecond
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("ids made in order do not sort in order")
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
	if later := g.New(t0.Add(time.Millisecond)); later <= ids[len(ids)-1] {
		t.Errorf("an id a millisecond later (%s) sorts before the earlier ones", later)
	}
}

func TestResolvedAlertCancelsPendingPlanAndNeverStartsOne(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	ev := referenceEvents(t)["CAPACITY_WARNING"]
	ev.Fingerprint = "abc123"
	a := h.submit(ev)
	res := ev
	res.ID = "am_abc123_resolved"
	got, err := h.eng.Resolve(context.Background(), res)
	if err != nil {
		t.Fatal(err)
	}
	if got.Decision != recovery.DecideCancelled || got.PlanID != a.PlanID {
		t.Fatalf("resolve answer %+v, want cancelled %s", got, a.PlanID)
	}
	if s := h.exec(a.PlanID).State; s != recovery.Cancelled {
		t.Fatalf("state %s, want CANCELLED", s)
	}
	// A resolved alert with nothing pending is recorded and starts nothing.
	res.ID, res.Fingerprint = "am_other_resolved", "def456"
	got, err = h.eng.Resolve(context.Background(), res)
	if err != nil || got.Decision != recovery.DecideIgnored {
		t.Fatalf("%+v %v, want ignored", got, err)
	}
	h.idle()
	if n := len(h.drv.Calls()); n != 0 {
		t.Errorf("%d driver calls, want 0", n)
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTwoExecutionsNeverActOnTheSameTargetAtOnce(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	h.cfg.LockWait = 50 * time.Millisecond
	suppressed := make(chan struct{}, 1)
	h.cfg.Observer = moves{recovery.Suppressed: suppressed}
	h.reopen()
	started := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	h.drv.Block = func(ctx context.Context, a runbooks.Action) {
		if a.Type == runbooks.ScaleResource {
			once.Do(func() { close(started) })
			<-release
		}
	}
	// scale-database-connections and restart-pod-memory-leak both act on
	// deployment api-gateway.
	scale := h.submit(referenceEvents(t)["LATENCY_ANOMALY"])
	<-started
	restart := h.submit(referenceEvents(t)["CAPACITY_WARNING"])
	if _, err := h.eng.Approve(context.Background(), restart.PlanID, "alice"); err != nil {
		t.Fatal(err)
	}
	// The restart waits for the lock, gives up after LockWait, and says why.
	<-suppressed
	if x := h.exec(restart.PlanID); x.State != recovery.Suppressed || !strings.Contains(lastReason(t, h, restart.PlanID), "deployment/default/api-gateway is busy") {
		t.Errorf("refusal %q: want the busy target named", lastReason(t, h, restart.PlanID))
	}
	close(release)
	h.idle()
	if got := h.exec(scale.PlanID).State; got != recovery.Succeeded {
		t.Errorf("scale: %s, want SUCCEEDED", got)
	}
	for _, c := range h.drv.Calls() {
		if c.Action.Type == runbooks.RestartPod {
			t.Fatal("the restart ran while the scale held the target")
		}
	}
}

// moves signals a channel each time an execution enters one of its states.
type moves map[recovery.State]chan struct{}

func (m moves) Moved(to recovery.State) {
	if ch, ok := m[to]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
func (moves) EventReceived(runbooks.EventType, string)             {}
func (moves) Decided(recovery.Decision)                            {}
func (moves) ActionDone(runbooks.ActionType, time.Duration, error) {}
func (moves) ApprovalWait(time.Duration)                           {}

func lastReason(t *testing.T, h *harness, id string) string {
	t.Helper()
	recs, err := h.db.Audit(context.Background(), id)
	if err != nil || len(recs) == 0 {
		t.Fatalf("audit of %s: %v", id, err)
	}
	return recs[len(recs)-1].Reason
}
