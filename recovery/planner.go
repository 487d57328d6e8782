package recovery

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/recoverbot/recoverbot/runbooks"
)

// The planner: every plan, whoever asks for it (an event, Alertmanager,
// /recover plan, /recover dryrun, a preview, the AI), is built here — matched,
// rendered, each action checked by its driver — and judged by the one guard
// chain (guard.go) against the engine's state at that instant (situation).

// proposalOpts says who asked for a plan besides an event.
type proposalOpts struct {
	manual      bool
	ai          *AIInfo
	requestedBy string
	runbook     *runbooks.Runbook // set: skip matching
}

// draft is a plan before the guards; prop is nil when no plan can be made,
// and decision (no runbook, refused) and reason say why.
type draft struct {
	prop     *Proposal
	runbook  string
	query    string
	decision Decision
	reason   string
}

// draft matches, renders and checks the actions with their drivers. A plan a
// driver would refuse is refused here with the driver's reason: it is never
// executed and starts no cooldown.
func (e *Engine) draft(ev *Event, o proposalOpts) draft {
	rb := o.runbook
	if rb == nil {
		rb = e.books.Match(ev)
	}
	if rb == nil {
		return draft{decision: DecideNoRunbook, reason: fmt.Sprintf("no runbook matches this %s event", ev.Type)}
	}
	refuse := func(err error) draft {
		return draft{runbook: rb.Name, decision: DecideRefused, reason: fmt.Sprintf("runbook %s: plan refused: %v", rb.Name, err)}
	}
	actions, err := runbooks.Render(rb, ev)
	if err != nil {
		return refuse(err)
	}
	query, err := runbooks.RenderQuery(rb, ev)
	if err != nil {
		return refuse(err)
	}
	targets, err := e.targets(actions)
	if err != nil {
		return refuse(err)
	}
	return draft{runbook: rb.Name, query: query, prop: &Proposal{Event: ev, RunbookName: rb.Name, Runbook: rb, Actions: actions,
		Targets: targets, TargetKey: PlanTargetKey(rb.Name, targets), Manual: o.manual, AI: o.ai != nil}}
}

// targets asks each action's driver which target it touches (Drivers.Check):
// the one identity of dedup, cooldown, locks and the blast radius.
func (e *Engine) targets(actions []runbooks.Action) ([]string, error) {
	out := make([]string, len(actions))
	for i, a := range actions {
		t, err := e.drivers.Check(a)
		if err != nil {
			return nil, fmt.Errorf("action %d (%s): %w", i+1, a.Type, err)
		}
		out[i] = t
	}
	return out, nil
}

// lockKeys are the per-target lock keys of a plan: the targets its drivers
// named at plan time. A plan stored before plans recorded them asks the
// drivers now; an action they no longer accept locks its whole action type:
// too much, never too little.
func (e *Engine) lockKeys(p *Plan) []string {
	if len(p.Targets) == len(p.Actions) {
		return p.Targets
	}
	keys := make([]string, len(p.Actions))
	for i, a := range p.Actions {
		t, err := e.drivers.Check(a)
		if err != nil {
			t = "type:" + string(a.Type)
		}
		keys[i] = t
	}
	return keys
}

// PlanTargetKey is a plan's dedup key: the runbook and the targets its drivers
// name for its actions.
func PlanTargetKey(runbook string, targets []string) string {
	return runbook + "|" + strings.Join(targets, "|")
}

// situation is the engine's state for p, taken with e.mu held (read at least).
func (e *Engine) situation(p *Proposal, now time.Time) *Situation {
	s := &Situation{Now: now, Mode: e.cfg.Mode, AutoThreshold: e.cfg.AutoThreshold,
		Paused: e.paused, Breaker: e.breaker.Reason, Freezes: e.activeFreezes(now), approval: &e.approval}
	if id, ok := e.openTargets[p.TargetKey]; ok && id != p.Plan {
		s.OpenPlan = id
	}
	if c, ok := e.cooldowns[p.TargetKey]; ok && c.plan != p.Plan {
		s.CoolingPlan, s.CoolingUntil = c.plan, c.until
	}
	s.RateUsed = e.rate.count(p.RunbookName, p.Plan, now)
	return s
}

