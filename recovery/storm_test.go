package recovery_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

func outboxKinds(t *testing.T, h *harness) map[recovery.NoteKind][]recovery.Notification {
	t.Helper()
	page, err := h.db.Outbox(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[recovery.NoteKind][]recovery.Notification{}
	for _, n := range page {
		out[n.Kind] = append(out[n.Kind], n)
	}
	return out
}

func TestStormOfOneFailureMakesOnePlanAndOneMessage(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	ev := referenceEvents(t)["CAPACITY_WARNING"] // needs approval: stays open all storm long
	// 10,000 events in 10 s, from 16 senders at once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	plans := map[string]int{}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 625; i++ {
				a, err := h.eng.Submit(context.Background(), ev)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				plans[a.PlanID+a.DuplicateOf]++
				mu.Unlock()
			}
		}()
		if w%4 == 3 {
			h.clock.Advance(2500 * time.Millisecond)
		}
	}
	wg.Wait()
	if len(plans) != 1 {
		t.Fatalf("%d distinct plans, want 1: %v", len(plans), plans)
	}
	xs, _ := h.db.Executions(context.Background(), recovery.ExecutionFilter{})
	if len(xs) != 1 || xs[0].Repeats != 9999 {
		t.Fatalf("%d executions, repeats %d; want 1 plan that saw 9,999 repeats", len(xs), xs[0].Repeats)
	}
	k := outboxKinds(t, h)
	if len(k["plan"]) != 1 {
		t.Errorf("%d plan messages, want 1", len(k["plan"]))
	}
	// The count is announced at most every 5 s: 10 s of storm → at most 3 notices.
	if n := len(k["repeats"]); n < 1 || n > 3 {
		t.Errorf("%d repeat notices over 10 s, want 1..3", n)
	}
}

func TestStormAcrossFiftyTargetsIsRateLimitedAndSummarized(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	h.cfg.BlastMaxTargets = 100 // this test is about rate limits, not the breaker
	h.cfg.BlastMaxAuto = 100
	h.reopen()
	ev := referenceEvents(t)["RATE_LIMIT_BREACH"] // apply-rate-limit-abuse: 10 per hour
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 10000; i += 32 {
				e := ev
				e.Context = map[string]any{"client": fmt.Sprintf("10.0.0.%d", i%50)}
				if _, err := h.eng.Submit(context.Background(), e); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	h.idle()
	xs, _ := h.db.Executions(context.Background(), recovery.ExecutionFilter{Limit: 1000})
	states := map[recovery.State]int{}
	for _, x := range xs {
		states[x.State]++
	}
	if len(xs) != 50 || states[recovery.Succeeded] != 10 || states[recovery.Suppressed] != 40 {
		t.Fatalf("%d plans %v, want 50: 10 executed, 40 suppressed by the hourly limit", len(xs), states)
	}
	h.clock.Advance(10 * time.Second) // the summary's flush
	k := outboxKinds(t, h)
	if len(k["notice"]) != 1 || !strings.Contains(k["notice"][0].Text, "40 × apply-rate-limit-abuse: hourly rate limit reached") {
		t.Fatalf("notices %+v, want one summary of the 40 suppressed plans", k["notice"])
	}
	// The summary names what was not done, plan by plan, up to a bound.
	text := k["notice"][0].Text
	byID := map[string]recovery.Execution{}
	for _, x := range xs {
		if x.State == recovery.Suppressed {
			byID[x.ID] = x
		}
	}
	var named int
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "  – ") {
			continue
		}
		named++
		_, id, ok := strings.Cut(line, ", plan ")
		id, _, _ = strings.Cut(id, " ")
		x, found := byID[id]
		if !ok || !found {
			t.Errorf("line %q names no suppressed plan", line)
			continue
		}
		want := fmt.Sprintf("RATE_LIMIT_BREACH on %s not done: apply-rate-limit-abuse", strings.Join(x.Targets, ", "))
		if len(x.Targets) == 0 || !strings.Contains(line, want) {
			t.Errorf("line %q, want it to contain %q", line, want)
		}
	}
	if named != 10 || !strings.Contains(text, "\n  +30 more") {
		t.Errorf("summary %q names %d plans, want 10 and \"+30 more\"", text, named)
	}
	if len(k["plan"]) != 10 {
		t.Errorf("%d plan messages, want 10 (the executed ones)", len(k["plan"]))
	}
}

