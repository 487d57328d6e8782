package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/recoverbot/recoverbot/runbooks"
)

// Event is the engine's view of a failure report.
type Event = runbooks.Event

// Action is a rendered runbook action.
type Action = runbooks.Action

// Decision is what the guardrails decided for an event.
type Decision string

// Decisions.
const (
	DecideAuto       Decision = "auto"
	DecideApproval   Decision = "approval"
	DecideDryRun     Decision = "dry_run"
	DecideSuppressed Decision = "suppressed"
	DecideDuplicate  Decision = "duplicate"
	DecideNoRunbook  Decision = "no_runbook"
	DecideRefused    Decision = "refused"   // the plan could not be built safely
	DecideCancelled  Decision = "cancelled" // a resolved alert cancelled its plan
	DecideIgnored    Decision = "ignored"   // e.g. a resolved alert with nothing to cancel
)

// Plan is what the engine intends to do for one event.
type Plan struct {
	ID          string            `json:"id"`
	EventID     string            `json:"event_id"`
	Event       Event             `json:"event"`
	Runbook     string            `json:"runbook"`
	RunbookHash string            `json:"runbook_hash"`
	Actions     []runbooks.Action `json:"actions"`
	// Rollback describes, per action in reverse order, what undoing it would do.
	// The actual undo restores the state the driver observed before applying.
	Rollback  []string  `json:"rollback,omitempty"`
	Decision  Decision  `json:"decision"`
	Reasons   []string  `json:"reasons"`
	Deadline  time.Time `json:"deadline,omitzero"` // approval deadline
	TargetKey string    `json:"target_key"`        // dedup key: the runbook and Targets
	// Targets are what each action touches, as its driver names it
	// (Drivers.Check): the per-target locks and every message use them.
	Targets []string `json:"targets,omitempty"`
	// RequestedBy is set for manual plans (Slack user id, "cli", …).
	RequestedBy string `json:"requested_by,omitempty"`
	// Manual says a person asked for the plan by name (/recover plan, the
	// CLI): it always needs approval, at planning and at every re-check.
	Manual bool `json:"manual,omitempty"`
	// A snapshot of the runbook settings the plan was made under: a runbook edited
	// later does not change what was approved.
	Safety                runbooks.Safety `json:"safety"`
	FourEyes              bool            `json:"four_eyes,omitempty"`
	EstimatedRecoveryTime int             `json:"estimated_recovery_time,omitempty"`
	// Verify is the runbook's verification, VerifyQuery its query rendered for
	// this event (empty: no verification).
	Verify      *runbooks.Verify `json:"verify,omitempty"`
	VerifyQuery string           `json:"verify_query,omitempty"`
	// AI is set when an AI proposed the plan (it then always needs approval).
	AI *AIInfo `json:"ai,omitempty"`
}

// AIInfo says an AI proposed a plan, how sure it was and why.
type AIInfo struct {
	Model      string  `json:"model"`
	Confidence float64 `json:"confidence"`
	Rationale  string  `json:"rationale"`
	// OutsideTrigger says which parts of the runbook's trigger the event did
	// not meet (runbooks.Set.Unmet); empty when it met them all.
	OutsideTrigger []string `json:"outside_trigger,omitempty"`
	// Params are the runbook's declared parameters with a value, and where
	// each value came from.
	Params []AIParam `json:"params,omitempty"`
}

// AIParam is one parameter of an AI plan and its provenance.
type AIParam struct {
	Key   string      `json:"key"`
	Value any         `json:"value"`
	From  ParamSource `json:"from"`
}

