package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/recoverbot/recoverbot/runbooks"
)

// Config holds the engine's global settings.
type Config struct {
	Mode            Mode
	AutoThreshold   float64       // confidence at or above which a plan may run unattended
	ApprovalTimeout time.Duration // how long a plan waits for a human
	// DefaultCooldown is how long the same runbook and target stay "duplicate" after
	// a plan closes, when the runbook sets no safety.cooldown: an alert that keeps
	// firing is not planned again before the last action had time to work.
	DefaultCooldown time.Duration
	// LockWait bounds how long an execution waits for another one on the same target.
	LockWait time.Duration
	Clock    Clock
	Log      *slog.Logger
	// Verifier checks runbooks' verify queries (nil: verification is skipped, and
	// the thread says so).
	Verifier Verifier
	// OnRecovery, when set, receives the RECOVERY_SIGNAL of a verified recovery
	// (the outgoing webhook). It must not block.
	OnRecovery func(Event)
	// Observer, when set, is told about events, decisions and moves (metrics).
	Observer Observer
	// Advisor, when set, is the AI planner (Claude); AITimeout bounds each call.
	Advisor   Advisor
	AITimeout time.Duration

	// Storms: a plan's repeat count is announced at most this often, and
	// suppressed plans are summarized in one message at most this often.
	RepeatNoticeEvery    time.Duration
	SuppressSummaryEvery time.Duration
	// The blast-radius breaker trips on more than BlastMaxAuto automatic
	// executions within BlastWindow (all runbooks together), or more than
	// BlastMaxTargets distinct targets failing within BlastTargetWindow.
	BlastMaxAuto      int
	BlastWindow       time.Duration
	BlastMaxTargets   int
	BlastTargetWindow time.Duration
}

// DefaultConfig returns the documented defaults: dry-run mode, 0.80, 5 minutes.
func DefaultConfig() Config {
	return Config{Mode: ModeDryRun, AutoThreshold: 0.80, ApprovalTimeout: 5 * time.Minute,
		DefaultCooldown: 5 * time.Minute, LockWait: 30 * time.Second,
		RepeatNoticeEvery: 5 * time.Second, SuppressSummaryEvery: 10 * time.Second,
		BlastMaxAuto: 10, BlastWindow: time.Hour, BlastMaxTargets: 20, BlastTargetWindow: 5 * time.Minute}
}

// Drivers finds the driver for a rendered action.
type Drivers interface {
	// For returns the driver that performs a, or an error naming the setting
	// that would enable its backend.
	For(a runbooks.Action) (Driver, error)
	// Check validates a rendered action with the rules its driver acts by and
	// returns the target it touches (namespace resolved): the one identity that
	// dedup, cooldown, the per-target lock, the blast radius and every message
	// use. It works whether or not the backend is configured (dry-run plans are
	// checked too). An error is the driver's reason to refuse the action.
	Check(a runbooks.Action) (target string, err error)
}

// Checker is implemented by a driver that owns an action's validation and
// target identity (see Drivers.Check).
type Checker interface {
	Check(a runbooks.Action) (target string, err error)
}

// DriverMap routes by action type.
type DriverMap map[runbooks.ActionType]Driver

// For implements Drivers.
func (m DriverMap) For(a runbooks.Action) (Driver, error) {
	if d, ok := m[a.Type]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("no driver is configured for %s", a.Type)
}

// Check implements Drivers: the action's driver decides.
// TRANSITIONAL (issue #11): drivers that do not implement Checker yet fall
// back to runbooks.Action.TargetKey; that fallback goes when every driver owns
// its identity.
func (m DriverMap) Check(a runbooks.Action) (string, error) {
	if c, ok := m[a.Type].(Checker); ok {
		return c.Check(a)
	}
	return a.TargetKey(), nil
}

// Answer is what the intake tells the sender about an event.
type Answer struct {
	EventID     string   `json:"event_id"`
	PlanID      string   `json:"plan_id,omitempty"`
	Decision    Decision `json:"decision"`
	Reasons     []string `json:"reasons"`
	DuplicateOf string   `json:"duplicate_of,omitempty"`
	// Replayed is true when the event id was accepted before: this is that answer.
	Replayed bool `json:"replayed,omitempty"`
}

type cooldown struct {
	plan  string
	until time.Time
}