func TestBlastRadiusBreakerOnTooManyAutoExecutions(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	// Eleven auto-executable plans across three runbooks, each under its own
	// hourly limit: the eleventh crosses the global limit of 10 per hour.
	evs := referenceEvents(t)
	event := func(i int) recovery.Event {
		switch i % 3 {
		case 0:
			e := evs["RATE_LIMIT_BREACH"]
			e.Context = map[string]any{"client": fmt.Sprintf("10.9.0.%d", i)}
			return e
		case 1:
			e := evs["ERROR_RATE_SPIKE"]
			e.Context = map[string]any{"route": fmt.Sprintf("/api/r%d", i)}
			return e
		}
		e := evs["CIRCUIT_BREAKER_CANDIDATE"]
		e.Context = map[string]any{"upstream": fmt.Sprintf("svc-%d", i)}
		return e
	}
	var last recovery.Answer
	for i := 0; i < 11; i++ {
		last = h.submit(event(i))
		if i < 10 && last.Decision != recovery.DecideAuto {
			t.Fatalf("event %d: %s %v, want auto", i, last.Decision, last.Reasons)
		}
	}
	if last.Decision != recovery.DecideApproval || !strings.Contains(strings.Join(last.Reasons, ";"), "blast-radius breaker is open") {
		t.Fatalf("11th: %s %v, want approval because the breaker tripped", last.Decision, last.Reasons)
	}
	k := outboxKinds(t, h)
	if len(k["notice"]) != 1 || !strings.Contains(k["notice"][0].Text, "Blast-radius breaker tripped") {
		t.Fatalf("notices %+v, want one loud breaker notice", k["notice"])
	}
	h.idle()
	h.reopen() // the breaker survives a restart
	e := event(12)
	if a := h.submit(e); a.Decision != recovery.DecideApproval {
		t.Fatalf("after restart: %s, want approval: the breaker stays open", a.Decision)
	}
	if err := h.eng.Resume(context.Background(), "cli:alice"); err != nil {
		t.Fatal(err)
	}
	if h.eng.Breaker() != "" {
		t.Fatal("resume did not close the breaker")
	}
	if a := h.submit(event(13)); a.Decision != recovery.DecideAuto {
		t.Fatalf("after resume: %s %v, want auto", a.Decision, a.Reasons)
	}
	h.idle()
}

func TestBlastRadiusBreakerOnTooManyFailingTargets(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	// 21 distinct targets of a runbook that needs approval anyway.
	ev := referenceEvents(t)["UPSTREAM_DEGRADATION"]
	for i := 0; i < 21; i++ {
		e := ev
		e.Context = map[string]any{"upstream": fmt.Sprintf("svc-%d", i), "backup_service": fmt.Sprintf("svc-%d-dr", i)}
		h.submit(e)
		if got := h.eng.Breaker(); (i < 20) != (got == "") {
			t.Fatalf("after %d targets: breaker %q", i+1, got)
		}
	}
	if !strings.Contains(h.eng.Breaker(), "more than 20 distinct targets") {
		t.Fatalf("breaker %q, want tripped on distinct targets", h.eng.Breaker())
	}
	h.idle()
}

// Item 9: the blast-radius windows survive a restart (they were in memory
// only, so a restart reset the breaker's count), and a resume before the
// restart is not undone by it.
func TestBlastRadiusWindowsSurviveRestart(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	ev := referenceEvents(t)["UPSTREAM_DEGRADATION"] // needs approval: counts targets only
	target := func(i int) recovery.Event {
		e := ev
		e.Context = map[string]any{"upstream": fmt.Sprintf("svc-%d", i), "backup_service": fmt.Sprintf("svc-%d-dr", i)}
		return e
	}
	for i := 0; i < 20; i++ {
		h.submit(target(i))
	}
	h.reopen()
	if got := h.eng.Breaker(); got != "" {
		t.Fatalf("after 20 targets and a restart: breaker %q, want closed", got)
	}
	h.submit(target(20))
	if !strings.Contains(h.eng.Breaker(), "more than 20 distinct targets") {
		t.Fatalf("21st target after a restart: breaker %q, want tripped", h.eng.Breaker())
	}
	if err := h.eng.Resume(context.Background(), "cli:alice"); err != nil {
		t.Fatal(err)
	}
	h.reopen()
	h.submit(target(21))
	if got := h.eng.Breaker(); got != "" {
		t.Fatalf("after resume and a restart: breaker %q, want closed: the windows count from the resume", got)
	}
}

func TestBlastRadiusAutoCountSurvivesRestart(t *testing.T) {
	h := newHarness(t, recovery.ModeFull)
	h.cfg.BlastMaxAuto = 2
	h.reopen()
	evs := referenceEvents(t)
	for _, typ := range []string{"ERROR_RATE_SPIKE", "RATE_LIMIT_BREACH"} {
		if a := h.submit(evs[typ]); a.Decision != recovery.DecideAuto {
			t.Fatalf("%s: %s %v, want auto", typ, a.Decision, a.Reasons)
		}
	}
	h.idle()
	h.reopen()
	a := h.submit(evs["CIRCUIT_BREAKER_CANDIDATE"])
	if a.Decision != recovery.DecideApproval || !strings.Contains(h.eng.Breaker(), "more than 2 automatic executions") {
		t.Fatalf("third auto plan after a restart: %s, breaker %q: want tripped", a.Decision, h.eng.Breaker())
	}
	h.idle()
}
