package claude_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/claude"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
)

// drops counts AI calls not made, by reason (the bot's /metrics does the same).
type drops struct {
	mu sync.Mutex
	n  map[recovery.AIDrop]int
}

func (d *drops) AIDropped(why recovery.AIDrop) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n[why]++
}

func (d *drops) get(why recovery.AIDrop) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[why]
}

func (*drops) EventReceived(runbooks.EventType, string)             {}
func (*drops) Decided(recovery.Decision)                            {}
func (*drops) Moved(recovery.State)                                 {}
func (*drops) ActionDone(runbooks.ActionType, time.Duration, error) {}
func (*drops) ApprovalWait(time.Duration)                           {}

type budgetEnv struct {
	*env
	clock *recovery.ManualClock
	drops *drops
}

func newBudgetEnv(t *testing.T, b recovery.AIBudget) *budgetEnv {
	t.Helper()
	books, err := runbooks.LoadDefaults()
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(t.TempDir(), "ai.db"))
	if err != nil {
		t.Fatal(err)
	}
	e := &budgetEnv{env: &env{db: db, drv: logdriver.New(nil), fake: newFake(t)},
		clock: recovery.NewManualClock(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)), drops: &drops{n: map[recovery.AIDrop]int{}}}
	e.fake.propose = toolAnswer(`{"runbook":"none","confidence":0,"rationale":"nothing fits"}`)
	cfg := recovery.DefaultConfig()
	cfg.Mode, cfg.AITimeout, cfg.Clock, cfg.Observer, cfg.AIBudget = recovery.ModeFull, 10*time.Second, e.clock, e.drops, b
	cfg.Advisor = claude.New("sk-test", e.fake.srv.URL, "claude-test")
	e.eng = recovery.New(cfg, db, books, e.drv.All())
	if err := e.eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.eng.Close(context.Background()); _ = db.Close() })
	return e
}

// unmatchedN is the n-th of many different events no runbook matches.
func unmatchedN(n int) recovery.Event {
	ev := unmatched
	ev.Summary = fmt.Sprintf("payments p99 at %ds", n)
	return ev
}

func (e *budgetEnv) submit(t *testing.T, ev recovery.Event) {
	t.Helper()
	if a, err := e.eng.Submit(context.Background(), ev); err != nil || a.Decision != recovery.DecideNoRunbook {
		t.Fatalf("intake: %+v %v, want no_runbook", a, err)
	}
}

