package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/runbooks"
)

// oneTarget is a driver for every action type that names one target for all
// of them: two runbooks acting on it touch the same thing.
type oneTarget struct{ target string }

func (d oneTarget) Check(runbooks.Action) (string, error) { return d.target, nil }
func (d oneTarget) Describe(a runbooks.Action) string     { return string(a.Type) }
func (d oneTarget) Apply(context.Context, runbooks.Action, Reporter) (json.RawMessage, error) {
	return nil, errors.New("not in this test")
}
func (d oneTarget) Undo(context.Context, runbooks.Action, json.RawMessage, Reporter) error {
	return errors.New("not in this test")
}

// acceptStore is a Store that knows no event and whose Accept answers err,
// writing nothing (a caller cancelled before the handover); a nil err accepts.
type acceptStore struct {
	Store
	err      error
	putErr   map[string]error // PutSetting's answer per key
	accepted []Accepted
}

func (s *acceptStore) EventRecord(context.Context, string) (EventRecord, error) {
	return EventRecord{}, ErrNotFound
}

func (s *acceptStore) Accept(_ context.Context, a Accepted) error {
	if s.err != nil {
		return s.err
	}
	s.accepted = append(s.accepted, a)
	return nil
}

// Execution finds nothing: an auto plan's run stops before any driver.
func (s *acceptStore) Execution(context.Context, string) (Execution, error) {
	return Execution{}, ErrNotFound
}

func (s *acceptStore) PutSetting(_ context.Context, key string, _ []byte) error { return s.putErr[key] }

func (s *acceptStore) Record(context.Context, []AuditRecord, []Notification) error { return nil }

func intakeEngine(t *testing.T, edit func(*Config)) (*Engine, *acceptStore) {
	t.Helper()
	books, err := runbooks.LoadDefaults()
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Mode = ModeFull
	cfg.Clock = NewManualClock(t0admit)
	if edit != nil {
		edit(&cfg)
	}
	drv := oneTarget{"cache:shared"}
	drivers := DriverMap{}
	for _, ty := range []runbooks.ActionType{runbooks.CacheClear, runbooks.RateLimit, runbooks.RestartPod,
		runbooks.ScaleResource, runbooks.Failover, runbooks.CircuitBreaker} {
		drivers[ty] = drv
	}
	st := &acceptStore{}
	return New(cfg, st, books, drivers), st
}

func staleCache(id string) Event {
	return Event{ID: id, Type: runbooks.ErrorRateSpike, Severity: runbooks.Warning, Confidence: 0.8,
		Data: map[string]any{"errorCategory": "5xx"}, Context: map[string]any{"route": "/api/users"}}
}

// Before the fix, a decision whose Accept wrote nothing still opened the
// breaker, counted in the blast windows, the repeat count and the summary.
func TestDecisionNeverCommittedLeavesNoTrace(t *testing.T) {
	cancelled := context.Canceled
	t.Run("the breaker stays closed and the windows unchanged", func(t *testing.T) {
		e, st := intakeEngine(t, func(c *Config) { c.BlastMaxTargets = 1 })
		e.blast.failing["cache:other"] = t0admit.Add(-time.Minute) // the next target trips it
		st.err = cancelled
		if _, err := e.Submit(context.Background(), staleCache("e1")); err == nil {
			t.Fatal("submit succeeded, want the store's error")
		}
		if got := e.Breaker(); got != "" {
			t.Errorf("breaker open (%q) for a plan never committed", got)
		}
		if n, a := len(e.blast.failing), len(e.blast.autos); n != 1 || a != 0 {
			t.Errorf("blast windows: %d failing, %d autos, want the one failing before", n, a)
		}
		st.err = nil // the same event committed now trips it, once
		if _, err := e.Submit(context.Background(), staleCache("e1")); err != nil {
			t.Fatal(err)
		}
		if e.Breaker() == "" {
			t.Error("breaker closed after a committed plan that trips it")
		}
	})
	t.Run("no repeat counted", func(t *testing.T) {
		e, st := intakeEngine(t, nil)
		if _, err := e.Submit(context.Background(), staleCache("e1")); err != nil {
			t.Fatal(err)
		}
		plan := st.accepted[0].Execution.ID
		st.err = cancelled
		if _, err := e.Submit(context.Background(), staleCache("e2")); err == nil {
			t.Fatal("submit succeeded, want the store's error")
		}
		if n, ok := e.repeats[plan]; ok {
			t.Errorf("repeat count %d for a duplicate never committed", n)
		}
		if _, ok := e.repeatNoted[plan]; ok {
			t.Error("repeat announcement time set for a duplicate never committed")
		}
		st.err = nil
		if _, err := e.Submit(context.Background(), staleCache("e3")); err != nil {
			t.Fatal(err)
		}
		out := st.accepted[len(st.accepted)-1].Outbox
		if len(out) != 1 || out[0].Text != "🔁 seen 1 more time(s) since it was planned" {
			t.Errorf("first committed repeat announces %+v, want \"seen 1 more time(s)\"", out)
		}
	})
	t.Run("no suppressed plan in the summary", func(t *testing.T) {
		e, st := intakeEngine(t, nil)
		e.paused = true
		st.err = cancelled
		if _, err := e.Submit(context.Background(), staleCache("e1")); err == nil {
			t.Fatal("submit succeeded, want the store's error")
		}
		if len(e.suppressedBatch.counts) != 0 {
			t.Errorf("summary batch %v for a plan never committed", e.suppressedBatch.counts)
		}
		st.err = nil
		if _, err := e.Submit(context.Background(), staleCache("e2")); err != nil {
			t.Fatal(err)
		}
		if n := len(e.suppressedBatch.counts); n != 1 {
			t.Errorf("summary batch %v after a committed suppressed plan, want it", e.suppressedBatch.counts)
		}
	})
}

