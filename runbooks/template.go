package runbooks

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// varKind says where a template variable is looked up.
type varKind uint8

const (
	varLookup  varKind = iota // data, then context (Event.Lookup)
	varData                   // {{data.X}}: data only
	varContext                // {{context.X}}: context only
)

// shorthandVars are the reference playbook's variables, looked up with Event.Lookup.
var shorthandVars = []string{"upstream", "route", "client", "backup_service"}

// segment is literal text followed by at most one variable.
type segment struct {
	lit  string
	kind varKind
	key  string // "" for the trailing literal
	ref  string // the variable as written, without braces: "route", "context.route"
}

// template is a parsed parameter string: literals and variables in order.
type template struct {
	segs   []segment
	litLen int
	// single is set when the whole string is one variable, so a string value can be
	// returned as is, without building a new string.
	single bool
}

// parseTemplate parses s, which contains "{{". Spaces inside the braces are
// ignored; an unterminated "{{" or an unknown variable is an error.
func parseTemplate(s string) (*template, error) {
	t := &template{}
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			if s != "" {
				t.segs = append(t.segs, segment{lit: s})
				t.litLen += len(s)
			}
			break
		}
		j := strings.Index(s[i+2:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("unterminated {{ in %q", s)
		}
		ref := strings.TrimSpace(s[i+2 : i+2+j])
		kind, key, ok := parseVar(ref)
		if !ok {
			return nil, fmt.Errorf("unknown template variable {{%s}} (known: {{upstream}}, {{route}}, {{client}}, {{backup_service}}, {{context.<key>}}, {{data.<key>}})", ref)
		}
		t.segs = append(t.segs, segment{lit: s[:i], kind: kind, key: key, ref: ref})
		t.litLen += i
		s = s[i+2+j+2:]
	}
	t.single = len(t.segs) == 1 && t.segs[0].lit == "" && t.segs[0].key != ""
	return t, nil
}

func parseVar(ref string) (varKind, string, bool) {
	for _, v := range shorthandVars {
		if ref == v {
			return varLookup, v, true
		}
	}
	kind := varData
	key, ok := strings.CutPrefix(ref, "data.")
	if !ok {
		kind = varContext
		if key, ok = strings.CutPrefix(ref, "context."); !ok {
			return 0, "", false
		}
	}
	if key == "" {
		return 0, "", false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; !isAlnum(c) && c != '_' && c != '-' {
			return 0, "", false
		}
	}
	return kind, key, true
}

// lookup finds the variable's value in the event.
func (s *segment) lookup(e *Event) (any, bool) {
	switch s.kind {
	case varData:
		v, ok := e.Data[s.key]
		return v, ok
	case varContext:
		v, ok := e.Context[s.key]
		return v, ok
	}
	return e.Lookup(s.key)
}

// Compiled templates are a pure function of their text, so they are shared
// process-wide, keyed by that text. The loader publishes every template it parsed;
// Render reads the map with one atomic load and no lock. On a miss (a Runbook built
// by hand, or edited after loading) Render parses the string itself and does not
// cache it. Event data is substituted, never parsed, so it cannot grow the cache.
var (
	templatesMu sync.Mutex // serializes writers
	templates   atomic.Pointer[map[string]*template]
)

// publishTemplates adds ts to the shared cache, copying the map so that readers
// never see it change.
func publishTemplates(ts map[string]*template) {
	if len(ts) == 0 {
		return
	}
	templatesMu.Lock()
	defer templatesMu.Unlock()
	old := templates.Load()
	n := 0
	if old != nil {
		n = len(*old)
	}
	m := make(map[string]*template, n+len(ts))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	for k, v := range ts {
		m[k] = v
	}
	templates.Store(&m)
}