// Step is one driver call of an execution.
type Step struct {
	Action int             `json:"action"` // index into Plan.Actions
	Type   string          `json:"type"`
	Phase  Phase           `json:"phase"`
	Before json.RawMessage `json:"before,omitempty"`
	Report []string        `json:"report,omitempty"`
	Error  string          `json:"error,omitempty"`
	// NotCalled says the driver was never called for this step: refused
	// because this replica's leadership lease had run out (Error says so).
	NotCalled bool `json:"not_called,omitempty"`
	// CutOff says the driver call was cut off when this replica's lease
	// ran out: it may have acted (Error says so).
	CutOff    bool      `json:"cut_off,omitempty"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
}

// OutcomeUnknown reports a step whose driver call may have acted with no
// outcome anybody can know: it started and its end was never recorded (the
// process died, or its writes were fenced, mid-call), or the call was cut off
// when the lease ran out. Such a call is never made again by recoverbot,
// whoever asks (pendingUndo): calling it twice is the one thing it must not
// do; a person checks the target.
func (s Step) OutcomeUnknown() bool {
	return !s.NotCalled && (s.EndedAt.IsZero() || s.CutOff)
}

// Execution is a plan and everything that happened to it.
type Execution struct {
	Plan
	State      State     `json:"state"`
	Version    uint64    `json:"version"` // bumped by every transition
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	ApprovedBy string    `json:"approved_by,omitempty"`
	Steps      []Step    `json:"steps,omitempty"`
	// RollbackAt schedules an automatic rollback of a succeeded execution, or,
	// while UndoAwaits is set, is the deadline of that rollback's approval.
	RollbackAt time.Time `json:"rollback_at,omitzero"`
	// UndoAwaits is set while an automatic undo waits for a human because it
	// would re-run a never-auto action (undo.go).
	UndoAwaits UndoTrigger `json:"undo_awaits,omitempty"`
	Error      string      `json:"error,omitempty"`
	// Repeats counts duplicate events folded into this plan.
	Repeats int `json:"repeats,omitempty"`
	// Verification: until when it may go on, when it succeeded, what it last saw.
	VerifyUntil time.Time `json:"verify_until,omitzero"`
	VerifiedAt  time.Time `json:"verified_at,omitzero"`
	LastVerify  string    `json:"last_verify,omitempty"`
	// FalseAction marks an execution that should not have happened: rolled back
	// after failed verification, or marked so by a person.
	FalseAction bool   `json:"false_action,omitempty"`
	FalseBy     string `json:"false_by,omitempty"`
	// Explanation is an optional AI-written note on the failure and the plan,
	// added after the plan was posted (it never delays it).
	Explanation string `json:"explanation,omitempty"`
	// Silence is the Alertmanager silence of the alert while the bot works
	// on it (silence.go).
	Silence *SilenceRef `json:"silence,omitempty"`
}

// AuditRecord is one line of the append-only audit trail.
type AuditRecord struct {
	Seq         uint64     `json:"seq"` // assigned by the store
	At          time.Time  `json:"at"`
	ExecutionID string     `json:"execution_id,omitempty"`
	EventID     string     `json:"event_id,omitempty"`
	Actor       string     `json:"actor"`
	From        State      `json:"from,omitempty"`
	To          State      `json:"to,omitempty"`
	Reason      string     `json:"reason"`
	Plan        *Execution `json:"plan,omitempty"` // snapshot after the change
}

// EventRecord is an accepted event and what was decided for it.
type EventRecord struct {
	Event       Event     `json:"event"`
	ReceivedAt  time.Time `json:"received_at"`
	Decision    Decision  `json:"decision"`
	Reasons     []string  `json:"reasons,omitempty"`
	PlanID      string    `json:"plan_id,omitempty"`
	DuplicateOf string    `json:"duplicate_of,omitempty"`
}

// Notification is one message in the outbox, written in the same transaction as
// the change it announces and delivered in Seq order per execution.
type Notification struct {
	Seq         uint64    `json:"seq"` // assigned by the store
	At          time.Time `json:"at"`
	ExecutionID string    `json:"execution_id,omitempty"`
	Kind        NoteKind  `json:"kind"`
	Text        string    `json:"text"`
	// Actor, when set, is the person Text names as having acted (approved,
	// rejected, asked for a rollback): the only part of a notification an
	// edge may turn into a mention. Text itself is display text, never parsed.
	Actor string `json:"actor,omitempty"`
	State State  `json:"state,omitempty"`
}

// IsNotice reports a notification for the whole channel rather than one
// plan's thread: a notice (whatever execution it may name), or one that
// names no execution.
func (n Notification) IsNotice() bool { return n.Kind == NoteNotice || n.ExecutionID == "" }

// RateStamp records one execution start for the hourly rate limit.
type RateStamp struct {
	Runbook     string    `json:"runbook"`
	At          time.Time `json:"at"`
	ExecutionID string    `json:"execution_id"`
}

// DedupEntry marks a target as taken by a plan until the plan closes and, after
// that, until Until (the runbook's cooldown).
type DedupEntry struct {
	Key    string    `json:"key"`
	PlanID string    `json:"plan_id"`
	Until  time.Time `json:"until,omitzero"` // zero while the plan is open
}

// Accepted is one intake decision, persisted atomically.
type Accepted struct {
	Event     EventRecord
	Execution *Execution // nil when no plan was made
	Audit     []AuditRecord
	Outbox    []Notification
	Dedup     *DedupEntry
	// RepeatOf, when set, increments Repeats on that execution (a duplicate event).
	RepeatOf string
}

// Transition is a compare-and-set of one execution's state.
type Transition struct {
	ID     string
	From   []State // the move happens only if the current state is one of these
	To     State
	At     time.Time
	Actor  string
	Reason string
	// Mutate, when set, edits the execution inside the transaction; an error aborts
	// this transition only.
	Mutate func(*Execution) error
	Outbox []Notification
	// Rate, when set, records an execution start for the rate limit.
	Rate *RateStamp
	// Dedup, when set, is written (Until set: the plan closed, cooldown runs).
	Dedup *DedupEntry
}

// ExecutionFilter selects executions, newest first.
type ExecutionFilter struct {
	State   State
	Runbook string
	Since   time.Time
	Limit   int
}

// Errors the store returns.
var (
	ErrNotFound  = errors.New("not found")
	ErrDuplicate = errors.New("already exists")
	// ErrFenced is returned by a write made after this replica lost leadership.
	ErrFenced = errors.New("fenced: this replica no longer leads")
	// ErrOutcomeUnknown is returned by a write the store gave no answer to
	// (etcd, within its write timeout): whether it was committed is unknown.
	ErrOutcomeUnknown = errors.New("the store did not answer the commit: outcome unknown")
)

// Undecided reports a write error after which this replica cannot know, or
// may no longer act on, what the store holds: the write was fenced (another
// replica leads) or its outcome is unknown. Nothing may be told as decided
// on it (a Slack envelope is left unacknowledged, for Slack to deliver again
// to whichever replica leads), and the replica restarts from the store.
func Undecided(err error) bool {
	return errors.Is(err, ErrFenced) || errors.Is(err, ErrOutcomeUnknown)
}

// Store persists everything the engine must not lose. Writes are durable (fsynced)
// when they return. A write's ctx bounds only its handover to the store: a write
// that returns ctx's error wrote nothing, and once the store has taken a write
// the call returns what its commit did, whatever happens to ctx meanwhile (the
// engine acts on the answer: it must be the truth). Transition returns
// *MoveError when the current state is not one of t.From, ErrNotFound when
// there is no such execution.
type Store interface {
	// Accept writes an intake decision. It returns ErrDuplicate, writing nothing,
	// when an event with the same non-empty id was accepted before.
	Accept(ctx context.Context, a Accepted) error
	Transition(ctx context.Context, t Transition) (Execution, error)
	// Record appends audit records and outbox notifications that belong to no
	// accepted event and move no execution (a pause, a refused click, a storm
	// summary), in one transaction.
	Record(ctx context.Context, audit []AuditRecord, outbox []Notification) error

	Execution(ctx context.Context, id string) (Execution, error)
	Executions(ctx context.Context, f ExecutionFilter) ([]Execution, error)
	EventRecord(ctx context.Context, id string) (EventRecord, error)
	Audit(ctx context.Context, executionID string) ([]AuditRecord, error)
	AuditSince(ctx context.Context, since time.Time) ([]AuditRecord, error)
	// AuditPage returns up to limit records with Seq above after and At at or
	// after since, in order; an empty page is the end (the streamed export).
	AuditPage(ctx context.Context, since time.Time, after uint64, limit int) ([]AuditRecord, error)

	// Open returns every execution in a non-terminal state and every one with a
	// pending timer (RollbackAt set and not yet rolled back): what start-up resumes.
	Open(ctx context.Context) ([]Execution, error)
	RateStamps(ctx context.Context, since time.Time) ([]RateStamp, error)
	DedupEntries(ctx context.Context) ([]DedupEntry, error)

	Outbox(ctx context.Context, after uint64, limit int) ([]Notification, error)
	AckOutbox(ctx context.Context, seqs ...uint64) error
	// DeadLetter moves an undeliverable notification out of the outbox, kept
	// with the reason, so the ones behind it are delivered (see Courier).
	DeadLetter(ctx context.Context, seq uint64, reason string) error

	Setting(ctx context.Context, key string) ([]byte, error) // ErrNotFound when unset
	PutSetting(ctx context.Context, key string, value []byte) error
}

// Reporter receives a driver's progress lines; each becomes a thread reply.
type Reporter func(line string)

// Driver performs one action type against a backend.
//
// Apply returns what it observed before changing anything (opaque JSON, nil when
// it changed nothing). When it fails after a partial change it returns that state
// too, and the engine undoes it. Undo restores exactly the observed state, and
// reports, rather than overwrites, a target someone else changed since.
// Describe says what Apply would do and calls nothing.
type Driver interface {
	// Checker owns the action's validation and target identity: Apply acts by
	// the same rules.
	Checker
	Describe(a runbooks.Action) string
	Apply(ctx context.Context, a runbooks.Action, report Reporter) (json.RawMessage, error)
	Undo(ctx context.Context, a runbooks.Action, before json.RawMessage, report Reporter) error
}

// Verifier asks a metrics source whether a recovery worked.
type Verifier interface {
	// Check runs query once. Healthy means a non-empty result; value describes
	// what was seen. An error means the answer is unknown (unreachable, invalid
	// query): never healthy.
	Check(ctx context.Context, query string) (healthy bool, value string, err error)
}

// Observer is told what happens, for metrics. Every method must be cheap and
// must not block.
type Observer interface {
	EventReceived(t runbooks.EventType, source string)
	Decided(d Decision)
	Moved(to State)
	ActionDone(t runbooks.ActionType, d time.Duration, err error)
	ApprovalWait(d time.Duration)
}

// Notifier delivers outbox notifications (Slack, or the log in offline mode).
// An error leaves the notification in the outbox for a later retry.
type Notifier interface {
	Notify(ctx context.Context, n Notification, e *Execution) error
}

// LaneNotifier is a Notifier that can deliver several notifications of one
// execution at once, in order, given the execution as it stands now (as the
// Slack notifier does, re-rendering the plan's message and saving its
// delivery record once for all of them). It returns how many of notes, from
// the first, were delivered; err is about notes[delivered].
type LaneNotifier interface {
	Notifier
	NotifyLane(ctx context.Context, notes []Notification, e *Execution) (delivered int, err error)
}

type ctxKey struct{}

// WithExecution tags ctx with the execution a driver call belongs to, so a
// driver can say which execution it acted for (the log driver's journal does).
func WithExecution(ctx context.Context, id string, action int) context.Context {
	return context.WithValue(ctx, ctxKey{}, execRef{id, action})
}

type execRef struct {
	id     string
	action int
}

// ExecutionOf returns the execution id and action index ctx was tagged with.
func ExecutionOf(ctx context.Context) (id string, action int, ok bool) {
	r, ok := ctx.Value(ctxKey{}).(execRef)
	return r.id, r.action, ok
}