// pendingEvent lets a second delivery of an event id wait for the first's answer.
type pendingEvent struct {
	done   chan struct{}
	answer Answer
	err    error
}

// Engine turns events into plans and plans into executions. See doc.go.
type Engine struct {
	cfg     Config
	store   Store
	books   *runbooks.Set
	drivers Drivers
	clock   Clock
	log     *slog.Logger
	ids     IDs
	chain   []Guard
	locks   targetLocks
	work    tracker
	wake    chan struct{} // pokes the outbox courier

	// ctx is the engine's own lifetime: executions run on it, never on a request's.
	ctx    context.Context
	cancel context.CancelFunc

	mu           sync.RWMutex // guards the fields below; Evaluate only reads them
	closing      bool
	paused       bool
	openTargets  map[string]string // target key → open plan id
	cooldowns    map[string]cooldown
	rate         map[string][]time.Time // runbook → execution starts, oldest first
	fingerprints map[string]string      // alert fingerprint → plan awaiting approval
	events       map[string]*pendingEvent
	timers       map[string]func() bool // execution id → stop its timer

	repeats         map[string]int       // open plan → duplicates folded in (this process)
	repeatNoted     map[string]time.Time // open plan → when its count was last announced
	repeatTrailing  map[string]bool      // open plan → a final announcement is scheduled
	suppressedBatch map[string]int       // "runbook: reason" → plans since the last summary
	breaker         breakerState
	failing         map[string]time.Time         // target → last failure, for the blast radius
	approvalWhy     map[*runbooks.Runbook]string // read-only after New
	autos           []time.Time                  // automatic decisions, oldest first
}

// orDefault sets *v to d when it is the zero value.
func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// New builds an engine; call Start before use.
func New(cfg Config, store Store, books *runbooks.Set, drivers Drivers) *Engine {
	d := DefaultConfig()
	orDefault(&cfg.Mode, d.Mode)
	orDefault(&cfg.AutoThreshold, d.AutoThreshold)
	orDefault(&cfg.ApprovalTimeout, d.ApprovalTimeout)
	orDefault(&cfg.LockWait, d.LockWait)
	orDefault(&cfg.RepeatNoticeEvery, d.RepeatNoticeEvery)
	orDefault(&cfg.SuppressSummaryEvery, d.SuppressSummaryEvery)
	orDefault(&cfg.BlastMaxAuto, d.BlastMaxAuto)
	orDefault(&cfg.BlastWindow, d.BlastWindow)
	orDefault(&cfg.BlastMaxTargets, d.BlastMaxTargets)
	orDefault(&cfg.BlastTargetWindow, d.BlastTargetWindow)
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		cfg: cfg, store: store, books: books, drivers: drivers, clock: cfg.Clock,
		log: cfg.Log.With("component", "engine"), ctx: ctx, cancel: cancel,
		wake:        make(chan struct{}, 1),
		openTargets: map[string]string{}, cooldowns: map[string]cooldown{},
		rate: map[string][]time.Time{}, fingerprints: map[string]string{},
		events: map[string]*pendingEvent{}, timers: map[string]func() bool{},
		repeats: map[string]int{}, repeatNoted: map[string]time.Time{}, repeatTrailing: map[string]bool{},
		suppressedBatch: map[string]int{},
		failing:         map[string]time.Time{},
	}
	e.approvalWhy = map[*runbooks.Runbook]string{}
	for _, rb := range books.All() {
		e.approvalWhy[rb] = approvalReasons(rb, cfg.Mode)
	}
	e.locks.init()
	e.work.init()
	e.chain = e.guards()
	return e
}

// Config returns the engine's settings.
func (e *Engine) Config() Config { return e.cfg }

// Runbooks returns the loaded runbooks.
func (e *Engine) Runbooks() *runbooks.Set { return e.books }

// Store returns the engine's store (for read-only queries by the edges).
func (e *Engine) Store() Store { return e.store }

