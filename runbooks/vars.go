package runbooks

import (
	"sort"
	"strings"
)

// Variables lists the template variables the runbook's actions and verify
// query use, as written ("upstream", "context.route"), sorted, each once: what
// an event (or an AI proposal) must supply for the runbook to be planned.
func (rb *Runbook) Variables() []string {
	seen := map[string]bool{}
	add := func(s string) {
		if !strings.Contains(s, "{{") {
			return
		}
		t, err := parseTemplate(s)
		if err != nil {
			return
		}
		for _, seg := range t.segs {
			if seg.key != "" {
				seen[seg.ref] = true
			}
		}
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			add(x)
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	for _, a := range rb.Actions {
		add(a.Target.Namespace)
		add(a.Target.Deployment)
		add(a.Target.Service)
		walk(a.Parameters)
	}
	if rb.Verify != nil {
		add(rb.Verify.Prometheus)
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ContextKey is the event key a variable reads: "upstream" and
// "context.upstream" both read context key "upstream" (shorthands look in data
// first, then context; a proposal supplies context).
func ContextKey(variable string) string {
	if k, ok := strings.CutPrefix(variable, "context."); ok {
		return k
	}
	if k, ok := strings.CutPrefix(variable, "data."); ok {
		return k
	}
	return variable
}
