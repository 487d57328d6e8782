package recovery

import (
	"fmt"
	"strings"
	"time"

	"github.com/recoverbot/recoverbot/runbooks"
)

// Mode is the global rollout phase (the reference playbook's deployment phases).
type Mode string

// Modes.
const (
	ModeDryRun  Mode = "dry-run"  // nothing runs; every plan is a would-do report
	ModeLowRisk Mode = "low-risk" // only CACHE_CLEAR and RATE_LIMIT run unattended
	ModeFull    Mode = "full"     // the runbooks' own safety settings decide
)

// Valid reports whether m is a known mode.
func (m Mode) Valid() bool { return m == ModeDryRun || m == ModeLowRisk || m == ModeFull }

// Verdict is a guard's answer.
type Verdict int

// Verdicts. Suppress and Duplicate end the chain; NeedApproval and Dry collect
// reasons and let the next guards speak.
const (
	Pass Verdict = iota
	Suppress
	Duplicate
	NeedApproval
	Dry
)

// Proposal is what guards look at: the event, its runbook and the rendered actions.
type Proposal struct {
	Event     *Event
	Runbook   *runbooks.Runbook
	Actions   []runbooks.Action
	TargetKey string
	Manual    bool // asked for by a person (/recover plan): always needs approval
	AI        bool // proposed by an AI: always needs approval
	Now       time.Time
}

// Guard is one guardrail. It returns a verdict and a sentence a human can read;
// for Duplicate, ref is the plan the event duplicates.
type Guard interface {
	Check(p *Proposal) (v Verdict, reason, ref string)
}

// GuardFunc adapts a function to Guard.
type GuardFunc func(p *Proposal) (Verdict, string, string)

// Check implements Guard.
func (f GuardFunc) Check(p *Proposal) (Verdict, string, string) { return f(p) }

// neverAuto are action types that always need a human (the playbook's list:
// pod restarts, traffic rerouting).
var neverAuto = map[runbooks.ActionType]bool{runbooks.RestartPod: true, runbooks.Failover: true}

// lowRisk are the action types the low-risk phase lets run unattended.
var lowRisk = map[runbooks.ActionType]bool{runbooks.CacheClear: true, runbooks.RateLimit: true}

// guards builds the chain in ARCHITECTURE.md's order: paused → duplicate → rate
// limit → confidence → never-auto → blast-radius breaker → dry-run. The engine's mutex is held while it
// runs, so the in-memory indexes it reads are consistent.
func (e *Engine) guards() []Guard {
	return []Guard{
		GuardFunc(func(p *Proposal) (Verdict, string, string) {
			if e.paused {
				return Suppress, "recoverbot is paused: no plan is made until someone resumes it", ""
			}
			return Pass, "", ""
		}),
		GuardFunc(func(p *Proposal) (Verdict, string, string) {
			if id, ok := e.openTargets[p.TargetKey]; ok {
				return Duplicate, fmt.Sprintf("duplicate of open plan %s for the same target", id), id
			}
			if c, ok := e.cooldowns[p.TargetKey]; ok && p.Now.Before(c.until) {
				return Duplicate, fmt.Sprintf("duplicate of plan %s: the same target is cooling down until %s",
					c.plan, c.until.UTC().Format(time.RFC3339)), c.plan
			}
			return Pass, "", ""
		}),
		GuardFunc(func(p *Proposal) (Verdict, string, string) {
			max := p.Runbook.Safety.MaxExecutionsPerHour
			if n := e.rateCount(p.Runbook.Name, p.Now); n >= max {
				return Suppress, fmt.Sprintf("hourly rate limit reached for %s: %d of %d executions in the last hour",
					p.Runbook.Name, n, max), ""
			}
			return Pass, "", ""
		}),
		GuardFunc(func(p *Proposal) (Verdict, string, string) {
			switch {
			case p.AI:
				return NeedApproval, "proposed by AI: a human must approve", ""
			case p.Manual:
				return NeedApproval, "requested by hand: a human must approve", ""
			case p.Event.Confidence < e.cfg.AutoThreshold:
				return NeedApproval, fmt.Sprintf("confidence %.0f%% is below the auto-execute threshold %.0f%%",
					p.Event.Confidence*100, e.cfg.AutoThreshold*100), ""
			}
			return Pass, "", ""
		}),
		GuardFunc(func(p *Proposal) (Verdict, string, string) {
			why, ok := e.approvalWhy[p.Runbook]
			if !ok {
				why = approvalReasons(p.Runbook, e.cfg.Mode)
			}
			if why != "" {
				return NeedApproval, why, ""
			}
			return Pass, "", ""
		}),
		GuardFunc(func(p *Proposal) (Verdict, string, string) {
			if e.breaker.Reason != "" {
				return NeedApproval, "the blast-radius breaker is open (" + e.breaker.Reason + "): every plan needs a human until someone resumes", ""
			}
			return Pass, "", ""
		}),
		GuardFunc(func(p *Proposal) (Verdict, string, string) {
			switch {
			case e.cfg.Mode == ModeDryRun:
				return Dry, "mode dry-run: nothing is executed", ""
			case p.Runbook.Safety.DryRun:
				return Dry, "runbook " + p.Runbook.Name + " is in dry-run", ""
			}
			return Pass, "", ""
		}),
	}
}

// approvalReasons says why a runbook's plans always need a human: the runbook
// asks for it, an action is on the never-auto list or marked risk: high, or the
// low-risk phase excludes it. It depends only on the runbook and the mode, so
// the engine computes it once per runbook ("" when none applies).
func approvalReasons(rb *runbooks.Runbook, mode Mode) string {
	var why []string
	if rb.Safety.RequiresApproval {
		why = append(why, "runbook "+rb.Name+" requires approval")
	}
	for i, a := range rb.Actions {
		switch {
		case neverAuto[a.Type]:
			why = append(why, fmt.Sprintf("action %d (%s) is never run without approval", i+1, a.Type))
		case a.Risk == "high":
			why = append(why, fmt.Sprintf("action %d (%s) is marked risk: high", i+1, a.Type))
		case mode == ModeLowRisk && !lowRisk[a.Type]:
			why = append(why, fmt.Sprintf("mode low-risk: action %d (%s) is not CACHE_CLEAR or RATE_LIMIT", i+1, a.Type))
		}
	}
	return strings.Join(why, "; ")
}