// Before the fix, the blast radius counted plan keys (runbook and targets):
// two runbooks acting on one target counted as two failing targets.
func TestBlastRadiusCountsTheDriversTargets(t *testing.T) {
	e, _ := intakeEngine(t, func(c *Config) { c.BlastMaxTargets = 1 })
	if _, err := e.Submit(context.Background(), staleCache("e1")); err != nil {
		t.Fatal(err)
	}
	abuse := Event{ID: "e2", Type: runbooks.RateLimitBreach, Severity: runbooks.Warning, Confidence: 0.8,
		Data: map[string]any{"trafficType": "ABUSE"}, Context: map[string]any{"client": "10.1.2.3"}}
	if _, err := e.Submit(context.Background(), abuse); err != nil {
		t.Fatal(err)
	}
	if got := e.Breaker(); got != "" {
		t.Errorf("breaker tripped (%q): two runbooks on one target are one failing target", got)
	}
	if got, want := len(e.blast.failing), 1; got != want {
		t.Errorf("failing targets %d, want %d", got, want)
	}
}

// Before the fix, resume closed the breaker in memory and then failed to
// persist it: memory said closed, the disk open.
func TestResumeThatCannotPersistTheResetLeavesTheBreakerOpen(t *testing.T) {
	e, st := intakeEngine(t, nil)
	e.paused, e.breaker = true, breakerState{Reason: "storm", At: t0admit}
	e.blast.failing["cache:x"] = t0admit
	st.putErr = map[string]error{settingBreaker: context.Canceled}
	if err := e.Resume(context.Background(), "slack:UOPS"); ErrorCode(err) != CodeUnavailable {
		t.Fatalf("resume: %v, want unavailable", err)
	}
	if got := e.Breaker(); got != "storm" {
		t.Errorf("breaker %q in memory, want still open (\"storm\"), as on disk", got)
	}
	if n := len(e.blast.failing); n != 1 {
		t.Errorf("blast windows reset (%d failing) though the reset was not persisted", n)
	}
	st.putErr = nil
	if err := e.Resume(context.Background(), "slack:UOPS"); err != nil {
		t.Fatal(err)
	}
	if got := e.Breaker(); got != "" {
		t.Errorf("breaker %q after a resume that persisted, want closed", got)
	}
}

// The never-auto reasons are cached per engine, not in a process-wide map
// that outlives it (before the fix: a global keyed by runbook pointer, never
// cleared).
func TestApprovalMemoBelongsToItsEngine(t *testing.T) {
	e1, _ := intakeEngine(t, nil)
	if _, err := e1.Submit(context.Background(), staleCache("e1")); err != nil {
		t.Fatal(err)
	}
	count := func(e *Engine) (n int) {
		e.approval.m.Range(func(any, any) bool { n++; return true })
		return n
	}
	if n := count(e1); n != 1 {
		t.Errorf("engine 1 cached %d runbook(s), want 1", n)
	}
	e2, _ := intakeEngine(t, nil)
	if n := count(e2); n != 0 {
		t.Errorf("a new engine starts with %d cached runbook(s), want none", n)
	}
}