// Start loads what must survive a restart (pause flag, rate windows, cooldowns,
// open plans), marks executions that were running when the process died as
// INTERRUPTED (never re-run on their own), and re-arms approval deadlines and
// scheduled rollbacks.
func (e *Engine) Start(ctx context.Context) error {
	now := e.clock.Now()
	if v, err := e.store.Setting(ctx, settingPaused); err == nil {
		e.paused = string(v) == "true"
	} else if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("load pause flag: %w", err)
	}
	if err := e.loadBreaker(ctx); err != nil {
		return fmt.Errorf("load blast-radius breaker: %w", err)
	}
	stamps, err := e.store.RateStamps(ctx, now.Add(-time.Hour))
	if err != nil {
		return fmt.Errorf("load rate windows: %w", err)
	}
	for _, s := range stamps {
		e.rate[s.Runbook] = append(e.rate[s.Runbook], s.At)
	}
	for _, ts := range e.rate {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	}
	entries, err := e.store.DedupEntries(ctx)
	if err != nil {
		return fmt.Errorf("load dedup keys: %w", err)
	}
	for _, d := range entries {
		if !d.Until.IsZero() && d.Until.After(now) {
			e.cooldowns[d.Key] = cooldown{plan: d.PlanID, until: d.Until}
		}
	}
	open, err := e.store.Open(ctx)
	if err != nil {
		return fmt.Errorf("load open executions: %w", err)
	}
	var timers []func()
	for _, x := range open {
		switch x.State {
		case Verifying:
			// Checking is read-only: resume it for the rest of its window.
			e.resumeVerify(x)
		case Approved, Executing, RollingBack:
			// The process died while this was (about to be) acting. Whether the
			// driver call happened is unknown: report it, never re-run it.
			reason := fmt.Sprintf("recoverbot restarted while this execution was %s: not re-run; check the target and roll back by hand if needed", x.State)
			if _, err := e.transition(ctx, Transition{ID: x.ID, From: []State{x.State}, To: Interrupted,
				Actor: "recoverbot", Reason: reason,
				Outbox: []Notification{{Kind: "state", Text: "⚠️ " + reason, State: Interrupted}},
				Dedup:  e.closeDedup(&x.Plan, now)}); err != nil {
				return fmt.Errorf("mark %s interrupted: %w", x.ID, err)
			}
			e.closeTarget(&x.Plan, now)
		case PendingApproval:
			e.mu.Lock()
			e.openTargets[x.TargetKey] = x.ID
			if x.Event.Fingerprint != "" {
				e.fingerprints[x.Event.Fingerprint] = x.ID
			}
			e.mu.Unlock()
			timers = append(timers, func() { e.arm(x.ID, x.Deadline, e.expire) })
		default:
			if !x.RollbackAt.IsZero() && CanMove(x.State, RollingBack) && x.State != Interrupted {
				timers = append(timers, func() { e.arm(x.ID, x.RollbackAt, e.scheduledRollback) })
			}
		}
	}
	// Armed only once the indexes are complete: a deadline that passed while the
	// bot was down fires at once, in its own goroutine, and must find them whole.
	for _, arm := range timers {
		arm()
	}
	return nil
}

// Close stops intake and timers and waits for running executions to settle until
// ctx ends; whatever is still running then is cancelled (and found INTERRUPTED
// at the next start).
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closing = true
	for id, stop := range e.timers {
		stop()
		delete(e.timers, id)
	}
	e.mu.Unlock()
	err := e.work.wait(ctx)
	e.cancel()
	return err
}

// Idle blocks until no background work (execution, rollback, timer) runs.
func (e *Engine) Idle(ctx context.Context) error { return e.work.wait(ctx) }

// Wake returns a channel that receives when the outbox has something new.
func (e *Engine) Wake() <-chan struct{} { return e.wake }

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Submit decides what to do for one event and persists the decision before it
// returns (the caller answers the sender only after that). An event whose id was
// accepted before gets the first answer back and changes nothing.
func (e *Engine) Submit(ctx context.Context, ev Event) (Answer, error) {
	if err := ValidateEvent(&ev); err != nil {
		return Answer{}, err
	}
	now := e.clock.Now()
	if ev.ID == "" {
		ev.ID = "ev_" + e.ids.New(now)
	}
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return Answer{}, Errorf(CodeUnavailable, "recoverbot is shutting down")
	}
	if p, ok := e.events[ev.ID]; ok {
		// The same id is being decided right now (a sender retrying fast).
		e.mu.Unlock()
		select {
		case <-p.done:
		case <-ctx.Done():
			return Answer{}, Errorf(CodeUnavailable, "timed out waiting for the first delivery of event %s", ev.ID)
		}
		a := p.answer
		a.Replayed = true
		return a, p.err
	}
	p := &pendingEvent{done: make(chan struct{})}
	e.events[ev.ID] = p
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.events, ev.ID)
		e.mu.Unlock()
		close(p.done)
	}()
	p.answer, p.err = e.submit(ctx, ev, now, proposalOpts{})
	if o := e.cfg.Observer; o != nil && p.err == nil && !p.answer.Replayed {
		o.EventReceived(ev.Type, ev.Source)
		o.Decided(p.answer.Decision)
	}
	return p.answer, p.err
}

