package recovery

import (
	"strings"
	"time"
)

// Intake decisions: what Submit, PlanManual and the AI commit for one event.
// The plan comes from the planner (planner.go); this file turns its decision
// into the records to commit and the in-memory reservations that go with them.

// decision is an intake decision plus what it reserved in memory, so a commit
// that failed can take it back (undoDecision). A commit that failed wrote
// nothing: the store answers a write it took with what the commit did.
//
// The blast windows, the breaker's trip and the repeat count are reserved at
// the decision, under the engine's lock, like the target and the rate slot:
// applied only after the commit, two concurrent decisions could each miss the
// other and together pass the breaker's limit. A decision never committed
// takes them back, so it trips nothing and counts nowhere. The suppressed
// summary only announces, so it is queued after the commit (submit).
type decision struct {
	accepted    Accepted
	trip        string // the blast-radius breaker opens with this plan: persist it
	prevBreaker breakerState
	blast       *blastMark // what the plan added to the blast windows
	opened      string     // target key the plan now holds
	rate        string     // runbook whose hourly slot the plan holds
	fingerprint string
	reported    string  // target key whose would-do report the plan now is
	prevReport  *report // the report it replaced
	repeat      *repeatMark
}

// decide plans ev and reserves, under the engine's mutex, what the plan holds
// (its target, its rate slot), so two events for one target can't both get a
// plan.
func (e *Engine) decide(ev *Event, now time.Time, o proposalOpts) decision {
	rec := EventRecord{Event: *ev, ReceivedAt: now}
	audit := AuditRecord{At: now, EventID: ev.ID, Actor: actorOf(ev)}
	d := e.draft(ev, o)
	if d.prop == nil {
		rec.Decision, rec.Reasons = d.decision, []string{d.reason}
		audit.Reason = d.reason
		acc := Accepted{Event: rec, Audit: []AuditRecord{audit}}
		if d.decision == DecideRefused {
			acc.Outbox = []Notification{{At: now, Kind: NoteNotice, Text: "🚫 " + d.reason}}
		}
		return decision{accepted: acc}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	out, trip := e.judgeNew(d.prop, now)
	if out.decision == DecideDuplicate {
		rec.Decision, rec.Reasons, rec.DuplicateOf = DecideDuplicate, out.reasons, out.ref
		audit.Reason = out.reasons[0]
		acc := Accepted{Event: rec, Audit: []AuditRecord{audit}, RepeatOf: out.ref}
		n, mark := e.noteRepeat(out.ref, now)
		if n != nil {
			acc.Outbox = []Notification{*n}
		}
		return decision{accepted: acc, repeat: mark}
	}
	var notices []Notification
	var blast *blastMark
	if e.breaker.Reason == "" {
		blast = e.blast.record(d.prop.Targets, out.decision == DecideAuto, now, &e.cfg)
	}
	prevBreaker := e.breaker
	if trip != "" {
		notices = append(notices, e.trip(trip, now))
	}
	x := &Execution{Plan: e.newPlan(d, out, o), CreatedAt: now, UpdatedAt: now}
	x.ID, x.Rollback = e.ids.New(now), rollbackPlan(x.Actions, x.Targets)
	dec := e.reserve(x, now)
	dec.trip, dec.prevBreaker, dec.blast = trip, prevBreaker, blast
	rec.Decision, rec.Reasons, rec.PlanID = x.Decision, x.Reasons, x.ID
	audit.ExecutionID, audit.To, audit.Reason = x.ID, x.State, strings.Join(x.Reasons, "; ")
	if x.State == DryRun && e.silences(x) {
		audit.Reason += "; no Alertmanager silence: a dry run changes nothing"
	}
	snap := *x
	audit.Plan = &snap
	dec.accepted = Accepted{Event: rec, Execution: x, Audit: []AuditRecord{audit}, Outbox: notices}
	if x.State != Suppressed {
		// A suppressed plan is not announced one by one (a storm would make
		// one message per target): submit queues it for the summary once committed.
		dec.accepted.Outbox = append(dec.accepted.Outbox, Notification{At: now, ExecutionID: x.ID, Kind: NotePlan, State: x.State, Text: e.planText(x)})
	}
	if !x.State.Terminal() {
		dec.accepted.Dedup = &DedupEntry{Key: x.TargetKey, PlanID: x.ID}
	}
	return dec
}

// reserve sets x's state from its decision and takes, in memory, what that
// state holds; called with e.mu held.
func (e *Engine) reserve(x *Execution, now time.Time) decision {
	var d decision
	switch x.Decision {
	case DecideDryRun, DecideSuppressed:
		// A would-do report: it changed nothing, so it starts no cooldown; the
		// repeats of a storm fold into it while the guards decide the same.
		x.State = DryRun
		if x.Decision == DecideSuppressed {
			x.State = Suppressed
		}
		d.reported = x.TargetKey
		if r, ok := e.reports[x.TargetKey]; ok {
			d.prevReport = &r
			e.forgetRepeats(r.plan) // the report it replaces folds nothing more
		}
		e.reports[x.TargetKey] = report{plan: x.ID, decision: x.Decision, until: now.Add(e.cooldownOf(&x.Plan))}
		return d
	case DecideApproval:
		x.State = PendingApproval
		x.Deadline = now.Add(e.cfg.ApprovalTimeout)
	default:
		x.State = Approved
		x.ApprovedBy = ActorBotAuto
		// The hourly slot is held from the decision; the stamp is persisted when it starts.
		e.rate.reserve(x.Runbook, x.ID, now)
		d.rate = x.Runbook
	}
	e.openTargets[x.TargetKey] = x.ID
	d.opened = x.TargetKey
	if fp := x.Event.Fingerprint; fp != "" && x.State == PendingApproval {
		e.fingerprints[fp] = x.ID
		d.fingerprint = fp
	}
	return d
}

// newPlan is the plan of a draft and its outcome: Submit commits it, Evaluate
// and Preview show it, so they show the same. Its Rollback is left to the
// callers that show or keep it (Evaluate, the benchmarks' loop, does not).
func (e *Engine) newPlan(d draft, out outcome, o proposalOpts) Plan {
	p, rb := d.prop, d.prop.Runbook
	return Plan{EventID: p.Event.ID, Event: *p.Event, Runbook: rb.Name, RunbookHash: rb.Hash,
		Actions: p.Actions, Targets: p.Targets, TargetKey: p.TargetKey,
		Decision: out.decision, Reasons: out.reasons, RequestedBy: o.requestedBy, Manual: o.manual, Safety: rb.Safety,
		FourEyes: rb.FourEyes, EstimatedRecoveryTime: rb.EstimatedRecoveryTime, Verify: rb.Verify,
		VerifyQuery: d.query, AI: o.ai}
}

// undoDecision takes back what decide reserved when its commit failed: a
// decision never committed holds no target and slot, counts in no window,
// trips no breaker and adds no repeat.
func (e *Engine) undoDecision(d decision) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if d.repeat != nil {
		e.unnoteRepeat(d.repeat)
	}
	x := d.accepted.Execution
	if x == nil {
		return
	}
	if d.trip != "" && e.breaker.Reason == d.trip && e.breaker.At.Equal(x.CreatedAt) {
		e.breaker = d.prevBreaker // unless a resume or another trip came since
	}
	if d.blast != nil {
		e.blast.unrecord(d.blast)
	}
	if d.opened != "" && e.openTargets[d.opened] == x.ID {
		delete(e.openTargets, d.opened)
	}
	if d.fingerprint != "" && e.fingerprints[d.fingerprint] == x.ID {
		delete(e.fingerprints, d.fingerprint)
	}
	if d.rate != "" {
		e.rate.drop(d.rate, x.ID)
	}
	if d.reported != "" && e.reports[d.reported].plan == x.ID {
		if d.prevReport != nil {
			e.reports[d.reported] = *d.prevReport
		} else {
			delete(e.reports, d.reported)
		}
	}
}