// judgeNew decides for a new proposal, with e.mu held: the guard chain, then
// the breaker's trip check (trip: the reason this plan opens it), then the
// folding of a repeated would-do report. It changes nothing, so /recover dryrun
// shows exactly what Submit decides.
func (e *Engine) judgeNew(p *Proposal, now time.Time) (out outcome, trip string) {
	s := e.situation(p, now)
	out = judge(p, s)
	if out.decision == DecideDuplicate {
		return out, ""
	}
	if s.Breaker == "" {
		if why := e.blast.wouldTrip(p.Targets, out.decision == DecideAuto, now, &e.cfg); why != "" {
			s.Breaker, trip = why, why
			out = judge(p, s)
		}
	}
	return e.foldReport(p, out, now), trip
}

// report is a recent would-do report (a DRY_RUN or SUPPRESSED plan) on a
// target.
type report struct {
	plan     string
	decision Decision
	until    time.Time
}

// foldReport folds an event into the recent would-do report on its target when
// the guards decide the same again: a storm in dry-run (or paused, or
// rate-limited) makes one report, not one per event. It is not a cooldown:
// nothing changed, so as soon as the guards decide otherwise (the mode became
// full, the pause was lifted) a real plan is made at once.
func (e *Engine) foldReport(p *Proposal, out outcome, now time.Time) outcome {
	r, ok := e.reports[p.TargetKey]
	if !ok || r.decision != out.decision || !now.Before(r.until) {
		return out
	}
	return outcome{DecideDuplicate, []string{fmt.Sprintf("repeat of plan %s (%s): folded into its report; nothing changed, so a later event that may run is planned anew",
		r.plan, strings.Join(out.reasons, "; "))}, r.plan}
}

// recheck runs the guards again for an existing plan, with e.mu held: the
// current mode, runbook (still loaded, same hash), pause, breaker and rate
// limit. approved says a human approved it (or is approving it now). It
// returns why the plan may not go on, or "".
func (e *Engine) recheck(x *Execution, approved bool, now time.Time) string {
	p := e.proposalOf(x)
	return mayProceed(judge(p, e.situation(p, now)), approved)
}

// proposalOf is an existing plan as the guards see it, with the runbook as
// loaded now (nil: gone); called with e.mu held.
func (e *Engine) proposalOf(x *Execution) *Proposal {
	return &Proposal{Event: &x.Event, RunbookName: x.Runbook, Runbook: e.books.Get(x.Runbook), Hash: x.RunbookHash,
		Plan: x.ID, Actions: x.Actions, Targets: x.Targets, TargetKey: x.TargetKey, Manual: x.Manual, AI: x.AI != nil}
}

// rateWindows are the hourly rate limit's execution starts per runbook, oldest
// first; a plan that will start unattended holds its slot from the decision.
type rateWindows map[string][]rateMark

type rateMark struct {
	at   time.Time
	plan string
}

// count counts the starts in the hour before now, plan's own left out.
func (w rateWindows) count(runbook, plan string, now time.Time) int {
	ms := w[runbook]
	cut := now.Add(-time.Hour)
	n := 0
	for i := sort.Search(len(ms), func(i int) bool { return ms[i].at.After(cut) }); i < len(ms); i++ {
		if plan == "" || ms[i].plan != plan {
			n++
		}
	}
	return n
}

// reserve records plan's start at at (once per plan), dropping marks older
// than the window. It reports whether it added one.
func (w rateWindows) reserve(runbook, plan string, at time.Time) bool {
	ms := w[runbook]
	for _, m := range ms {
		if m.plan == plan {
			return false
		}
	}
	cut := at.Add(-time.Hour)
	i := sort.Search(len(ms), func(i int) bool { return ms[i].at.After(cut) })
	ms = append(ms[:copy(ms, ms[i:])], rateMark{at, plan})
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].at.Before(ms[j].at) })
	w[runbook] = ms
	return true
}

// drop forgets plan's mark (its reservation was taken back).
func (w rateWindows) drop(runbook, plan string) {
	ms := w[runbook]
	for i := range ms {
		if ms[i].plan == plan {
			w[runbook] = append(ms[:i], ms[i+1:]...)
			return
		}
	}
}
