package runbooks

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Set is a loaded, immutable collection of runbooks. It is safe for concurrent
// use; callers must not modify the runbooks it returns. A nil *Set is empty.
type Set struct {
	all    []*Runbook
	byName map[string]*Runbook
	// byType holds each event type's runbooks, indexed by typeIndex, in load order
	// with their conditions compiled, so Match scans only candidates and neither
	// hashes nor allocates.
	byType [numEventTypes][]matcher
}

const numEventTypes = 7 // len(EventTypes); typeIndex must cover every one

// typeIndex returns t's position in EventTypes, or -1. A switch compiles to a few
// length and byte comparisons, cheaper than hashing the type into a map.
func typeIndex(t EventType) int {
	switch t {
	case LatencyAnomaly:
		return 0
	case ErrorRateSpike:
		return 1
	case CircuitBreakerCandidate:
		return 2
	case CapacityWarning:
		return 3
	case RateLimitBreach:
		return 4
	case UpstreamDegradation:
		return 5
	case RecoverySignal:
		return 6
	}
	return -1
}

type matcher struct {
	rb    *Runbook
	conds []cond
}

func newSet(books []*Runbook) *Set {
	s := &Set{all: books, byName: make(map[string]*Runbook, len(books))}
	for _, rb := range books {
		s.byName[rb.Name] = rb
		m := matcher{rb: rb, conds: make([]cond, len(rb.Trigger.Conditions))}
		for i := range rb.Trigger.Conditions {
			m.conds[i] = compileCond(&rb.Trigger.Conditions[i])
		}
		i := typeIndex(rb.Trigger.EventType) // the loader accepts only known types
		s.byType[i] = append(s.byType[i], m)
	}
	return s
}

// All returns the runbooks in load order (file name, then position in the file).
func (s *Set) All() []*Runbook {
	if s == nil {
		return nil
	}
	return append([]*Runbook(nil), s.all...)
}

// Get returns the runbook called name, or nil.
func (s *Set) Get(name string) *Runbook {
	if s == nil {
		return nil
	}
	return s.byName[name]
}

// Match returns the first runbook, in load order, whose trigger matches e, or nil.
// A runbook matches when its event type equals e.Type and every condition holds;
// a condition on a key the event lacks does not hold.
func (s *Set) Match(e *Event) *Runbook {
	if s == nil || e == nil {
		return nil
	}
	t := typeIndex(e.Type)
	if t < 0 {
		return nil
	}
	ms := s.byType[t]
	for i := range ms {
		if m := &ms[i]; m.matches(e) {
			return m.rb
		}
	}
	return nil
}

// Unmet says which parts of rb's trigger e does not meet, in file order, one
// sentence each ("severity is INFO, want CRITICAL"), checked exactly as Match
// checks them; nil when e is inside the trigger. It is how a plan made for a
// runbook Match did not pick (an AI's proposal) is held to that runbook's
// trigger. rb must belong to s.
func (s *Set) Unmet(rb *Runbook, e *Event) []string {
	if e.Type != rb.Trigger.EventType {
		return []string{fmt.Sprintf("event type is %s, want %s", e.Type, rb.Trigger.EventType)}
	}
	t := typeIndex(e.Type)
	if s == nil || t < 0 {
		return []string{"runbook " + rb.Name + " is not loaded"}
	}
	for i := range s.byType[t] {
		m := &s.byType[t][i]
		if m.rb != rb {
			continue
		}
		var out []string
		for j := range m.conds {
			if !m.conds[j].holds(e) {
				out = append(out, describeUnmet(&rb.Trigger.Conditions[j], e))
			}
		}
		return out
	}
	return []string{"runbook " + rb.Name + " is not loaded"}
}

func describeUnmet(c *Condition, e *Event) string {
	var got string
	switch c.Key {
	case "confidence":
		got = strconv.FormatFloat(e.Confidence, 'g', 4, 64)
	case "severity":
		got = string(e.Severity)
	default:
		v, ok := e.Lookup(c.Key)
		if !ok {
			return c.Key + " is missing from the event"
		}
		b, _ := json.Marshal(v)
		got = string(b)
	}
	var want string
	switch {
	case c.Min != nil && c.Max != nil:
		want = fmt.Sprintf("between %g and %g", *c.Min, *c.Max)
	case c.Min != nil:
		want = fmt.Sprintf("at least %g", *c.Min)
	case c.Max != nil:
		want = fmt.Sprintf("at most %g", *c.Max)
	case c.AnyOf != nil:
		b, _ := json.Marshal(c.AnyOf)
		want = "one of " + string(b)
	default:
		b, _ := json.Marshal(c.Equals)
		want = string(b)
		if c.Key == "severity" {
			want = fmt.Sprint(c.Equals)
		}
	}
	return fmt.Sprintf("%s is %s, want %s", c.Key, truncate(got), want)
}

