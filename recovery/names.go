package recovery

// The words the engine and its edges share. Each is a typed constant so that
// an edge (Slack, the CLI) asks what a record is instead of reading the
// sentence written for people: no package parses another's display text.

// NoteKind says what an outbox notification announces; the Slack notifier
// routes by it (root message, thread reply, channel message).
type NoteKind string

// Notification kinds.
const (
	NotePlan    NoteKind = "plan"    // a new plan: the root message
	NoteState   NoteKind = "state"   // a state change: re-render the root, tell the thread
	NoteStep    NoteKind = "step"    // a step or driver report: a thread reply
	NoteNotice  NoteKind = "notice"  // for the whole channel (pause, breaker, summaries)
	NoteRepeats NoteKind = "repeats" // duplicates folded in: re-render the root only
	NoteExplain NoteKind = "explain" // an AI explanation was added: re-render the root only
)

// Phase says whether a step applied an action or undid it.
type Phase string

// Step phases.
const (
	PhaseApply Phase = "apply"
	PhaseUndo  Phase = "undo"
)

// Actors the engine records for what it does itself. A person's actor is
// whatever the edge that authenticated them says ("slack:U123", "cli:ops").
const (
	ActorBot     = "recoverbot"        // the engine acting on its own (timers, runs, verification)
	ActorBotAuto = "recoverbot (auto)" // ApprovedBy of a plan every guardrail passed
	ActorAI      = "ai"                // the AI advisor
	ActorDriver  = "driver"            // a driver's progress report
	// FalseByVerification is Execution.FalseBy when a failed verification,
	// not a person, counted the execution as a false action.
	FalseByVerification = "verification"
)

// UndoTrigger says what started an automatic undo.
type UndoTrigger string

// Automatic undo triggers (a person's Roll back is not one: it is approved).
const (
	UndoScheduled    UndoTrigger = "scheduled rollback"                 // rollbackAfterMinutes, or a time-boxed action's end
	UndoVerifyFailed UndoTrigger = "rollback after failed verification" // onVerifyFailure: rollback
)

// ParamSource says who chose a parameter of an AI plan.
type ParamSource string

// Parameter sources.
const (
	FromEvent ParamSource = "event" // the event (or the person's question) carried it
	FromAI    ParamSource = "ai"    // the AI proposed it
)
