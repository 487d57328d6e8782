package recovery

import (
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/runbooks"
)

func TestFreezeGuard(t *testing.T) {
	rb := gRunbook(runbooks.CacheClear, nil)
	onTarget := func(p *Proposal) { p.Targets = []string{"cache/default/users", "deployment/default/api"} }
	frozen := func(fs ...Freeze) *Situation { return gSituation(func(s *Situation) { s.Freezes = fs }) }
	all := Freeze{ID: "fz_1", Reason: "deploying payments", Start: gNow.Add(-time.Minute), End: gNow.Add(time.Hour), By: "cli:alice"}
	byRunbook, byTarget, both, other := all, all, all, all
	byRunbook.Runbook = "rb"
	byTarget.Target = "deployment/default/api"
	both.Runbook, both.Target = "rb", "deployment/default/api"
	other.Runbook = "another"
	ended, future := all, all
	ended.End = gNow // [Start, End): over at End
	future.Start = gNow.Add(time.Second)
	otherTarget := byTarget
	otherTarget.Target = "deployment/default/api-canary" // identity is exact: no prefix match
	runGuardCases(t, FreezeGuard{}, []guardCase{
		{"no freeze passes", gProposal(rb, onTarget), gSituation(nil), Pass, "", ""},
		{"a freeze of everything asks, naming it, its reason and its end", gProposal(rb, onTarget), frozen(all), NeedApproval,
			"frozen by fz_1 (deploying payments, everything) until 2026-11-27T04:00:00Z: a human must approve", ""},
		{"a freeze of the runbook asks", gProposal(rb, onTarget), frozen(byRunbook), NeedApproval, "runbook rb", ""},
		{"a freeze of one of the plan's targets asks", gProposal(rb, onTarget), frozen(byTarget), NeedApproval, "target deployment/default/api", ""},
		{"a freeze of the runbook on the target asks", gProposal(rb, onTarget), frozen(both), NeedApproval, "runbook rb on target deployment/default/api", ""},
		{"another runbook's freeze passes", gProposal(rb, onTarget), frozen(other), Pass, "", ""},
		{"another target's freeze passes", gProposal(rb, onTarget), frozen(otherTarget), Pass, "", ""},
		{"the runbook on another target passes", gProposal(rb, func(p *Proposal) { p.Targets = []string{"cache/default/users"} }), frozen(both), Pass, "", ""},
		{"a freeze that ended passes", gProposal(rb, onTarget), frozen(ended), Pass, "", ""},
		{"a freeze not yet begun passes", gProposal(rb, onTarget), frozen(future), Pass, "", ""},
		{"two freezes are both named", gProposal(rb, onTarget), frozen(other, byRunbook, byTarget), NeedApproval,
			"(deploying payments, runbook rb) until 2026-11-27T04:00:00Z: a human must approve; frozen by fz_1 (deploying payments, target deployment/default/api)", ""},
	})
}

// TestJudgeFreezeNeverSuppresses: a freeze adds a reason for approval; a
// person's approval meets it (mayProceed), the bot alone does not; dry-run
// still wins and keeps it as "would need approval".
func TestJudgeFreezeNeverSuppresses(t *testing.T) {
	f := Freeze{ID: "fz_1", Reason: "deploy", Start: gNow, End: gNow.Add(time.Hour)}
	p := gProposal(gRunbook(runbooks.CacheClear, nil), nil)
	out := judge(p, gSituation(func(s *Situation) { s.Freezes = []Freeze{f} }))
	if out.decision != DecideApproval || len(out.reasons) != 1 {
		t.Fatalf("got %s %q, want approval for the freeze alone", out.decision, out.reasons)
	}
	if why := mayProceed(out, true); why != "" {
		t.Errorf("a person's approval during a freeze was refused: %s", why)
	}
	if why := mayProceed(out, false); why == "" {
		t.Error("an automatic plan may go on during a freeze")
	}
	dry := judge(p, gSituation(func(s *Situation) { s.Freezes, s.Mode = []Freeze{f}, ModeDryRun }))
	if dry.decision != DecideDryRun || dry.reasons[1] != "would need approval: "+out.reasons[0] {
		t.Errorf("dry-run: got %s %q", dry.decision, dry.reasons)
	}
}

// hourly activates at every hh:00 UTC (a cron expression's Next, without
// the parser: the config owns parsing).
type hourly struct{}

func (hourly) Next(t time.Time) time.Time { return t.UTC().Truncate(time.Hour).Add(time.Hour) }

// everyMinute activates at every minute; calls counts its Next calls.
type everyMinute struct{ calls *int }

func (e everyMinute) Next(t time.Time) time.Time {
	*e.calls++
	return t.Truncate(time.Minute).Add(time.Minute)
}

// daily activates at 02:00 UTC.
type daily struct{}

func (daily) Next(t time.Time) time.Time {
	d := time.Date(t.Year(), t.Month(), t.Day(), 2, 0, 0, 0, time.UTC)
	if !d.After(t) {
		d = d.AddDate(0, 0, 1)
	}
	return d
}

func TestFreezeWindowAt(t *testing.T) {
	day := func(h, m int) time.Time { return time.Date(2026, 11, 27, h, m, 0, 0, time.UTC) }
	nightly := FreezeWindow{Name: "nightly", Schedule: daily{}, Duration: 30 * time.Minute, Reason: "backups"}
	long := FreezeWindow{Name: "long", Schedule: hourly{}, Duration: 90 * time.Minute, Reason: "overlap"}
	cases := []struct {
		name       string
		w          FreezeWindow
		now        time.Time
		in         bool
		start, end time.Time
	}{
		{"before the activation", nightly, day(1, 59), false, time.Time{}, time.Time{}},
		{"at the activation", nightly, day(2, 0), true, day(2, 0), day(2, 30)},
		{"inside", nightly, day(2, 29), true, day(2, 0), day(2, 30)},
		{"at the end: over", nightly, day(2, 30), false, time.Time{}, time.Time{}},
		{"overlapping occurrences end with the latest", long, day(3, 10), true, day(2, 0), day(4, 30)},
		{"every minute for a week", FreezeWindow{Name: "m", Schedule: everyMinute{new(int)}, Duration: 7 * 24 * time.Hour},
			day(3, 10).Add(30 * time.Second), true, day(3, 11).Add(-7 * 24 * time.Hour), day(3, 10).Add(7 * 24 * time.Hour)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, in := c.w.At(c.now)
			if in != c.in || !f.Start.Equal(c.start) || !f.End.Equal(c.end) {
				t.Fatalf("got in %v %s..%s, want %v %s..%s", in, f.Start, f.End, c.in, c.start, c.end)
			}
			if in && (f.ID != "window:"+c.w.Name || f.Window != c.w.Name || f.Reason != c.w.Reason) {
				t.Errorf("got %+v", f)
			}
			if m, ok := c.w.Schedule.(everyMinute); ok && *m.calls > 5 {
				t.Errorf("%d Next calls: At walked every activation", *m.calls)
			}
		})
	}
}