func (m *matcher) matches(e *Event) bool {
	for i := range m.conds {
		if !m.conds[i].holds(e) {
			return false
		}
	}
	return true
}

// subject is what a condition tests.
type subject uint8

const (
	subjLookup     subject = iota // e.Lookup(key): data, then context
	subjConfidence                // e.Confidence
	subjSeverity                  // e.Severity
)

// op is a condition's form.
type op uint8

const (
	opRange op = iota // min and/or max, inclusive
	opEqual
	opAnyOf
)

// cond is a Condition compiled for matching without type switches on the
// condition side and without allocation.
type cond struct {
	key            string
	subject        subject
	op             op
	min, max       float64
	hasMin, hasMax bool
	eq             scalar
	anyOf          []scalar
}

// scalar is a condition value: a string, a number or a bool.
type scalar struct {
	kind byte // 's', 'n', 'b'
	s    string
	f    float64
	b    bool
}

func compileCond(c *Condition) cond {
	k := cond{key: c.Key}
	switch c.Key {
	case "confidence":
		k.subject = subjConfidence
	case "severity":
		k.subject = subjSeverity
	}
	switch {
	case c.Min != nil || c.Max != nil:
		k.op = opRange
		if c.Min != nil {
			k.min, k.hasMin = *c.Min, true
		}
		if c.Max != nil {
			k.max, k.hasMax = *c.Max, true
		}
	case c.AnyOf != nil:
		k.op = opAnyOf
		for _, v := range c.AnyOf {
			k.anyOf = append(k.anyOf, toScalar(v))
		}
	default:
		k.op = opEqual
		k.eq = toScalar(c.Equals)
	}
	return k
}

func toScalar(v any) scalar {
	switch v := v.(type) {
	case string:
		return scalar{kind: 's', s: v}
	case bool:
		return scalar{kind: 'b', b: v}
	}
	if f, ok := toFloat(v); ok {
		return scalar{kind: 'n', f: f}
	}
	// The loader produces only the kinds above; anything else never matches.
	return scalar{}
}

func (c *cond) holds(e *Event) bool {
	switch c.subject {
	case subjConfidence:
		return c.inRange(e.Confidence)
	case subjSeverity:
		// Compared as a string directly: boxing e.Severity into an any would allocate.
		if c.op == opEqual {
			return c.eq.kind == 's' && c.eq.s == string(e.Severity)
		}
		for i := range c.anyOf {
			if c.anyOf[i].kind == 's' && c.anyOf[i].s == string(e.Severity) {
				return true
			}
		}
		return false
	}
	v, ok := e.Lookup(c.key)
	if !ok {
		return false // the reference playbook matched here; a missing key must not
	}
	switch c.op {
	case opRange:
		f, ok := toFloat(v)
		return ok && c.inRange(f)
	case opEqual:
		return c.eq.equals(v)
	}
	for i := range c.anyOf {
		if c.anyOf[i].equals(v) {
			return true
		}
	}
	return false
}

func (c *cond) inRange(f float64) bool {
	// Written so that NaN is out of every range.
	return (!c.hasMin || f >= c.min) && (!c.hasMax || f <= c.max) && f == f
}

// equals compares like with like. A number condition also equals a numeric string
// ("95"), since some senders stringify metrics; a string condition never equals a
// number, because a quoted YAML value says the author meant text.
func (s *scalar) equals(v any) bool {
	switch s.kind {
	case 's':
		x, ok := v.(string)
		return ok && x == s.s
	case 'n':
		f, ok := toFloat(v)
		return ok && f == s.f
	case 'b':
		x, ok := v.(bool)
		return ok && x == s.b
	}
	return false
}

// toFloat reads an event value as a number: JSON numbers (float64), Go integers in
// hand-built events, json.Number, and numeric strings. It does not allocate.
func toFloat(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	case int32:
		return float64(v), true
	case uint:
		return float64(v), true
	case uint64:
		return float64(v), true
	case uint32:
		return float64(v), true
	case float32:
		return float64(v), true
	case json.Number:
		return parseNumber(string(v))
	case string:
		return parseNumber(v)
	}
	return 0, false
}

// parseNumber parses a decimal number. The syntax check first keeps
// strconv.ParseFloat from failing, which would allocate its *NumError, and refuses
// forms JSON does not have (hex, "Inf", "NaN", underscores).
func parseNumber(s string) (float64, bool) {
	i, digits := 0, 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i, digits = i+1, digits+1
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i, digits = i+1, digits+1
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			i++
		}
		exp := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i, exp = i+1, exp+1
		}
		if exp == 0 {
			return 0, false
		}
	}
	if i != len(s) {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}
