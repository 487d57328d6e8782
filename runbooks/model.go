package runbooks

// The package documentation is in doc.go.

import "time"

// EventType is the kind of failure an event reports.
type EventType string

// Event types (the reference playbook's AIEventType).
const (
	LatencyAnomaly          EventType = "LATENCY_ANOMALY"
	ErrorRateSpike          EventType = "ERROR_RATE_SPIKE"
	CircuitBreakerCandidate EventType = "CIRCUIT_BREAKER_CANDIDATE"
	CapacityWarning         EventType = "CAPACITY_WARNING"
	RateLimitBreach         EventType = "RATE_LIMIT_BREACH"
	UpstreamDegradation     EventType = "UPSTREAM_DEGRADATION"
	RecoverySignal          EventType = "RECOVERY_SIGNAL"
)

// EventTypes lists every known event type, in a fixed order.
var EventTypes = []EventType{LatencyAnomaly, ErrorRateSpike, CircuitBreakerCandidate,
	CapacityWarning, RateLimitBreach, UpstreamDegradation, RecoverySignal}

// Valid reports whether t is a known event type.
func (t EventType) Valid() bool {
	for _, k := range EventTypes {
		if t == k {
			return true
		}
	}
	return false
}

// Severity of an event.
type Severity string

// Severities.
const (
	Info     Severity = "INFO"
	Warning  Severity = "WARNING"
	Critical Severity = "CRITICAL"
)

// Valid reports whether s is a known severity.
func (s Severity) Valid() bool { return s == Info || s == Warning || s == Critical }

// ActionType is what an action does; each has one driver.
type ActionType string

// Action types.
const (
	ScaleResource  ActionType = "SCALE_RESOURCE"
	CircuitBreaker ActionType = "CIRCUIT_BREAKER"
	RestartPod     ActionType = "RESTART_POD"
	CacheClear     ActionType = "CACHE_CLEAR"
	RateLimit      ActionType = "RATE_LIMIT"
	Failover       ActionType = "FAILOVER"
)

// ActionTypes lists every known action type.
var ActionTypes = []ActionType{ScaleResource, CircuitBreaker, RestartPod, CacheClear, RateLimit, Failover}

// Valid reports whether t is a known action type.
func (t ActionType) Valid() bool {
	for _, k := range ActionTypes {
		if t == k {
			return true
		}
	}
	return false
}

// Event is a failure report from monitoring, normalized. Data and Context hold
// scalars (string, float64, bool) or nested JSON values as decoded by encoding/json.
type Event struct {
	ID         string         `json:"id,omitempty"`
	Type       EventType      `json:"type"`
	Severity   Severity       `json:"severity"`
	Summary    string         `json:"summary,omitempty"`
	Confidence float64        `json:"confidence"`
	Data       map[string]any `json:"data,omitempty"`
	Context    map[string]any `json:"context,omitempty"`
	// Source is where the event came from: "api", "alertmanager", "slack", "cli".
	Source string `json:"source,omitempty"`
	// Fingerprint is the sender's dedup identity (Alertmanager's alert fingerprint).
	Fingerprint string `json:"fingerprint,omitempty"`
	// Labels are an Alertmanager alert's labels as sent, every one (event_type
	// and severity too, in their own spelling): the silence of the alert
	// while it is remediated matches them exactly. Set only by the
	// Alertmanager intake; held to the event's bounds with data and context.
	Labels map[string]string `json:"labels,omitempty"`
}

// Lookup finds a condition or template key in the event's data, then its context.
func (e *Event) Lookup(key string) (any, bool) {
	if v, ok := e.Data[key]; ok {
		return v, true
	}
	v, ok := e.Context[key]
	return v, ok
}