type proposalOpts struct {
	manual      bool
	ai          *AIInfo
	requestedBy string
	runbook     *runbooks.Runbook // set: skip matching
}

func (e *Engine) submit(ctx context.Context, ev Event, now time.Time, o proposalOpts) (Answer, error) {
	if rec, err := e.store.EventRecord(ctx, ev.ID); err == nil {
		return answerOf(rec, true), nil
	} else if !errors.Is(err, ErrNotFound) {
		return Answer{}, Errorf(CodeUnavailable, "store unavailable").wrap(err)
	}
	d := e.decide(&ev, now, o)
	if err := e.store.Accept(ctx, d.accepted); err != nil {
		e.undoDecision(d)
		if errors.Is(err, ErrDuplicate) {
			if rec, err := e.store.EventRecord(ctx, ev.ID); err == nil {
				return answerOf(rec, true), nil
			}
		}
		return Answer{}, Errorf(CodeUnavailable, "could not persist the decision; retry").wrap(err)
	}
	e.poke()
	if d.tripped {
		if err := e.persistBreaker(ctx); err != nil {
			e.log.Error("persist the blast-radius breaker (it stays open in memory)", "err", err)
		}
	}
	if e.cfg.Advisor != nil && d.accepted.Event.Decision == DecideNoRunbook && !o.manual && o.ai == nil {
		e.goWork(func() { e.adviseUnmatched(ev) })
	}
	if x := d.accepted.Execution; x != nil {
		switch x.State {
		case PendingApproval:
			e.arm(x.ID, x.Deadline, e.expire)
			if e.cfg.Advisor != nil {
				e.goWork(func() { e.explain(x.ID) })
			}
		case Approved:
			e.goWork(func() { e.run(x.ID) })
		}
	}
	return answerOf(d.accepted.Event, false), nil
}

func (err *Error) wrap(cause error) *Error { err.Err = cause; return err }

func answerOf(rec EventRecord, replayed bool) Answer {
	return Answer{EventID: rec.Event.ID, PlanID: rec.PlanID, Decision: rec.Decision,
		Reasons: rec.Reasons, DuplicateOf: rec.DuplicateOf, Replayed: replayed}
}

// decision is an intake decision plus what it changed in memory, so a failed
// commit can take it back.
type decision struct {
	accepted     Accepted
	tripped      bool // the blast-radius breaker opened: persist it
	openedTarget string
	rateRunbook  string
	rateAt       time.Time
	fingerprint  string
	cooled       string
	prevCooldown *cooldown
}

