package recovery

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// The playbook's success targets.
const (
	TargetAutoHealRate    = 0.80
	TargetMTTR            = 10 * time.Minute
	TargetFalseActionRate = 0.05
)

// Stats are the success metrics over a window of plans (by creation time,
// Since inclusive, Until exclusive).
type Stats struct {
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Incidents are plans that asked for a change: auto, approval and suppressed
	// ones (dry-run reports and duplicates are not incidents of their own).
	Incidents int `json:"incidents"`
	// AutoHealed are incidents resolved and verified with no human.
	AutoHealed   int     `json:"auto_healed"`
	AutoHealRate float64 `json:"auto_heal_rate"`
	// MTTR is the mean time from event received to verified, over VerifiedCount.
	MTTR          time.Duration `json:"mttr"`
	VerifiedCount int           `json:"verified"`
	// Executed are plans that acted; FalseActions those rolled back after a
	// failed verification or marked false by a person.
	Executed        int                     `json:"executed"`
	FalseActions    int                     `json:"false_actions"`
	FalseActionRate float64                 `json:"false_action_rate"`
	ByRunbook       map[string]RunbookStats `json:"by_runbook"`
}

// RunbookStats counts one runbook's plans.
type RunbookStats struct {
	Plans      int `json:"plans"`
	Executed   int `json:"executed"`
	Verified   int `json:"verified"`
	RolledBack int `json:"rolled_back"`
	False      int `json:"false"`
}

// executed reports whether an execution reached EXECUTING at some point.
func executed(x *Execution) bool {
	switch x.State {
	case Executing, Succeeded, Verifying, Verified, VerifyFailed, Failed, RollingBack, RolledBack, RollbackFailed:
		return true
	case Interrupted:
		return len(x.Steps) > 0
	}
	return false
}

// ComputeStats computes the success metrics of the executions created in
// [since, until).
func ComputeStats(xs []Execution, since, until time.Time) Stats {
	s := Stats{Since: since, Until: until, ByRunbook: map[string]RunbookStats{}}
	var ttr time.Duration
	for i := range xs {
		x := &xs[i]
		if x.CreatedAt.Before(since) || !x.CreatedAt.Before(until) {
			continue
		}
		switch x.Decision {
		case DecideAuto, DecideApproval, DecideSuppressed:
		default:
			continue
		}
		rs := s.ByRunbook[x.Runbook]
		rs.Plans++
		s.Incidents++
		if executed(x) {
			s.Executed++
			rs.Executed++
		}
		if !x.VerifiedAt.IsZero() {
			s.VerifiedCount++
			rs.Verified++
			ttr += x.VerifiedAt.Sub(x.CreatedAt)
			if x.Decision == DecideAuto && !x.FalseAction {
				s.AutoHealed++
			}
		}
		if x.State == RolledBack || x.State == RollbackFailed {
			rs.RolledBack++
		}
		if x.FalseAction {
			s.FalseActions++
			rs.False++
		}
		s.ByRunbook[x.Runbook] = rs
	}
	if s.Incidents > 0 {
		s.AutoHealRate = float64(s.AutoHealed) / float64(s.Incidents)
	}
	if s.VerifiedCount > 0 {
		s.MTTR = ttr / time.Duration(s.VerifiedCount)
	}
	if s.Executed > 0 {
		s.FalseActionRate = float64(s.FalseActions) / float64(s.Executed)
	}
	return s
}

// Runbooks returns the runbook names in the stats, sorted.
func (s Stats) Runbooks() []string {
	out := make([]string, 0, len(s.ByRunbook))
	for k := range s.ByRunbook {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Text renders the stats beside their targets, for the CLI and Slack.
func (s Stats) Text(window string) string {
	mark := func(ok bool) string {
		if ok {
			return "✅"
		}
		return "❌"
	}
	var b []byte
	b = fmt.Appendf(b, "Success metrics, last %s (%s → %s)\n", window, s.Since.UTC().Format(time.RFC3339), s.Until.UTC().Format(time.RFC3339))
	if s.Incidents == 0 {
		return string(b) + "No incidents in this window yet.\n"
	}
	b = fmt.Appendf(b, "auto-heal rate   %5.1f%%  (%d of %d incidents)   target 80%%+   %s\n",
		s.AutoHealRate*100, s.AutoHealed, s.Incidents, mark(s.AutoHealRate >= TargetAutoHealRate))
	if s.VerifiedCount > 0 {
		b = fmt.Appendf(b, "MTTR             %s  (over %d verified)   target < 10m   %s\n",
			s.MTTR.Round(time.Second), s.VerifiedCount, mark(s.MTTR < TargetMTTR))
	} else {
		b = fmt.Appendf(b, "MTTR             n/a  (nothing verified yet)   target < 10m\n")
	}
	b = fmt.Appendf(b, "false actions    %5.1f%%  (%d of %d executions)   target < 5%%   %s\n",
		s.FalseActionRate*100, s.FalseActions, s.Executed, mark(s.FalseActionRate < TargetFalseActionRate))
	b = fmt.Appendf(b, "by runbook (plans / executed / verified / rolled back / false):\n")
	for _, name := range s.Runbooks() {
		r := s.ByRunbook[name]
		b = fmt.Appendf(b, "  %-32s %d / %d / %d / %d / %d\n", name, r.Plans, r.Executed, r.Verified, r.RolledBack, r.False)
	}
	return string(b)
}

// Stats computes the success metrics of the plans created in the window before
// now (at most the 1,000 newest: the store's page size).
func (e *Engine) Stats(ctx context.Context, window time.Duration) (Stats, error) {
	now := e.clock.Now()
	since := now.Add(-window)
	xs, err := e.store.Executions(ctx, ExecutionFilter{Since: since, Limit: 1000})
	if err != nil {
		return Stats{}, err
	}
	return ComputeStats(xs, since, now.Add(time.Nanosecond)), nil
}
