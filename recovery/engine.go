package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

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
	AIBudget  AIBudget // zero fields: DefaultAIBudget's (aibudget.go)
	// Silencer, when set, silences an alert in Alertmanager while its
	// execution runs, for at most SilenceMax (silence.go).
	Silencer   Silencer
	SilenceMax time.Duration
	// Windows are the recurring freezes of the config file (freeze.go).
	Windows []FreezeWindow

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

	// LeaseDeadline, when set, is how long this replica surely still leads
	// (an election's local lease deadline): every driver call runs with a
	// deadline no later than it, and a call whose deadline has passed is
	// refused right before acting (leaseCtx). nil: leadership is permanent
	// (bbolt's file lock), no deadline.
	LeaseDeadline func() time.Time
	// LeaseLost, when set, is called when a driver call was refused or cut
	// off because the lease ran out (leaseLost): the engine has stopped
	// acting for that execution, and the replica must give up leadership.
	LeaseLost func(error)
}

// DefaultConfig returns the documented defaults: dry-run mode, 0.80, 5 minutes.
func DefaultConfig() Config {
	return Config{Mode: ModeDryRun, AutoThreshold: 0.80, ApprovalTimeout: 5 * time.Minute,
		DefaultCooldown: 5 * time.Minute, LockWait: 30 * time.Second, SilenceMax: DefaultSilenceMax,
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
func (m DriverMap) Check(a runbooks.Action) (string, error) {
	d, err := m.For(a)
	if err != nil {
		return "", err
	}
	return d.Check(a)
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
	locks   targetLocks
	work    tracker
	wake    chan struct{} // pokes the outbox courier
	aiGate  *aiGate       // bounds AI calls (aibudget.go)
	silence silenceWork   // expiries in flight (silence.go)

	// ctx is the engine's own lifetime: executions run on it, never on a request's.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards the fields below: the state the guards read (situation) and
	// the reservations a decision takes. Evaluate only reads them.
	mu           sync.RWMutex
	closing      bool
	paused       bool
	breaker      breakerState
	openTargets  map[string]string   // target key → open plan id
	cooldowns    map[string]cooldown // target key → the changing plan whose cooldown runs
	reports      map[string]report   // target key → recent would-do report (planner.go)
	rate         rateWindows
	blast        blastWindows
	fingerprints map[string]string // alert fingerprint → plan awaiting approval
	events       map[string]*pendingEvent
	timers       map[string]func() bool // execution id → stop its timer
	approval     approvalMemo           // NeverAutoGuard's reasons per runbook (guard.go)
	freezes      freezeList             // ad-hoc freezes as stored (freeze.go)

	repeats         map[string]int       // open plan → duplicates folded in (this process)
	repeatNoted     map[string]time.Time // open plan → when its count was last announced
	repeatTrailing  map[string]bool      // open plan → a final announcement is scheduled
	suppressedBatch suppressedBatch      // plans suppressed since the last summary (storm.go)

	freezeMu sync.Mutex // serializes changes of the freeze document (read, change, write)
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
	orDefault(&cfg.SilenceMax, d.SilenceMax)
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
		openTargets: map[string]string{}, cooldowns: map[string]cooldown{}, reports: map[string]report{},
		rate: rateWindows{}, blast: blastWindows{failing: map[string]time.Time{}}, fingerprints: map[string]string{},
		events: map[string]*pendingEvent{}, timers: map[string]func() bool{},
		repeats: map[string]int{}, repeatNoted: map[string]time.Time{}, repeatTrailing: map[string]bool{},
		suppressedBatch: suppressedBatch{counts: map[string]int{}},
	}
	e.aiGate = newAIGate(cfg.AIBudget)
	e.silence.expiring = map[string]bool{}
	e.locks.init()
	e.work.init()
	return e
}

// Config returns the engine's settings.
func (e *Engine) Config() Config { return e.cfg }

// Runbooks returns the loaded runbooks.
func (e *Engine) Runbooks() *runbooks.Set { return e.books }

// Store returns the engine's store (for read-only queries by the edges).
func (e *Engine) Store() Store { return e.store }

// Start loads what must survive a restart or a takeover (pause flag, freezes,
// breaker, rate and blast-radius windows, cooldowns, open plans), marks
// executions that were running when the process died as INTERRUPTED (never
// re-run on their own), starts APPROVED plans that had not started (through
// admit, as any run start), runs the guards again on plans awaiting approval
// (the mode or a runbook may have changed: the thread says so), and re-arms
// approval deadlines and scheduled rollbacks.
func (e *Engine) Start(ctx context.Context) error {
	now := e.clock.Now()
	if err := e.loadState(ctx, now); err != nil {
		return err
	}
	open, err := e.store.Open(ctx)
	if err != nil {
		return fmt.Errorf("load open executions: %w", err)
	}
	var timers []func()
	var pending []Execution
	var approved []string
	var undos []Execution
	for _, x := range open {
		switch x.State {
		case Verifying:
			// Checking is read-only: resume it for the rest of its window.
			e.resumeVerify(x)
		case Approved:
			// Approved but not started: no driver was called (a run persists
			// EXECUTING before its first call), so it starts now through the
			// same admit and guards as any run start; the store's compare-and-set
			// (fenced, under an election) lets only one replica start it.
			e.mu.Lock()
			e.openTargets[x.TargetKey] = x.ID
			e.mu.Unlock()
			approved = append(approved, x.ID)
		case RollingBack:
			// The previous leader died, or its lease ran out, while undoing.
			// An undo no call of which may have acted is finished here, once;
			// one whose driver call may have acted is reported, never re-run.
			if why := e.resumableUndo(&x, now); why != "" {
				if err := e.interruptUndo(ctx, &x, now, why); err != nil {
					return err
				}
				break
			}
			e.mu.Lock()
			e.openTargets[x.TargetKey] = x.ID
			e.mu.Unlock()
			undos = append(undos, x)
		case Executing:
			// The process died (or its lease ran out) while this was acting.
			// Whether the driver call happened may be unknown: report it,
			// never re-run it.
			if err := e.interrupt(ctx, &x, now); err != nil {
				return err
			}
		case PendingApproval:
			e.mu.Lock()
			e.openTargets[x.TargetKey] = x.ID
			if x.Event.Fingerprint != "" {
				e.fingerprints[x.Event.Fingerprint] = x.ID
			}
			e.mu.Unlock()
			pending = append(pending, x)
			timers = append(timers, func() { e.arm(x.ID, x.Deadline, e.expire) })
		default:
			if !x.RollbackAt.IsZero() && CanMove(x.State, RollingBack) && x.State != Interrupted {
				timers = append(timers, func() { e.arm(x.ID, x.RollbackAt, e.scheduledRollback) })
			}
		}
		if x.Silence.pending() && x.State != Verifying {
			// Only a verification resumes: whatever else held a silence
			// ended, or was interrupted, while the bot was down.
			e.endSilence(x.ID, true)
		}
	}
	for i := range pending {
		e.warnIfRefused(ctx, &pending[i], now)
	}
	// Armed only once the indexes are complete: a deadline that passed while the
	// bot was down fires at once, in its own goroutine, and must find them whole.
	for _, arm := range timers {
		arm()
	}
	for _, id := range approved {
		e.goWork(func() { e.run(id) })
	}
	for _, x := range undos {
		e.goWork(func() { e.undoAll(x.ID, x.Actions, x.Error, false) })
	}
	return nil
}

// resumableUndo says why the undo of an execution found ROLLING_BACK at
// start-up may not be finished by this replica ("": it may). Each undo step is
// persisted before its driver call and again after it: an undo step that
// started and never ended may have acted, and so may one whose call failed
// or was cut off; only those that ended well or were never called
// (Step.NotCalled) leave the rest safe to run. And where no driver may be
// called now (undoCheck), nothing is undone.
func (e *Engine) resumableUndo(x *Execution, now time.Time) string {
	for _, s := range x.Steps {
		switch {
		case s.Phase != PhaseUndo || s.NotCalled:
		case s.OutcomeUnknown():
			return fmt.Sprintf("the undo of action %d may have acted and its outcome was never recorded", s.Action+1)
		case s.Error != "":
			return fmt.Sprintf("the undo of action %d failed and may have acted: %s", s.Action+1, s.Error)
		}
	}
	if refuse, _ := e.undoCheck(x, now); refuse != "" {
		return refuse
	}
	return ""
}

// interruptUndo reports a rollback that may not be finished unattended
// (resumableUndo) as INTERRUPTED.
func (e *Engine) interruptUndo(ctx context.Context, x *Execution, now time.Time, why string) error {
	reason := fmt.Sprintf("recoverbot restarted while this execution was %s and did not finish the undo (%s): check the target and roll back by hand if needed", x.State, why)
	return e.markInterrupted(ctx, x, now, reason)
}

// loadState loads the pause flag, the freezes, the breaker, the rate and blast-radius
// windows and the running cooldowns.
func (e *Engine) loadState(ctx context.Context, now time.Time) error {
	if v, err := e.store.Setting(ctx, settingPaused); err == nil {
		e.paused = string(v) == "true"
	} else if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("load pause flag: %w", err)
	}
	if err := e.loadFreezes(ctx); err != nil {
		return fmt.Errorf("load freezes: %w", err)
	}
	if err := e.loadBreaker(ctx); err != nil {
		return fmt.Errorf("load blast-radius breaker: %w", err)
	}
	if err := e.loadBlast(ctx, now); err != nil {
		return fmt.Errorf("load blast-radius windows: %w", err)
	}
	stamps, err := e.store.RateStamps(ctx, now.Add(-time.Hour))
	if err != nil {
		return fmt.Errorf("load rate windows: %w", err)
	}
	for _, s := range stamps {
		e.rate.reserve(s.Runbook, s.ExecutionID, s.At)
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
	return nil
}

// interrupt reports an execution the process died under as INTERRUPTED.
func (e *Engine) interrupt(ctx context.Context, x *Execution, now time.Time) error {
	reason := fmt.Sprintf("recoverbot restarted while this execution was %s: not re-run; check the target and roll back by hand if needed", x.State)
	return e.markInterrupted(ctx, x, now, reason)
}

// markInterrupted moves x to INTERRUPTED with reason, for a human.
func (e *Engine) markInterrupted(ctx context.Context, x *Execution, now time.Time, reason string) error {
	if _, err := e.transition(ctx, Transition{ID: x.ID, From: []State{x.State}, To: Interrupted,
		Actor: ActorBot, Reason: reason,
		Outbox: []Notification{{Kind: NoteState, Text: "⚠️ " + reason, State: Interrupted}},
		Dedup:  e.closeDedup(x, now)}); err != nil {
		return fmt.Errorf("mark %s interrupted: %w", x.ID, err)
	}
	e.closeTarget(x, now)
	return nil
}

// warnIfRefused runs the guards again on a plan awaiting approval after a
// restart and, if an approval would now be refused (the mode, the runbook or
// the pause changed), says so in its thread. The plan keeps waiting: Approve
// checks again, and refuses while this holds.
func (e *Engine) warnIfRefused(ctx context.Context, x *Execution, now time.Time) {
	e.mu.RLock()
	why := e.recheck(x, true, now)
	e.mu.RUnlock()
	if why == "" {
		return
	}
	reason := "after a restart, an approval would be refused: " + why
	if _, err := e.transition(ctx, Transition{ID: x.ID, From: []State{PendingApproval}, To: PendingApproval,
		Actor: ActorBot, Reason: reason,
		Outbox: []Notification{{Kind: NoteStep, Text: "⚠️ " + reason}}}); err != nil && !errors.As(err, new(*MoveError)) {
		e.log.Error("warn about a plan its guards now refuse", "plan", x.ID, "err", err)
	}
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
	if x := d.accepted.Execution; x != nil && x.State == Suppressed {
		e.mu.Lock()
		e.noteSuppressed(x)
		e.mu.Unlock()
	}
	e.poke()
	if d.trip != "" {
		// The engine's state, not the request's: persisted whatever the sender does.
		if err := e.persistBreaker(e.ctx); err != nil {
			e.log.Error("persist the blast-radius breaker (it stays open in memory)", "err", err)
		}
	}
	if e.cfg.Advisor != nil && d.accepted.Event.Decision == DecideNoRunbook && !o.manual && o.ai == nil {
		e.adviseUnmatched(ev) // within the AI budget, in the background
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

func actorOf(ev *Event) string {
	if ev.Source == "" {
		return "intake"
	}
	return ev.Source
}

// ValidateEvent refuses an event that can never be planned, with a sentence
// naming the field, after BoundEvent has cut its human text and checked its
// bounds (so it may change ev.Summary).
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
	}
	return BoundEvent(ev) // recovery/eventcaps.go
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
	if err := BoundEvent(&ev); err != nil {
		return Answer{}, err
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
	if err := ValidateEvent(&ev); err != nil {
		return Answer{}, err
	}
	return e.submit(ctx, ev, now, proposalOpts{manual: true, requestedBy: requestedBy, runbook: rb})
}

// Preview is the full would-do report for a named runbook with the given
// context values, as PlanManual would make it now. It changes nothing.
func (e *Engine) Preview(runbook string, values map[string]any, requestedBy string) (Plan, error) {
	rb := e.books.Get(runbook)
	if rb == nil {
		return Plan{}, Errorf(CodeNotFound, "no runbook named %q", runbook)
	}
	ev := manualEvent(rb, values, requestedBy)
	if err := ValidateEvent(&ev); err != nil {
		return Plan{}, err
	}
	return e.evaluate(&ev, proposalOpts{manual: true, requestedBy: requestedBy, runbook: rb}), nil
}

// manualEvent is the event behind a plan someone asked for by name: the
// runbook's own event type, full confidence (a person vouches for it), and the
// given values as context, validated by rendering like any event's.
func manualEvent(rb *runbooks.Runbook, values map[string]any, requestedBy string) Event {
	return Event{Type: rb.Trigger.EventType, Severity: runbooks.Warning, Confidence: 1,
		Summary: "requested by " + requestedBy, Context: values, Source: "manual"}
}