// decide matches, renders and runs the guards. It changes the in-memory indexes
// (open targets, rate reservations) under the engine's mutex so two events for
// the same target can't both get a plan; undoDecision reverts them.
func (e *Engine) decide(ev *Event, now time.Time, o proposalOpts) decision {
	rec := EventRecord{Event: *ev, ReceivedAt: now}
	audit := AuditRecord{At: now, EventID: ev.ID, Actor: actorOf(ev)}
	rb := o.runbook
	if rb == nil {
		rb = e.books.Match(ev)
	}
	if rb == nil {
		rec.Decision = DecideNoRunbook
		rec.Reasons = []string{fmt.Sprintf("no runbook matches this %s event", ev.Type)}
		audit.Reason = rec.Reasons[0]
		return decision{accepted: Accepted{Event: rec, Audit: []AuditRecord{audit}}}
	}
	refuse := func(err error) decision {
		rec.Decision = DecideRefused
		rec.Reasons = []string{fmt.Sprintf("runbook %s: plan refused: %v", rb.Name, err)}
		audit.Reason = rec.Reasons[0]
		return decision{accepted: Accepted{Event: rec, Audit: []AuditRecord{audit},
			Outbox: []Notification{{At: now, Kind: "notice", Text: "🚫 " + rec.Reasons[0]}}}}
	}
	actions, err := runbooks.Render(rb, ev)
	if err != nil {
		return refuse(err)
	}
	query, err := runbooks.RenderQuery(rb, ev)
	if err != nil {
		return refuse(err)
	}
	prop := &Proposal{Event: ev, Runbook: rb, Actions: actions, TargetKey: PlanTargetKey(rb.Name, actions),
		Manual: o.manual, AI: o.ai != nil, Now: now}

	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.judge(prop)
	var notices []Notification
	if out.decision != DecideDuplicate {
		if why := e.checkBlastRadius(prop.TargetKey, out.decision == DecideAuto, now); why != "" {
			notices = append(notices, e.trip(why, now))
			out = e.judge(prop) // the breaker guard now asks for approval
		}
	}
	switch out.decision {
	case DecideDuplicate:
		rec.Decision, rec.Reasons, rec.DuplicateOf = DecideDuplicate, out.reasons, out.ref
		audit.Reason = out.reasons[0]
		acc := Accepted{Event: rec, Audit: []AuditRecord{audit}, RepeatOf: out.ref}
		if n := e.noteRepeat(out.ref, now); n != nil {
			acc.Outbox = []Notification{*n}
		}
		return decision{accepted: acc}
	case DecideSuppressed:
		d := e.suppressed(prop, rec, out.reasons[0], now)
		d.accepted.Outbox = append(d.accepted.Outbox, notices...)
		d.tripped = len(notices) > 0
		return d
	}
	x := &Execution{Plan: Plan{
		ID: e.ids.New(now), EventID: ev.ID, Event: *ev, Runbook: rb.Name, RunbookHash: rb.Hash,
		Actions: actions, Rollback: e.rollbackPlan(actions), TargetKey: prop.TargetKey,
		RequestedBy: o.requestedBy, Safety: rb.Safety, FourEyes: rb.FourEyes,
		EstimatedRecoveryTime: rb.EstimatedRecoveryTime, Verify: rb.Verify, VerifyQuery: query, AI: o.ai,
	}, CreatedAt: now, UpdatedAt: now}
	x.Decision, x.Reasons = out.decision, out.reasons
	d := decision{}
	switch out.decision {
	case DecideDryRun:
		x.State = DryRun
		// A dry-run plan is closed at once, but the same target stays quiet for
		// the cooldown so a storm makes one report, not one per event.
		d.cooled, d.prevCooldown = e.setCooldown(x, now)
	case DecideApproval:
		x.State = PendingApproval
		x.Deadline = now.Add(e.cfg.ApprovalTimeout)
	default:
		x.State = Approved
		x.ApprovedBy = "recoverbot (auto)"
		// Reserve the rate-limit slot now; the stamp is persisted when it starts.
		e.addRate(rb.Name, now)
		d.rateRunbook, d.rateAt = rb.Name, now
		e.autos = append(e.autos, now)
	}
	if !x.State.Terminal() {
		e.openTargets[x.TargetKey] = x.ID
		d.openedTarget = x.TargetKey
		if ev.Fingerprint != "" && x.State == PendingApproval {
			e.fingerprints[ev.Fingerprint] = x.ID
			d.fingerprint = ev.Fingerprint
		}
	}
	rec.Decision, rec.Reasons, rec.PlanID = x.Decision, x.Reasons, x.ID
	audit.ExecutionID, audit.To, audit.Reason = x.ID, x.State, strings.Join(x.Reasons, "; ")
	snap := *x
	audit.Plan = &snap
	d.accepted = Accepted{Event: rec, Execution: x, Audit: []AuditRecord{audit},
		Outbox: append(notices, Notification{At: now, ExecutionID: x.ID, Kind: "plan", State: x.State, Text: e.planText(x)})}
	d.tripped = len(notices) > 0
	if x.State.Terminal() {
		d.accepted.Dedup = &DedupEntry{Key: x.TargetKey, PlanID: x.ID, Until: e.cooldowns[x.TargetKey].until}
	} else {
		d.accepted.Dedup = &DedupEntry{Key: x.TargetKey, PlanID: x.ID}
	}
	return d
}

