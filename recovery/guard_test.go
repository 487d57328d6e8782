package recovery

import (
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/runbooks"
)

var gNow = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)

// gRunbook is a runbook whose only action is of type t, limited to 3 an hour.
func gRunbook(t runbooks.ActionType, edit func(*runbooks.Runbook)) *runbooks.Runbook {
	rb := &runbooks.Runbook{Name: "rb", Hash: "h1", Actions: []runbooks.Action{{Type: t}}}
	rb.Safety.MaxExecutionsPerHour = 3
	if edit != nil {
		edit(rb)
	}
	return rb
}

func gProposal(rb *runbooks.Runbook, edit func(*Proposal)) *Proposal {
	p := &Proposal{Event: &Event{Confidence: 0.9}, RunbookName: "rb", Runbook: rb, TargetKey: "rb|k"}
	if edit != nil {
		edit(p)
	}
	return p
}

func gSituation(edit func(*Situation)) *Situation {
	s := &Situation{Now: gNow, Mode: ModeFull, AutoThreshold: 0.8}
	if edit != nil {
		edit(s)
	}
	return s
}

type guardCase struct {
	name   string
	p      *Proposal
	s      *Situation
	want   Verdict
	reason string // a part of the reason ("" for Pass)
	ref    string
}

func runGuardCases(t *testing.T, g Guard, cases []guardCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, reason, ref := g.Check(c.p, c.s)
			if v != c.want || ref != c.ref || !strings.Contains(reason, c.reason) || (c.want == Pass) != (reason == "") {
				t.Errorf("got %v %q ref %q, want %v containing %q ref %q", v, reason, ref, c.want, c.reason, c.ref)
			}
		})
	}
}

func TestRunbookGuard(t *testing.T) {
	rb := gRunbook(runbooks.CacheClear, nil)
	runGuardCases(t, RunbookGuard{}, []guardCase{
		{"new plan passes", gProposal(rb, nil), gSituation(nil), Pass, "", ""},
		{"same hash passes", gProposal(rb, func(p *Proposal) { p.Plan, p.Hash = "x1", "h1" }), gSituation(nil), Pass, "", ""},
		{"changed runbook suppresses", gProposal(rb, func(p *Proposal) { p.Plan, p.Hash = "x1", "h0" }), gSituation(nil), Suppress, "runbook rb changed since this plan was made", ""},
		{"removed runbook suppresses", gProposal(nil, func(p *Proposal) { p.Plan, p.Hash = "x1", "h1" }), gSituation(nil), Suppress, "runbook rb is no longer loaded", ""},
	})
}

func TestPausedGuard(t *testing.T) {
	rb := gRunbook(runbooks.CacheClear, nil)
	runGuardCases(t, PausedGuard{}, []guardCase{
		{"running passes", gProposal(rb, nil), gSituation(nil), Pass, "", ""},
		{"paused suppresses", gProposal(rb, nil), gSituation(func(s *Situation) { s.Paused = true }), Suppress, "paused", ""},
	})
}

func TestDuplicateGuard(t *testing.T) {
	rb := gRunbook(runbooks.CacheClear, nil)
	runGuardCases(t, DuplicateGuard{}, []guardCase{
		{"free target passes", gProposal(rb, nil), gSituation(nil), Pass, "", ""},
		{"open plan folds", gProposal(rb, nil), gSituation(func(s *Situation) { s.OpenPlan = "p1" }), Duplicate, "open plan p1", "p1"},
		{"cooling target folds", gProposal(rb, nil), gSituation(func(s *Situation) { s.CoolingPlan, s.CoolingUntil = "p0", gNow.Add(time.Minute) }),
			Duplicate, "cooling down until 2026-11-27T03:01:00Z", "p0"},
		{"ended cooldown passes", gProposal(rb, nil), gSituation(func(s *Situation) { s.CoolingPlan, s.CoolingUntil = "p0", gNow }), Pass, "", ""},
	})
}

func TestRateLimitGuard(t *testing.T) {
	rb := gRunbook(runbooks.CacheClear, nil)
	runGuardCases(t, RateLimitGuard{}, []guardCase{
		{"under the limit passes", gProposal(rb, nil), gSituation(func(s *Situation) { s.RateUsed = 2 }), Pass, "", ""},
		{"at the limit suppresses", gProposal(rb, nil), gSituation(func(s *Situation) { s.RateUsed = 3 }), Suppress, "3 of 3 executions", ""},
	})
}

func TestConfidenceGuard(t *testing.T) {
	rb := gRunbook(runbooks.CacheClear, nil)
	runGuardCases(t, ConfidenceGuard{}, []guardCase{
		{"confident event passes", gProposal(rb, nil), gSituation(nil), Pass, "", ""},
		{"at the threshold passes", gProposal(rb, func(p *Proposal) { p.Event.Confidence = 0.8 }), gSituation(nil), Pass, "", ""},
		{"below the threshold asks", gProposal(rb, func(p *Proposal) { p.Event.Confidence = 0.5 }), gSituation(nil), NeedApproval, "confidence 50% is below", ""},
		{"manual asks", gProposal(rb, func(p *Proposal) { p.Manual = true }), gSituation(nil), NeedApproval, "requested by hand", ""},
		{"AI asks", gProposal(rb, func(p *Proposal) { p.AI = true }), gSituation(nil), NeedApproval, "proposed by AI", ""},
	})
}

