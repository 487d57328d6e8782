package recovery_test

import (
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

func TestStatsFromKnownExecutions(t *testing.T) {
	since, until := t0, t0.Add(24*time.Hour)
	x := func(runbook string, created time.Duration, d recovery.Decision, s recovery.State, verifyAfter time.Duration, false_ bool) recovery.Execution {
		e := recovery.Execution{Plan: recovery.Plan{Runbook: runbook, Decision: d}, State: s, CreatedAt: t0.Add(created), FalseAction: false_}
		if verifyAfter > 0 {
			e.VerifiedAt = e.CreatedAt.Add(verifyAfter)
		}
		return e
	}
	xs := []recovery.Execution{
		x("cache", 0, recovery.DecideAuto, recovery.Verified, 2*time.Minute, false),                  // at the start boundary: in
		x("cache", time.Hour, recovery.DecideAuto, recovery.Verified, 4*time.Minute, false),          // auto-healed
		x("cache", 2*time.Hour, recovery.DecideAuto, recovery.RolledBack, 0, true),                   // rolled back after failed verification
		x("restart", 3*time.Hour, recovery.DecideApproval, recovery.Verified, 12*time.Minute, false), // verified with a human: not auto-healed
		x("restart", 4*time.Hour, recovery.DecideApproval, recovery.Expired, 0, false),               // an incident, never executed
		x("cache", 5*time.Hour, recovery.DecideDryRun, recovery.DryRun, 0, false),                    // a report: not an incident
		x("cache", 24*time.Hour, recovery.DecideAuto, recovery.Verified, time.Minute, false),         // at the end boundary: out
		x("cache", -time.Nanosecond, recovery.DecideAuto, recovery.Verified, time.Minute, false),     // before the window: out
	}
	s := recovery.ComputeStats(xs, since, until)
	if s.Incidents != 5 || s.AutoHealed != 2 || s.Executed != 4 || s.FalseActions != 1 || s.VerifiedCount != 3 {
		t.Fatalf("counts %+v", s)
	}
	if got, want := s.AutoHealRate, 0.4; got != want {
		t.Errorf("auto-heal rate %v, want %v", got, want)
	}
	if got, want := s.MTTR, 6*time.Minute; got != want { // (2+4+12)/3
		t.Errorf("MTTR %v, want %v", got, want)
	}
	if got, want := s.FalseActionRate, 0.25; got != want {
		t.Errorf("false-action rate %v, want %v", got, want)
	}
	if r := s.ByRunbook["cache"]; r.Plans != 3 || r.Verified != 2 || r.RolledBack != 1 || r.False != 1 {
		t.Errorf("cache runbook %+v", r)
	}
	text := s.Text("24h")
	for _, want := range []string{"40.0%", "target 80%+", "6m0s", "target < 10m", "25.0%", "target < 5%"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if empty := recovery.ComputeStats(nil, since, until).Text("24h"); !strings.Contains(empty, "No incidents") {
		t.Errorf("empty stats text: %s", empty)
	}
}