// suppressed records a SUPPRESSED plan (paused, rate-limited) and cools its
// target so the repeats of a storm fold into it. Called with e.mu held.
func (e *Engine) suppressed(p *Proposal, rec EventRecord, reason string, now time.Time) decision {
	x := &Execution{Plan: Plan{
		ID: e.ids.New(now), EventID: p.Event.ID, Event: *p.Event, Runbook: p.Runbook.Name,
		RunbookHash: p.Runbook.Hash, Actions: p.Actions, TargetKey: p.TargetKey,
		Decision: DecideSuppressed, Reasons: []string{reason}, Safety: p.Runbook.Safety,
	}, State: Suppressed, CreatedAt: now, UpdatedAt: now}
	d := decision{}
	d.cooled, d.prevCooldown = e.setCooldown(x, now)
	rec.Decision, rec.Reasons, rec.PlanID = DecideSuppressed, x.Reasons, x.ID
	snap := *x
	// Not announced one by one: a storm would make one message per target.
	e.noteSuppressed(p.Runbook.Name, reason)
	d.accepted = Accepted{Event: rec, Execution: x,
		Audit: []AuditRecord{{At: now, EventID: p.Event.ID, ExecutionID: x.ID, Actor: actorOf(p.Event), To: Suppressed, Reason: reason, Plan: &snap}},
		Dedup: &DedupEntry{Key: x.TargetKey, PlanID: x.ID, Until: e.cooldowns[x.TargetKey].until},
	}
	return d
}

func (e *Engine) undoDecision(d decision) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if d.openedTarget != "" && d.accepted.Execution != nil && e.openTargets[d.openedTarget] == d.accepted.Execution.ID {
		delete(e.openTargets, d.openedTarget)
	}
	if d.fingerprint != "" {
		delete(e.fingerprints, d.fingerprint)
	}
	if d.rateRunbook != "" {
		e.dropRate(d.rateRunbook, d.rateAt)
	}
	if d.cooled != "" {
		if d.prevCooldown != nil {
			e.cooldowns[d.cooled] = *d.prevCooldown
		} else {
			delete(e.cooldowns, d.cooled)
		}
	}
}

// setCooldown starts the target's cooldown; called with e.mu held. It returns
// the key and the previous entry so a failed commit can restore it.
func (e *Engine) setCooldown(x *Execution, now time.Time) (string, *cooldown) {
	var prev *cooldown
	if c, ok := e.cooldowns[x.TargetKey]; ok {
		prev = &c
	}
	e.cooldowns[x.TargetKey] = cooldown{plan: x.ID, until: now.Add(e.cooldownOf(&x.Plan))}
	return x.TargetKey, prev
}

func (e *Engine) cooldownOf(p *Plan) time.Duration {
	if c := time.Duration(p.Safety.Cooldown); c > 0 {
		return c
	}
	return e.cfg.DefaultCooldown
}

// closeDedup is the dedup entry written when a plan closes: the cooldown starts.
func (e *Engine) closeDedup(p *Plan, now time.Time) *DedupEntry {
	return &DedupEntry{Key: p.TargetKey, PlanID: p.ID, Until: now.Add(e.cooldownOf(p))}
}

// closeTarget frees a plan's target in memory and starts its cooldown.
func (e *Engine) closeTarget(p *Plan, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.openTargets[p.TargetKey] == p.ID {
		delete(e.openTargets, p.TargetKey)
	}
	if p.Event.Fingerprint != "" && e.fingerprints[p.Event.Fingerprint] == p.ID {
		delete(e.fingerprints, p.Event.Fingerprint)
	}
	e.cooldowns[p.TargetKey] = cooldown{plan: p.ID, until: now.Add(e.cooldownOf(p))}
	e.forgetRepeats(p.ID)
}

// rateCount counts execution starts in the hour before now; called with e.mu
// held for reading at least. It does not modify anything (see addRate).
func (e *Engine) rateCount(runbook string, now time.Time) int {
	ts := e.rate[runbook]
	cut := now.Add(-time.Hour)
	return len(ts) - sort.Search(len(ts), func(i int) bool { return ts[i].After(cut) })
}