func TestNeverAutoGuard(t *testing.T) {
	lowRiskMode := gSituation(func(s *Situation) { s.Mode = ModeLowRisk })
	runGuardCases(t, NeverAutoGuard{}, []guardCase{
		{"cache clear passes", gProposal(gRunbook(runbooks.CacheClear, nil), nil), gSituation(nil), Pass, "", ""},
		{"restart asks", gProposal(gRunbook(runbooks.RestartPod, nil), nil), gSituation(nil), NeedApproval, "RESTART_POD) is never run without approval", ""},
		{"failover asks", gProposal(gRunbook(runbooks.Failover, nil), nil), gSituation(nil), NeedApproval, "FAILOVER) is never run", ""},
		{"high risk asks", gProposal(gRunbook(runbooks.CacheClear, func(rb *runbooks.Runbook) { rb.Actions[0].Risk = "high" }), nil), gSituation(nil), NeedApproval, "risk: high", ""},
		{"requiresApproval asks", gProposal(gRunbook(runbooks.CacheClear, func(rb *runbooks.Runbook) { rb.Safety.RequiresApproval = true }), nil), gSituation(nil), NeedApproval, "runbook rb requires approval", ""},
		{"low-risk mode passes a rate limit", gProposal(gRunbook(runbooks.RateLimit, nil), nil), lowRiskMode, Pass, "", ""},
		{"low-risk mode asks for a scale", gProposal(gRunbook(runbooks.ScaleResource, nil), nil), lowRiskMode, NeedApproval, "mode low-risk", ""},
	})
}

func TestBreakerGuard(t *testing.T) {
	rb := gRunbook(runbooks.CacheClear, nil)
	runGuardCases(t, BreakerGuard{}, []guardCase{
		{"closed passes", gProposal(rb, nil), gSituation(nil), Pass, "", ""},
		{"open asks", gProposal(rb, nil), gSituation(func(s *Situation) { s.Breaker = "too much" }), NeedApproval, "breaker is open (too much)", ""},
	})
}

func TestDryRunGuard(t *testing.T) {
	runGuardCases(t, DryRunGuard{}, []guardCase{
		{"full mode passes", gProposal(gRunbook(runbooks.CacheClear, nil), nil), gSituation(nil), Pass, "", ""},
		{"dry-run mode reports", gProposal(gRunbook(runbooks.CacheClear, nil), nil), gSituation(func(s *Situation) { s.Mode = ModeDryRun }), Dry, "mode dry-run", ""},
		{"dry-run runbook reports", gProposal(gRunbook(runbooks.CacheClear, func(rb *runbooks.Runbook) { rb.Safety.DryRun = true }), nil), gSituation(nil), Dry, "runbook rb is in dry-run", ""},
	})
}

// TestJudgeCombinesInOrder: the one place verdicts are combined, and the
// order of the chain that gives the first word to the earliest guard.
func TestJudgeCombinesInOrder(t *testing.T) {
	restart := gRunbook(runbooks.RestartPod, nil)
	cases := []struct {
		name     string
		p        *Proposal
		s        *Situation
		decision Decision
		reasons  string
	}{
		{"everything passes", gProposal(gRunbook(runbooks.CacheClear, nil), nil), gSituation(nil), DecideAuto, "all guardrails passed"},
		{"a changed runbook wins over pause", gProposal(restart, func(p *Proposal) { p.Hash = "h0" }), gSituation(func(s *Situation) { s.Paused = true }), DecideSuppressed, "changed since"},
		{"pause wins over duplicate", gProposal(restart, nil), gSituation(func(s *Situation) { s.Paused, s.OpenPlan = true, "p1" }), DecideSuppressed, "paused"},
		{"duplicate wins over rate limit", gProposal(restart, nil), gSituation(func(s *Situation) { s.OpenPlan, s.RateUsed = "p1", 3 }), DecideDuplicate, "open plan p1"},
		{"approvals accumulate", gProposal(restart, func(p *Proposal) { p.Event.Confidence = 0.1 }), gSituation(func(s *Situation) { s.Breaker = "b" }), DecideApproval,
			"confidence 10% is below the auto-execute threshold 80%; action 1 (RESTART_POD) is never run without approval; the blast-radius breaker is open (b)"},
		{"dry-run keeps the approvals it would need", gProposal(restart, nil), gSituation(func(s *Situation) { s.Mode = ModeDryRun }), DecideDryRun,
			"mode dry-run: nothing is executed; would need approval: action 1 (RESTART_POD) is never run without approval"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := judge(c.p, c.s)
			if got := strings.Join(out.reasons, "; "); out.decision != c.decision || !strings.Contains(got, c.reasons) {
				t.Errorf("got %s %q, want %s containing %q", out.decision, got, c.decision, c.reasons)
			}
		})
	}
}

func TestMayProceed(t *testing.T) {
	cases := []struct {
		name     string
		out      outcome
		approved bool
		refused  bool
	}{
		{"auto runs unattended", outcome{decision: DecideAuto}, false, false},
		{"approval met by a human", outcome{decision: DecideApproval, reasons: []string{"r"}}, true, false},
		{"approval not met by the bot", outcome{decision: DecideApproval, reasons: []string{"r"}}, false, true},
		{"dry-run never runs", outcome{decision: DecideDryRun, reasons: []string{"r"}}, true, true},
		{"suppressed never runs", outcome{decision: DecideSuppressed, reasons: []string{"r"}}, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if why := mayProceed(c.out, c.approved); (why != "") != c.refused {
				t.Errorf("mayProceed = %q, want refused %v", why, c.refused)
			}
		})
	}
}