// evaluate is what decide would decide for ev right now, changing nothing.
func (e *Engine) evaluate(ev *Event, o proposalOpts) Plan {
	d := e.draft(ev, o)
	if d.prop == nil {
		return Plan{Event: *ev, Runbook: d.runbook, Decision: d.decision, Reasons: []string{d.reason}}
	}
	e.mu.RLock()
	out, _ := e.judgeNew(d.prop, e.clock.Now())
	e.mu.RUnlock()
	p := e.newPlan(d, out, o)
	p.Rollback = rollbackPlan(p.Actions, p.Targets)
	if out.decision == DecideDuplicate {
		p.ID = out.ref
	}
	return p
}

// Evaluate is what Submit would decide for ev right now, recording nothing:
// the same planner, guards, breaker check, folding and rollback plan.
// /recover dryrun and the benchmarks use it.
func (e *Engine) Evaluate(ev *Event) (Plan, error) {
	if err := ValidateEvent(ev); err != nil {
		return Plan{}, err
	}
	return e.evaluate(ev, proposalOpts{}), nil
}

func (e *Engine) cooldownOf(p *Plan) time.Duration {
	if c := time.Duration(p.Safety.Cooldown); c > 0 {
		return c
	}
	return e.cfg.DefaultCooldown
}

// closeDedup is the dedup entry written when a plan closes: its cooldown
// starts if it changed something (Execution.Changed), else its key is freed.
func (e *Engine) closeDedup(x *Execution, now time.Time) *DedupEntry {
	if !x.Changed() {
		return &DedupEntry{Key: x.TargetKey}
	}
	return &DedupEntry{Key: x.TargetKey, PlanID: x.ID, Until: now.Add(e.cooldownOf(&x.Plan))}
}

// closeTarget frees a closed plan's target in memory and, if it changed
// something, starts its cooldown (closeDedup persists the same).
func (e *Engine) closeTarget(x *Execution, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.openTargets[x.TargetKey] == x.ID {
		delete(e.openTargets, x.TargetKey)
	}
	if fp := x.Event.Fingerprint; fp != "" && e.fingerprints[fp] == x.ID {
		delete(e.fingerprints, fp)
	}
	if x.Changed() {
		e.cooldowns[x.TargetKey] = cooldown{plan: x.ID, until: now.Add(e.cooldownOf(&x.Plan))}
	}
	e.forgetRepeats(x.ID)
}