// addRate records an execution start, dropping starts older than the window;
// called with e.mu held for writing.
func (e *Engine) addRate(runbook string, at time.Time) {
	ts := e.rate[runbook]
	cut := at.Add(-time.Hour)
	i := sort.Search(len(ts), func(i int) bool { return ts[i].After(cut) })
	e.rate[runbook] = append(ts[:copy(ts, ts[i:])], at)
}

func (e *Engine) dropRate(runbook string, at time.Time) {
	ts := e.rate[runbook]
	for i := len(ts) - 1; i >= 0; i-- {
		if ts[i].Equal(at) {
			e.rate[runbook] = append(ts[:i], ts[i+1:]...)
			return
		}
	}
}

// PlanTargetKey is a plan's dedup key: the runbook and what its actions touch.
func PlanTargetKey(runbook string, actions []runbooks.Action) string {
	var b strings.Builder
	b.WriteString(runbook)
	for i := range actions {
		b.WriteByte('|')
		b.WriteString(actions[i].TargetKey())
	}
	return b.String()
}

func actorOf(ev *Event) string {
	if ev.Source == "" {
		return "intake"
	}
	return ev.Source
}

// ValidateEvent refuses an event that can never be planned, with a sentence
// naming the field.
func ValidateEvent(ev *Event) error {
	switch {
	case ev.Type == "":
		return Errorf(CodeInvalid, "type is required")
	case !ev.Type.Valid():
		return Errorf(CodeUnknownType, "unknown event type %q", ev.Type)
	case !ev.Severity.Valid():
		return Errorf(CodeInvalid, "severity must be INFO, WARNING or CRITICAL, not %q", ev.Severity)
	case math.IsNaN(ev.Confidence) || ev.Confidence < 0 || ev.Confidence > 1:
		return Errorf(CodeInvalid, "confidence must be between 0 and 1")
	case len(ev.ID) > 128 || !printable(ev.ID):
		return Errorf(CodeInvalid, "id must be at most 128 printable ASCII characters")
	case ev.ID == "." || ev.ID == "..":
		// Accepted, it could never be read back: GET /v1/events/.. is a path.
		return Errorf(CodeInvalid, "id must not be %q", ev.ID)
	case len(ev.Summary) > MaxTextBytes || !utf8.ValidString(ev.Summary):
		return Errorf(CodeInvalid, "summary must be valid UTF-8 of at most %d bytes (the intake cuts longer text: CutText)", MaxTextBytes)
	}
	return CheckEventBounds(ev) // recovery/eventcaps.go
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// Resolve records a resolved alert and cancels its plan if that still awaits
// approval. A resolved alert never starts a runbook (deleting healthy pods on
// "resolved" is a known failure of naive bots). The same id twice is a no-op.
func (e *Engine) Resolve(ctx context.Context, ev Event) (Answer, error) {
	if len(ev.ID) == 0 || len(ev.ID) > 128 || !printable(ev.ID) {
		return Answer{}, Errorf(CodeInvalid, "a resolved alert needs an id of at most 128 printable characters")
	}
	if rec, err := e.store.EventRecord(ctx, ev.ID); err == nil {
		return answerOf(rec, true), nil
	}
	now := e.clock.Now()
	rec := EventRecord{Event: ev, ReceivedAt: now, Decision: DecideIgnored,
		Reasons: []string{"resolved alert: nothing awaited approval for it"}}
	if ev.Fingerprint != "" {
		id, cancelled, err := e.CancelAlert(ctx, ev.Fingerprint, actorOf(&ev))
		if err != nil {
			return Answer{}, Errorf(CodeUnavailable, "could not cancel the plan of the resolved alert").wrap(err)
		}
		if cancelled {
			rec.Decision, rec.PlanID = DecideCancelled, id
			rec.Reasons = []string{"resolved alert: plan " + id + " cancelled before approval"}
		}
	}
	err := e.store.Accept(ctx, Accepted{Event: rec,
		Audit: []AuditRecord{{At: now, EventID: ev.ID, ExecutionID: rec.PlanID, Actor: actorOf(&ev), Reason: rec.Reasons[0]}}})
	if errors.Is(err, ErrDuplicate) {
		if rec, err := e.store.EventRecord(ctx, ev.ID); err == nil {
			return answerOf(rec, true), nil
		}
	}
	if err != nil {
		return Answer{}, Errorf(CodeUnavailable, "could not persist the resolved alert; retry").wrap(err)
	}
	return answerOf(rec, false), nil
}

// Evaluate runs match, render and the guards for ev without recording anything:
// what Submit would decide right now. /recover dryrun and the benchmarks use it.
// The plan's Rollback is left empty: RollbackPlan describes it on demand.
func (e *Engine) Evaluate(ev *Event) (Plan, error) {
	if err := ValidateEvent(ev); err != nil {
		return Plan{}, err
	}
	now := e.clock.Now()
	rb := e.books.Match(ev)
	if rb == nil {
		return Plan{Decision: DecideNoRunbook, Reasons: []string{fmt.Sprintf("no runbook matches this %s event", ev.Type)}}, nil
	}
	return e.evaluate(ev, rb, now, proposalOpts{})
}

func (e *Engine) evaluate(ev *Event, rb *runbooks.Runbook, now time.Time, o proposalOpts) (Plan, error) {
	actions, err := runbooks.Render(rb, ev)
	if err != nil {
		return Plan{Runbook: rb.Name, Decision: DecideRefused, Reasons: []string{err.Error()}}, nil
	}
	p := Plan{Event: *ev, Runbook: rb.Name, RunbookHash: rb.Hash, Actions: actions,
		TargetKey: PlanTargetKey(rb.Name, actions), Safety: rb.Safety, FourEyes: rb.FourEyes,
		EstimatedRecoveryTime: rb.EstimatedRecoveryTime, RequestedBy: o.requestedBy}
	prop := &Proposal{Event: ev, Runbook: rb, Actions: actions, TargetKey: p.TargetKey, Manual: o.manual, AI: o.ai != nil, Now: now}
	e.mu.RLock()
	out := e.judge(prop)
	e.mu.RUnlock()
	p.Decision, p.Reasons = out.decision, out.reasons
	if out.decision == DecideDuplicate {
		p.ID = out.ref
	}
	return p, nil
}

// outcome is what the guard chain decided.
type outcome struct {
	decision Decision
	reasons  []string
	ref      string // the plan a duplicate folds into
}

// judge runs the guards in order; called with e.mu held. Suppress and Duplicate
// end the chain; approval reasons accumulate; dry-run wins over approval and
// keeps the approvals it would have needed as reasons.
func (e *Engine) judge(p *Proposal) outcome {
	var approval, dry []string
	for _, g := range e.chain {
		v, reason, ref := g.Check(p)
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

// PlanManual makes a plan for a named runbook from chat or the CLI, with the
// given context values. It always waits for approval (whatever the confidence),
// and four-eyes runbooks keep requestedBy from approving it.
func (e *Engine) PlanManual(ctx context.Context, runbook string, values map[string]any, requestedBy string) (Answer, error) {
	rb := e.books.Get(runbook)
	if rb == nil {
		return Answer{}, Errorf(CodeNotFound, "no runbook named %q", runbook)
	}
	ev := manualEvent(rb, values, requestedBy)
	now := e.clock.Now()
	ev.ID = "manual_" + e.ids.New(now)
	return e.submit(ctx, ev, now, proposalOpts{manual: true, requestedBy: requestedBy, runbook: rb})
}

// Preview is the full would-do report for a named runbook with the given
// context values, as PlanManual would make it. It changes nothing.
func (e *Engine) Preview(runbook string, values map[string]any, requestedBy string) (Plan, error) {
	rb := e.books.Get(runbook)
	if rb == nil {
		return Plan{}, Errorf(CodeNotFound, "no runbook named %q", runbook)
	}
	ev := manualEvent(rb, values, requestedBy)
	p, err := e.evaluate(&ev, rb, e.clock.Now(), proposalOpts{manual: true, requestedBy: requestedBy})
	if err == nil && p.Decision != DecideRefused {
		p.Rollback = e.rollbackPlan(p.Actions)
	}
	return p, err
}

// manualEvent is the event behind a plan someone asked for by name: the
// runbook's own event type, full confidence (a person vouches for it), and the
// given values as context, validated by rendering like any event's.
func manualEvent(rb *runbooks.Runbook, values map[string]any, requestedBy string) Event {
	return Event{Type: rb.Trigger.EventType, Severity: runbooks.Warning, Confidence: 1,
		Summary: "requested by " + requestedBy, Context: values, Source: "manual"}
}
