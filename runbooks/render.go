package runbooks

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"
)

// RenderError says why Render refused to build a runbook's actions for an event.
// Error() reads like "actions[0].parameters.pattern: {{route}} is unresolved".
type RenderError struct {
	Action int    // index of the action in the runbook
	Field  string // the field within the action: "parameters.pattern", "target.deployment"
	Var    string // the variable, without braces ("route", "context.route"); "" for a field rule
	Value  string // the offending value, cut to 64 bytes; "" when there is none
	Reason string
}

func (e *RenderError) Error() string {
	var b strings.Builder
	if e.Action < 0 { // not in an action: the field path stands alone
		b.WriteString(e.Field + ": ")
	} else {
		fmt.Fprintf(&b, "actions[%d].%s: ", e.Action, e.Field)
	}
	if e.Var != "" {
		b.WriteString("{{" + e.Var + "}} ")
	}
	if e.Value != "" {
		fmt.Fprintf(&b, "value %q ", e.Value)
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Render returns a deep copy of rb's actions with every {{variable}} in their
// parameters (at any depth) and target fields replaced by the event's values. It
// refuses, with a *RenderError for the first problem (by action, then field name),
// a variable that is unresolved or renders to an unsafe value (check.go) rather
// than act on a guess. Whether the rendered action is valid for its type is its
// driver's rule (recovery.Drivers.Check). rb and e are not modified.
func Render(rb *Runbook, e *Event) ([]Action, error) {
	if rb == nil || e == nil {
		return nil, errors.New("runbooks: Render needs a runbook and an event")
	}
	r := renderer{e: e}
	if m := templates.Load(); m != nil {
		r.cache = *m
	}
	out := make([]Action, len(rb.Actions))
	for i := range rb.Actions {
		a, o := &rb.Actions[i], &out[i]
		*o = *a
		r.action = i
		o.Target.Namespace = r.targetField("namespace", a.Target.Namespace)
		o.Target.Deployment = r.targetField("deployment", a.Target.Deployment)
		o.Target.Service = r.targetField("service", a.Target.Service)
		if a.Parameters != nil {
			r.depth = 0
			r.push("parameters", -1)
			o.Parameters = r.object(a.Parameters)
		}
	}
	if r.first != nil {
		return nil, r.first
	}
	return out, nil
}

type renderer struct {
	e      *Event
	cache  map[string]*template
	action int
	first  *RenderError
	// path[:depth] is where the value being rendered sits, built into a Field only
	// on error. A fixed array, not a slice, keeps the renderer on the stack.
	path  [16]pathElem
	depth int
	num   [32]byte
}

type pathElem struct {
	key string
	idx int // list index, or -1 for a map key
}

func (r *renderer) push(key string, idx int) {
	if r.depth < len(r.path) {
		r.path[r.depth] = pathElem{key: key, idx: idx}
	}
	r.depth++
}

func (r *renderer) pop() { r.depth-- }

func (r *renderer) field() string {
	var b strings.Builder
	for i, p := range r.path[:min(r.depth, len(r.path))] {
		if p.idx >= 0 {
			b.WriteString("[" + strconv.Itoa(p.idx) + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p.key)
	}
	if r.depth > len(r.path) {
		b.WriteString("...")
	}
	return b.String()
}

// report keeps the first error by (action, field), so the message does not depend
// on map iteration order.
func (r *renderer) report(err *RenderError) {
	if r.first == nil || err.Action == r.first.Action && err.Field < r.first.Field {
		r.first = err
	}
}

func (r *renderer) fail(v, value, reason string) {
	r.report(&RenderError{Action: r.action, Field: r.field(), Var: v, Value: truncate(value), Reason: reason})
}

func (r *renderer) targetField(name, s string) string {
	if !strings.Contains(s, "{{") {
		return s
	}
	r.depth = 0
	r.push("target", -1)
	r.push(name, -1)
	return r.render(s)
}

// object deep-copies m. maps.Clone copies the table wholesale, which is cheaper
// than inserting key by key; then only templated strings and nested containers are
// replaced, each an in-place update of an existing key.
func (r *renderer) object(m map[string]any) map[string]any {
	if !templated(m) {
		// Nothing to substitute: share the runbook's map. Rendered actions are
		// read-only (drivers and the store only read them), so sharing is safe
		// and saves a copy per event on the hot path.
		return m
	}
	out := maps.Clone(m)
	for k, v := range m {
		switch x := v.(type) {
		case string:
			if !strings.Contains(x, "{{") {
				continue
			}
		case map[string]any, []any, map[string]string, []string:
		default:
			continue
		}
		r.push(k, -1)
		out[k] = r.value(v)
		r.pop()
	}
	return out
}

// value deep-copies v, rendering strings that hold templates. Other strings and
// scalars are returned as the same interface value, which costs no allocation.
func (r *renderer) value(v any) any {
	switch x := v.(type) {
	case string:
		if !strings.Contains(x, "{{") {
			break
		}
		// A string that is one variable whose value is a string renders to the
		// event's own interface value, which saves boxing a new one.
		if t := r.cache[x]; t != nil && t.single {
			if ev, _ := t.segs[0].lookup(r.e); ev != nil {
				if _, isStr := ev.(string); isStr {
					if _, ok := r.text(&t.segs[0]); ok {
						return ev
					}
					return v
				}
			}
		}
		return r.render(x)
	case map[string]any:
		return r.object(x)
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			r.push("", i)
			out[i] = r.value(item)
			r.pop()
		}
		return out
	case map[string]string: // only in hand-built runbooks; the loader makes map[string]any
		out := make(map[string]string, len(x))
		for k, s := range x {
			r.push(k, -1)
			out[k] = r.value(s).(string)
			r.pop()
		}
		return out
	case []string:
		out := make([]string, len(x))
		for i, s := range x {
			r.push("", i)
			out[i] = r.value(s).(string)
			r.pop()
		}
		return out
	}
	return v
}

// render substitutes the variables of template string s. On a refusal it records
// the error and returns s unchanged; Render then returns no actions at all.
func (r *renderer) render(s string) string {
	t := r.cache[s]
	if t == nil {
		var err error
		if t, err = parseTemplate(s); err != nil {
			r.fail("", "", err.Error())
			return s
		}
	}
	if t.single { // the whole string is one variable: no new string needed
		v, ok := r.text(&t.segs[0])
		if !ok {
			return s
		}
		return v
	}
	var b strings.Builder
	b.Grow(t.litLen + 24*len(t.segs))
	ok := true
	for i := range t.segs {
		seg := &t.segs[i]
		b.WriteString(seg.lit)
		if seg.key == "" {
			continue
		}
		v, good := r.text(seg)
		ok = ok && good
		b.WriteString(v)
	}
	if !ok {
		return s
	}
	return b.String()
}

// text returns the variable's value as it is substituted, or records why it
// cannot be.
func (r *renderer) text(seg *segment) (string, bool) {
	v, found := seg.lookup(r.e)
	var s string
	switch x := v.(type) {
	case nil:
		if !found {
			r.fail(seg.ref, "", "is unresolved (missing from the event)")
		} else {
			r.fail(seg.ref, "", "is unresolved (null)")
		}
		return "", false
	case string:
		if x == "" {
			r.fail(seg.ref, "", "is unresolved (empty)")
			return "", false
		}
		s = x
	case bool:
		s = strconv.FormatBool(x)
	case map[string]any, map[string]string:
		r.fail(seg.ref, "", "is a map, not a scalar")
		return "", false
	case []any, []string:
		r.fail(seg.ref, "", "is a list, not a scalar")
		return "", false
	case int:
		s = strconv.Itoa(x)
	case int64:
		s = strconv.FormatInt(x, 10)
	case uint64:
		s = strconv.FormatUint(x, 10)
	default:
		f, ok := toFloat(v)
		if !ok {
			r.fail(seg.ref, "", fmt.Sprintf("has unsupported type %T", v))
			return "", false
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			r.fail(seg.ref, "", "is not a finite number")
			return "", false
		}
		s = string(appendJSONFloat(r.num[:0], f))
	}
	if reason := unsafeValueProblem(s); reason != "" {
		r.fail(seg.ref, s, reason)
		return "", false
	}
	return s, true
}

// appendJSONFloat formats f as encoding/json does, so {{data.x}} reads the same as
// the event's JSON: 95, 0.5, 1e+21, 1e-7.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// Templated reports whether a target field or a parameter of a holds a
// {{template}}: such an action is complete only once rendered for an event.
func (a *Action) Templated() bool {
	return strings.Contains(a.Target.Namespace+a.Target.Deployment+a.Target.Service, "{{") || templated(a.Parameters)
}

// templated reports whether v holds a {{…}} string at any depth.
func templated(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.Contains(x, "{{")
	case map[string]any:
		for _, e := range x {
			if templated(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if templated(e) {
				return true
			}
		}
	case map[string]string:
		for _, e := range x {
			if strings.Contains(e, "{{") {
				return true
			}
		}
	case []string:
		for _, e := range x {
			if strings.Contains(e, "{{") {
				return true
			}
		}
	}
	return false
}
