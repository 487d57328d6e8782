package recovery

import (
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/runbooks"
)

// TestAdmitRunsTheGuardsAtTheStartOfARun: what may change between a decision
// and the start of its run (a pause, the breaker, the mode after a restart,
// the runbook, the hourly budget) stops it there, and a run admitted holds its
// rate slot once.
func TestAdmitRunsTheGuardsAtTheStartOfARun(t *testing.T) {
	books, err := runbooks.LoadDefaults()
	if err != nil {
		t.Fatal(err)
	}
	rb := books.Get("clear-cache-on-stale-data") // auto at confidence 0.8 in full
	plan := func(decision Decision) *Execution {
		return &Execution{Plan: Plan{ID: "p1", Runbook: rb.Name, RunbookHash: rb.Hash, TargetKey: rb.Name + "|x",
			Actions: rb.Actions, Decision: decision, Event: Event{Confidence: 0.9, Source: "api"}}, State: Approved}
	}
	cases := []struct {
		name    string
		mode    Mode
		edit    func(e *Engine)
		x       *Execution
		refusal string // "" admitted
	}{
		{"auto plan, nothing changed", ModeFull, nil, plan(DecideAuto), ""},
		{"paused since", ModeFull, func(e *Engine) { e.paused = true }, plan(DecideAuto), "paused"},
		{"breaker opened since: an auto plan stops", ModeFull, func(e *Engine) { e.breaker.Reason = "storm" }, plan(DecideAuto), "now needs a human's approval"},
		{"breaker opened since: an approved plan goes on", ModeFull, func(e *Engine) { e.breaker.Reason = "storm" }, plan(DecideApproval), ""},
		{"restarted in dry-run", ModeDryRun, nil, plan(DecideApproval), "mode dry-run"},
		// The plan says it was asked for by hand, whatever its event's source says.
		{"a manual plan never runs unattended", ModeFull, nil, func() *Execution { x := plan(DecideAuto); x.Manual = true; return x }(), "requested by hand"},
		{"runbook changed", ModeFull, nil, func() *Execution { x := plan(DecideApproval); x.RunbookHash = "old"; return x }(), "changed since"},
		{"hourly budget spent by others", ModeFull, func(e *Engine) {
			for i := range rb.Safety.MaxExecutionsPerHour {
				e.rate.reserve(rb.Name, string(rune('a'+i)), t0admit.Add(-time.Minute))
			}
		}, plan(DecideApproval), "hourly rate limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Mode = c.mode
			e := New(cfg, nil, books, DriverMap{})
			if c.edit != nil {
				c.edit(e)
			}
			why := e.admit(c.x, t0admit)
			if (why == "") != (c.refusal == "") || !strings.Contains(why, c.refusal) {
				t.Fatalf("admit = %q, want %q", why, c.refusal)
			}
			used := e.rate.count(rb.Name, "", t0admit)
			e.admit(c.x, t0admit) // a second admission holds no second slot
			if again := e.rate.count(rb.Name, "", t0admit); again != used {
				t.Errorf("slots %d after a second admit, want %d", again, used)
			}
		})
	}
}

var t0admit = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
