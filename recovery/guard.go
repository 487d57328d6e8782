package recovery

import (
	"fmt"
	"strings"
	"sync"
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

// Proposal is what guards look at: the event, its runbook and the rendered
// actions. At planning Plan and Hash are empty; when a plan is checked again
// (approval, start of a run, start-up) they name it and the runbook version it
// was made from, and Runbook is the runbook as loaded now (nil: gone).
type Proposal struct {
	Event       *Event
	RunbookName string
	Runbook     *runbooks.Runbook
	Hash        string
	Plan        string
	Actions     []runbooks.Action
	Targets     []string // what each action touches, as its driver names it (Drivers.Check)
	TargetKey   string   // the runbook and Targets: the dedup key
	Manual      bool     // asked for by a person (/recover plan): always needs approval
	AI          bool     // proposed by an AI: always needs approval
}

// Situation is what the guards read besides the proposal: the engine's state
// for the proposal's runbook and target, taken at one instant under the
// engine's lock. Guards are pure functions of (Proposal, Situation).
type Situation struct {
	Now           time.Time
	Mode          Mode
	AutoThreshold float64
	Paused        bool
	Breaker       string    // why the blast-radius breaker is open ("" closed)
	OpenPlan      string    // another open plan on the same target
	CoolingPlan   string    // the plan whose cooldown holds the target
	CoolingUntil  time.Time // zero: no cooldown
	RateUsed      int       // starts (and reservations) of the runbook in the last hour, the plan's own left out
	Freezes       []Freeze  // freezes holding at Now, ad-hoc and recurring (freeze.go)

	approval *approvalMemo // the engine's cache of NeverAutoGuard's reasons (nil: computed each time)
}

// Guard is one guardrail. It returns a verdict and a sentence a human can read;
// for Duplicate, ref is the plan the event duplicates.
type Guard interface {
	Check(p *Proposal, s *Situation) (v Verdict, reason, ref string)
}

// GuardFunc adapts a function to Guard.
type GuardFunc func(p *Proposal, s *Situation) (Verdict, string, string)

// Check implements Guard.
func (f GuardFunc) Check(p *Proposal, s *Situation) (Verdict, string, string) { return f(p, s) }

// Guards is the chain, in the one order every path runs it (planning,
// approval, start of a run, start-up): runbook → paused → duplicate → rate
// limit → confidence → never-auto → freeze → blast-radius breaker → dry-run.
// The runbook guard comes first because the others read the runbook.
var Guards = []Guard{RunbookGuard{}, PausedGuard{}, DuplicateGuard{}, RateLimitGuard{},
	ConfidenceGuard{}, NeverAutoGuard{}, FreezeGuard{}, BreakerGuard{}, DryRunGuard{}}

// RunbookGuard refuses a plan whose runbook is gone or changed since the plan
// was made: what was approved is not what would run.
type RunbookGuard struct{}

// Check implements Guard.
func (RunbookGuard) Check(p *Proposal, _ *Situation) (Verdict, string, string) {
	switch {
	case p.Runbook == nil:
		return Suppress, "runbook " + p.RunbookName + " is no longer loaded", ""
	case p.Hash != "" && p.Hash != p.Runbook.Hash:
		return Suppress, "runbook " + p.RunbookName + " changed since this plan was made", ""
	}
	return Pass, "", ""
}

// PausedGuard suppresses everything while recoverbot is paused.
type PausedGuard struct{}

// Check implements Guard.
func (PausedGuard) Check(_ *Proposal, s *Situation) (Verdict, string, string) {
	if s.Paused {
		return Suppress, "recoverbot is paused: no plan is made until someone resumes it", ""
	}
	return Pass, "", ""
}

// DuplicateGuard folds an event into the open plan on the same target, or
// into the plan whose cooldown still runs (only a plan that changed something
// starts one: Execution.Changed).
type DuplicateGuard struct{}

// Check implements Guard.
func (DuplicateGuard) Check(p *Proposal, s *Situation) (Verdict, string, string) {
	if s.OpenPlan != "" {
		return Duplicate, fmt.Sprintf("duplicate of open plan %s for the same target", s.OpenPlan), s.OpenPlan
	}
	if s.CoolingPlan != "" && s.Now.Before(s.CoolingUntil) {
		return Duplicate, fmt.Sprintf("duplicate of plan %s: the same target is cooling down until %s",
			s.CoolingPlan, s.CoolingUntil.UTC().Format(time.RFC3339)), s.CoolingPlan
	}
	return Pass, "", ""
}

// RateLimitGuard suppresses a runbook that started its hourly maximum.
type RateLimitGuard struct{}

// Check implements Guard.
func (RateLimitGuard) Check(p *Proposal, s *Situation) (Verdict, string, string) {
	if max := p.Runbook.Safety.MaxExecutionsPerHour; s.RateUsed >= max {
		return Suppress, fmt.Sprintf("hourly rate limit reached for %s: %d of %d executions in the last hour",
			p.Runbook.Name, s.RateUsed, max), ""
	}
	return Pass, "", ""
}

// ConfidenceGuard asks a human when the AI or a person proposed the plan, or
// the event's confidence is below the threshold.
type ConfidenceGuard struct{}

// Check implements Guard.
func (ConfidenceGuard) Check(p *Proposal, s *Situation) (Verdict, string, string) {
	switch {
	case p.AI:
		return NeedApproval, "proposed by AI: a human must approve", ""
	case p.Manual:
		return NeedApproval, "requested by hand: a human must approve", ""
	case p.Event.Confidence < s.AutoThreshold:
		return NeedApproval, fmt.Sprintf("confidence %.0f%% is below the auto-execute threshold %.0f%%",
			p.Event.Confidence*100, s.AutoThreshold*100), ""
	}
	return Pass, "", ""
}

// NeverAutoGuard asks a human for runbooks that require it, never-auto and
// high-risk actions, and, in low-risk mode, anything but the low-risk types.
type NeverAutoGuard struct{}

// Check implements Guard.
func (NeverAutoGuard) Check(p *Proposal, s *Situation) (Verdict, string, string) {
	if why := s.approval.reasons(p.Runbook, s.Mode); why != "" {
		return NeedApproval, why, ""
	}
	return Pass, "", ""
}

// BreakerGuard asks a human for every plan while the blast-radius breaker is
// open (storm.go trips it).
type BreakerGuard struct{}

// Check implements Guard.
func (BreakerGuard) Check(_ *Proposal, s *Situation) (Verdict, string, string) {
	if s.Breaker != "" {
		return NeedApproval, "the blast-radius breaker is open (" + s.Breaker + "): every plan needs a human until someone resumes", ""
	}
	return Pass, "", ""
}

// DryRunGuard turns the plan into a would-do report in dry-run mode or for a
// runbook in dry-run.
type DryRunGuard struct{}

// Check implements Guard.
func (DryRunGuard) Check(p *Proposal, s *Situation) (Verdict, string, string) {
	switch {
	case s.Mode == ModeDryRun:
		return Dry, "mode dry-run: nothing is executed", ""
	case p.Runbook.Safety.DryRun:
		return Dry, "runbook " + p.Runbook.Name + " is in dry-run", ""
	}
	return Pass, "", ""
}

// outcome is what the guard chain decided.
type outcome struct {
	decision Decision
	reasons  []string
	ref      string // the plan a duplicate folds into
}

// judge runs the guards in order: the one place their verdicts are combined.
// Suppress and Duplicate end the chain; approval reasons accumulate; dry-run
// wins over approval and keeps the approvals it would have needed as reasons.
func judge(p *Proposal, s *Situation) outcome {
	var approval, dry []string
	for _, g := range Guards {
		v, reason, ref := g.Check(p, s)
		switch v {
		case Duplicate:
			return outcome{DecideDuplicate, []string{reason}, ref}
		case Suppress:
			return outcome{DecideSuppressed, []string{reason}, ""}
		case NeedApproval:
			approval = append(approval, reason)
		case Dry:
			dry = append(dry, reason)
		}
	}
	switch {
	case len(dry) > 0:
		for _, r := range approval {
			dry = append(dry, "would need approval: "+r)
		}
		return outcome{DecideDryRun, dry, ""}
	case len(approval) > 0:
		return outcome{DecideApproval, approval, ""}
	}
	return outcome{DecideAuto, autoReasons[:1:1], ""}
}

// autoReasons is shared by every auto decision (capacity 1: an append copies).
var autoReasons = []string{"all guardrails passed: executing without approval"}

// mayProceed says whether an existing plan may go on (be approved, start)
// under the outcome of running the guards again: an auto plan only if they
// would still run it unattended, a plan a human approved (or is approving)
// if they ask for nothing more than that approval. It returns why not, or "".
func mayProceed(out outcome, approved bool) string {
	switch {
	case out.decision == DecideAuto, out.decision == DecideApproval && approved:
		return ""
	case out.decision == DecideApproval:
		return "it now needs a human's approval: " + strings.Join(out.reasons, "; ")
	}
	return strings.Join(out.reasons, "; ")
}

// neverAuto are action types that always need a human (the playbook's list:
// pod restarts, traffic rerouting).
var neverAuto = map[runbooks.ActionType]bool{runbooks.RestartPod: true, runbooks.Failover: true}

// needsHuman says why action a never runs unattended, or "": its type is on
// the never-auto list, or the runbook marks it risk: high. The never-auto
// guard and the approval of automatic undos (undo.go) both ask it.
func needsHuman(a *runbooks.Action) string {
	switch {
	case neverAuto[a.Type]:
		return "is never run without approval"
	case a.Risk == "high":
		return "is marked risk: high"
	}
	return ""
}

// lowRisk are the action types the low-risk phase lets run unattended.
var lowRisk = map[runbooks.ActionType]bool{runbooks.CacheClear: true, runbooks.RateLimit: true}

// approvalMemo caches the never-auto guard's reasons for one engine: they depend only on a
// loaded (immutable) runbook and the mode, both fixed for the engine's life,
// and the planner asks them for every event. It lives and dies with its engine
// (Situation carries it to the guard), so it holds at most one entry per
// runbook and mode of that engine.
type approvalMemo struct{ m sync.Map } // approvalKey → string

type approvalKey struct {
	rb   *runbooks.Runbook
	mode Mode
}

// reasons says why a runbook's plans always need a human: the runbook asks
// for it, an action is on the never-auto list or marked risk: high, or the
// low-risk phase excludes it ("" when none applies). A nil memo computes.
func (c *approvalMemo) reasons(rb *runbooks.Runbook, mode Mode) string {
	if c == nil {
		return computeApprovalReasons(rb, mode)
	}
	k := approvalKey{rb, mode}
	if why, ok := c.m.Load(k); ok {
		return why.(string)
	}
	why := computeApprovalReasons(rb, mode)
	c.m.Store(k, why)
	return why
}

func computeApprovalReasons(rb *runbooks.Runbook, mode Mode) string {
	var why []string
	if rb.Safety.RequiresApproval {
		why = append(why, "runbook "+rb.Name+" requires approval")
	}
	for i, a := range rb.Actions {
		switch h := needsHuman(&a); {
		case h != "":
			why = append(why, fmt.Sprintf("action %d (%s) %s", i+1, a.Type, h))
		case mode == ModeLowRisk && !lowRisk[a.Type]:
			why = append(why, fmt.Sprintf("mode low-risk: action %d (%s) is not CACHE_CLEAR or RATE_LIMIT", i+1, a.Type))
		}
	}
	return strings.Join(why, "; ")
}
