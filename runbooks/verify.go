package runbooks

import (
	"errors"
	"strings"
)

// RenderQuery returns the runbook's verify query with every {{variable}}
// substituted from the event, each value escaped for a PromQL double-quoted
// string (a label matcher value), so one runbook verifies the very route or
// upstream it acted on. Values pass the same safety rules as parameters; an
// unresolved or unsafe value is refused. A runbook without verify returns "".
func RenderQuery(rb *Runbook, e *Event) (string, error) {
	if rb == nil || rb.Verify == nil {
		return "", nil
	}
	q := rb.Verify.Prometheus
	if !strings.Contains(q, "{{") {
		return q, nil
	}
	t, err := parseTemplate(q)
	if err != nil {
		return "", &RenderError{Action: -1, Field: "verify.prometheus", Reason: err.Error()}
	}
	r := renderer{e: e}
	var b strings.Builder
	for i := range t.segs {
		seg := &t.segs[i]
		b.WriteString(seg.lit)
		if seg.key == "" {
			continue
		}
		v, ok := r.text(seg)
		if !ok {
			r.first.Action, r.first.Field = -1, "verify.prometheus"
			return "", r.first
		}
		b.WriteString(promEscape(v))
	}
	return b.String(), nil
}

// QueryForValidation renders the verify query with a harmless placeholder for
// every variable, so a start-up check can ask Prometheus whether it parses.
func QueryForValidation(rb *Runbook) (string, error) {
	if rb == nil || rb.Verify == nil {
		return "", errors.New("runbook has no verify query")
	}
	q := rb.Verify.Prometheus
	if !strings.Contains(q, "{{") {
		return q, nil
	}
	t, err := parseTemplate(q)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, seg := range t.segs {
		b.WriteString(seg.lit)
		if seg.key != "" {
			b.WriteString("placeholder")
		}
	}
	return b.String(), nil
}

// promEscape escapes s for the inside of a PromQL double-quoted string.
func promEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