// Runbook is one recovery recipe. Field names follow the reference playbook.
type Runbook struct {
	Name                  string   `json:"name"`
	Description           string   `json:"description,omitempty"`
	Trigger               Trigger  `json:"trigger"`
	Actions               []Action `json:"actions"`
	Safety                Safety   `json:"safety"`
	EstimatedRecoveryTime int      `json:"estimatedRecoveryTime,omitempty"` // minutes
	Verify                *Verify  `json:"verify,omitempty"`
	// Approvers overrides the global approver list (Slack user or user-group ids).
	Approvers []string `json:"approvers,omitempty"`
	// FourEyes forbids the requester of a manual plan from approving it.
	FourEyes bool `json:"fourEyes,omitempty"`

	// Hash is the hex SHA-256 of the runbook's canonical JSON encoding (without Hash
	// and Source), set by the loader: any change of meaning changes it, comments and
	// layout do not.
	Hash string `json:"hash"`
	// Source is "file:line" of the document, set by the loader.
	Source string `json:"source"`
	// ActionSources is "file:line" of each action, set by the loader: the
	// start-up check of literal actions by their drivers points there.
	ActionSources []string `json:"-"`
}

// Trigger says which events a runbook handles.
type Trigger struct {
	EventType  EventType   `json:"eventType"`
	Conditions []Condition `json:"conditions,omitempty"` // in file order
}

// Condition is one key of trigger.conditions. Exactly one form is set:
// Min and/or Max (numeric bounds, inclusive), Equals (a scalar), or AnyOf (a list).
// The keys "confidence" and "severity" test the event's own fields; every other key
// is looked up in the event's data, then its context; a missing key never matches.
type Condition struct {
	Key    string   `json:"key"`
	Min    *float64 `json:"min,omitempty"`
	Max    *float64 `json:"max,omitempty"`
	Equals any      `json:"equals,omitempty"`
	AnyOf  []any    `json:"anyOf,omitempty"`
}

// Target names what an action touches. Fields may hold {{…}} templates.
type Target struct {
	Namespace  string `json:"namespace,omitempty"`
	Deployment string `json:"deployment,omitempty"`
	Service    string `json:"service,omitempty"`
}

// Action is one step of a runbook. After rendering, Parameters and Target hold
// concrete values only.
type Action struct {
	Type       ActionType     `json:"type"`
	Resource   string         `json:"resource,omitempty"`
	Operation  string         `json:"operation,omitempty"`
	Target     Target         `json:"target,omitzero"`
	Parameters map[string]any `json:"parameters,omitempty"`
	Duration   int            `json:"duration,omitempty"` // seconds; time-boxed actions revert after it
	Gradual    bool           `json:"gradual,omitempty"`
	// Risk "high" puts the action on the never-auto list.
	Risk string `json:"risk,omitempty"`
}

// Safety is a runbook's guardrail settings.
type Safety struct {
	RequiresApproval     bool     `json:"requiresApproval"`
	MaxExecutionsPerHour int      `json:"maxExecutionsPerHour"`
	RollbackAfterMinutes int      `json:"rollbackAfterMinutes,omitempty"`
	DryRun               bool     `json:"dryRun,omitempty"`
	Cooldown             Duration `json:"cooldown,omitempty"`
	// AutoRollback lets an automatic undo (a scheduled rollback, a failed
	// verification) of a never-auto action (RESTART_POD, FAILOVER, risk: high)
	// run without a human. Off by default: undoing a rolling restart is another
	// rolling restart, undoing a failover fails traffic over again, so the
	// engine asks for approval as it did for the action itself.
	AutoRollback bool `json:"autoRollback,omitempty"`
}

// Verify is an optional post-execution check against Prometheus.
type Verify struct {
	Prometheus      string   `json:"prometheus"`
	Within          Duration `json:"within,omitempty"`
	Every           Duration `json:"every,omitempty"`
	OnVerifyFailure string   `json:"onVerifyFailure,omitempty"` // "rollback" (default) or "escalate"
}

// Duration is a time.Duration written as a Go duration string ("5m") in YAML and JSON.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// String returns parameter key as a string (numbers and bools are not converted).
func (a *Action) String(key string) (string, bool) {
	s, ok := a.Parameters[key].(string)
	return s, ok
}

// Number returns parameter key as a number. The loader and JSON decoding both
// leave numbers as float64.
func (a *Action) Number(key string) (float64, bool) {
	f, ok := a.Parameters[key].(float64)
	return f, ok
}

// Bool returns parameter key as a bool.
func (a *Action) Bool(key string) (bool, bool) {
	b, ok := a.Parameters[key].(bool)
	return b, ok
}