// notices are the channel messages saying the AI budget was reached.
func (e *budgetEnv) notices(t *testing.T) int {
	t.Helper()
	page, err := e.db.Outbox(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range page {
		if m.Kind == recovery.NoteNotice && strings.Contains(m.Text, "AI budget reached") {
			n++
		}
	}
	return n
}

// #12 item 6: 600 unmatched events started 600 concurrent AI calls.
func TestAIStormStaysWithinTheConcurrencyCapAndTheMinutesBudget(t *testing.T) {
	e := newBudgetEnv(t, recovery.AIBudget{MaxConcurrent: 2, PerMinute: 5})
	arrived, release := make(chan struct{}, 100), make(chan struct{})
	answer := e.fake.propose
	e.fake.propose = func(w http.ResponseWriter) {
		arrived <- struct{}{}
		<-release
		answer(w)
	}
	e.submit(t, unmatchedN(0))
	e.submit(t, unmatchedN(1))
	<-arrived
	<-arrived // both slots taken, the calls in flight
	for i := 2; i < 600; i++ {
		e.submit(t, unmatchedN(i))
	}
	close(release)
	e.settle(t)
	if got := e.fake.count(); got != 2 {
		t.Fatalf("%d AI calls for 600 events with 2 slots busy, want 2", got)
	}
	if got := e.drops.get(recovery.AIDropBusy); got != 598 {
		t.Errorf("%d dropped for concurrency, want 598", got)
	}

	// The minute's budget: 5 calls, 2 of them made already.
	for i := 600; i < 610; i++ {
		e.submit(t, unmatchedN(i))
		e.settle(t)
	}
	if got := e.fake.count(); got != 5 {
		t.Fatalf("%d AI calls in the first minute, want the budget of 5", got)
	}
	if got := e.drops.get(recovery.AIDropBudget); got != 7 {
		t.Errorf("%d dropped for the budget, want 7", got)
	}
	e.clock.Advance(time.Minute)
	e.submit(t, unmatchedN(700))
	e.settle(t)
	if got := e.fake.count(); got != 6 {
		t.Errorf("%d AI calls after a minute, want 6: the budget slides", got)
	}
	if got := e.notices(t); got != 1 {
		t.Errorf("%d channel notices about the AI budget, want 1", got)
	}
}

func TestIdenticalUnmatchedEventsAreFoldedWithinTheWindow(t *testing.T) {
	e := newBudgetEnv(t, recovery.AIBudget{FoldWindow: 10 * time.Minute})
	for i := 0; i < 100; i++ {
		ev := unmatched
		ev.ID = fmt.Sprintf("ev-%d", i) // a new delivery, the same report
		e.submit(t, ev)
		e.settle(t)
	}
	if got := e.fake.count(); got != 1 {
		t.Fatalf("%d AI calls for 100 identical events, want 1", got)
	}
	if got := e.drops.get(recovery.AIDropFolded); got != 99 {
		t.Errorf("%d folded, want 99", got)
	}
	if got := e.notices(t); got != 0 {
		t.Errorf("%d channel notices for folded events, want 0: folding drops nothing new", got)
	}
	e.clock.Advance(10 * time.Minute)
	ev := unmatched
	ev.ID = "ev-later"
	e.submit(t, ev)
	e.settle(t)
	if got := e.fake.count(); got != 2 {
		t.Errorf("%d AI calls after the window, want 2", got)
	}
}

func TestTheEventIsCutToThePromptCap(t *testing.T) {
	const limit = 4096
	e := newBudgetEnv(t, recovery.AIBudget{PromptBytes: limit})
	ev := unmatched
	ev.Summary = strings.Repeat("stack frame ", 330)
	ev.Data = map[string]any{}
	for i := 0; i < 110; i++ {
		ev.Data[fmt.Sprintf("k%03d", i)] = strings.Repeat("x", 500) // about 57 KB in all: within the intake's bounds
	}
	ev.Data["nested"] = map[string]any{"deep": strings.Repeat("y", 2000)}
	e.submit(t, ev)
	e.settle(t)
	if e.fake.count() != 1 {
		t.Fatalf("%d AI calls, want 1", e.fake.count())
	}
	content := e.fake.requests[0]["messages"].([]any)[0].(map[string]any)["content"].(string)
	var prompt struct {
		Event json.RawMessage `json:"event"`
	}
	if err := json.Unmarshal([]byte(content), &prompt); err != nil {
		t.Fatal(err)
	}
	if len(prompt.Event) > limit {
		t.Errorf("the event in the prompt is %d bytes, want at most %d", len(prompt.Event), limit)
	}
	for _, want := range []string{`"k000":"xxx`, "more keys not shown: the event is cut to 4096 bytes for the AI", "stack frame"} {
		if !strings.Contains(string(prompt.Event), want) {
			t.Errorf("the prompt's event lacks %q: %s", want, prompt.Event)
		}
	}
	// The plan, were there one, is made from the whole event: the store keeps it.
	recs, _ := e.db.AuditSince(context.Background(), time.Time{})
	if len(recs) == 0 || recs[0].EventID == "" {
		t.Fatalf("no audit of the event")
	}
	rec, err := e.db.EventRecord(context.Background(), recs[0].EventID)
	if err != nil || len(rec.Event.Data) != 111 {
		t.Errorf("stored event has %d data keys (%v), want all 111", len(rec.Event.Data), err)
	}
}

// The cap holds for text that JSON escapes: '<', '>', '&' and control
// characters cost six bytes each once encoded (the #12 review: 1024 '<' made a
// 6 KiB event in the prompt against a 4 KiB cap).
func TestThePromptCapHoldsForEscapedText(t *testing.T) {
	for _, tc := range []struct {
		name string
		char string
	}{
		{"angle brackets", "<"},
		{"control characters", "\x01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const limit = 4096
			e := newBudgetEnv(t, recovery.AIBudget{PromptBytes: limit})
			ev := unmatched
			ev.Summary = strings.Repeat(tc.char, 4000)
			ev.Data = map[string]any{"a": strings.Repeat(tc.char, 400), "b": strings.Repeat(tc.char, 400)}
			e.submit(t, ev)
			e.settle(t)
			if e.fake.count() != 1 {
				t.Fatalf("%d AI calls, want 1", e.fake.count())
			}
			content := e.fake.requests[0]["messages"].([]any)[0].(map[string]any)["content"].(string)
			var prompt struct {
				Event json.RawMessage `json:"event"`
			}
			if err := json.Unmarshal([]byte(content), &prompt); err != nil {
				t.Fatal(err)
			}
			if len(prompt.Event) > limit {
				t.Errorf("the event in the prompt is %d bytes, want at most %d", len(prompt.Event), limit)
			}
			if !strings.Contains(string(prompt.Event), "[cut ") {
				t.Errorf("the prompt's summary is not marked as cut: %.200s", prompt.Event)
			}
		})
	}
}
