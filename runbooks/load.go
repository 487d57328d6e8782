package runbooks

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

//go:embed defaults/*.yaml
var defaultsFS embed.FS

// Error is one problem in a runbook file. Error() reads "file:line: path: msg",
// where path names the field, like actions[0].parameters.pattern.
type Error struct {
	File   string
	Line   int // 1-based; 0 when the problem is not in a file (an empty directory)
	Column int
	Path   string
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found by one load, in file and line order. The loader
// reports them all at once, so one start-up shows everything to fix.
type Errors []*Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find the first *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Load reads every *.yaml and *.yml file of dir, in file name order; a file may
// hold several documents separated by "---", one runbook each. It returns Errors
// listing every problem in every file, or a Set of all the runbooks.
func Load(dir string) (*Set, error) {
	return load(os.DirFS(dir), ".", dir, func(name string) string { return filepath.Join(dir, name) })
}

// LoadFS is Load on a directory of fsys (fstest.MapFS in tests, embed.FS).
func LoadFS(fsys fs.FS, dir string) (*Set, error) {
	return load(fsys, dir, dir, func(name string) string { return path.Join(dir, name) })
}

// LoadDefaults returns the six runbooks of the reference playbook, embedded from
// runbooks/defaults. A failure here is a bug in this package, caught by its tests.
func LoadDefaults() (*Set, error) { return LoadFS(defaultsFS, "defaults") }

func load(fsys fs.FS, dir, shownDir string, shown func(name string) string) (*Set, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path in it is relative to fsys; we print shownDir
		}
		return nil, Errors{{File: shownDir, Msg: "cannot read runbook directory: " + err.Error()}}
	}
	var (
		errs  Errors
		books []*Runbook
		seen  = map[string]string{} // runbook name → "file:line" of its first definition
		tmpls = map[string]*template{}
	)
	for _, ent := range entries { // fs.ReadDir sorts by file name
		name := ent.Name()
		if ext := path.Ext(name); ent.IsDir() || ext != ".yaml" && ext != ".yml" {
			continue
		}
		file := shown(name)
		src, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			errs = append(errs, &Error{File: file, Msg: "cannot read: " + err.Error()})
			continue
		}
		d := &decoder{file: file, templates: tmpls}
		for _, doc := range d.stream(src) {
			if doc.name != "" {
				if first, dup := seen[doc.name]; dup {
					d.errorf(doc.nameNode, "name", "duplicate runbook name %q (first defined at %s)", doc.name, first)
					continue
				}
				seen[doc.name] = fmt.Sprintf("%s:%d", file, doc.nameNode.Line)
			}
			if doc.rb != nil {
				books = append(books, doc.rb)
			}
		}
		errs = append(errs, d.errs...)
	}
	if len(errs) == 0 && len(books) == 0 {
		errs = append(errs, &Error{File: shownDir, Msg: "no runbooks found (want *.yaml or *.yml files)"})
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *Error) int {
			return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
		})
		return nil, errs
	}
	publishTemplates(tmpls)
	return newSet(books), nil
}

// decoder turns the yaml.Node tree of one file into runbooks, collecting errors
// with their line and field path instead of stopping at the first.
type decoder struct {
	file      string
	errs      Errors
	templates map[string]*template // every template parsed, for the shared cache
}

// decoded is one document's outcome. rb is nil when the document had errors; name
// is set whenever the name itself was valid, so duplicates are still reported.
type decoded struct {
	rb       *Runbook
	name     string
	nameNode *yaml.Node
}

func (d *decoder) errorf(n *yaml.Node, p string, format string, args ...any) {
	e := &Error{File: d.file, Path: p, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// stream decodes every document of a file. A syntax error ends the file (the
// parser cannot resynchronize) but not the load.
func (d *decoder) stream(src []byte) []decoded {
	var out []decoded
	dec := yaml.NewDecoder(bytes.NewReader(src))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err == io.EOF {
			break
		}
		if err != nil {
			e := &Error{File: d.file, Msg: err.Error()}
			if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
				e.Line, _ = strconv.Atoi(m[1])
				e.Msg = m[2]
			}
			d.errs = append(d.errs, e)
			break
		}
		if len(doc.Content) == 0 {
			continue
		}
		root := doc.Content[0]
		if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" && root.Value == "" {
			continue // an empty document, e.g. after a trailing "---"
		}
		out = append(out, d.runbook(root))
	}
	return out
}

// Fields of each mapping. Everything else is an error, except under parameters
// and trigger.conditions, whose keys are open.
var (
	runbookFields = []string{"name", "description", "trigger", "actions", "safety", "estimatedRecoveryTime", "verify", "approvers", "fourEyes"}
	triggerFields = []string{"eventType", "conditions"}
	actionFields  = []string{"type", "resource", "operation", "target", "parameters", "duration", "gradual", "risk"}
	targetFields  = []string{"namespace", "deployment", "service"}
	safetyFields  = []string{"requiresApproval", "maxExecutionsPerHour", "rollbackAfterMinutes", "dryRun", "cooldown", "autoRollback"}
	verifyFields  = []string{"prometheus", "within", "every", "onVerifyFailure"}
	rangeFields   = []string{"min", "max"}
)

func (d *decoder) runbook(n *yaml.Node) decoded {
	before := len(d.errs)
	var out decoded
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "", "a runbook must be a mapping, got %s", describe(n))
		return out
	}
	rb := &Runbook{Source: fmt.Sprintf("%s:%d", d.file, n.Line)}
	var name, trigger, actions, safety *yaml.Node
	d.mapping(n, "", runbookFields, func(key string, k, v *yaml.Node) {
		switch key {
		case "name":
			name = v
			if s, ok := d.str(v, key); ok {
				if !isDNSLabel(s) {
					d.errorf(v, key, "%q is not a valid runbook name (lowercase letters, digits and '-', at most 63 bytes)", s)
				} else {
					out.name, out.nameNode = s, v
				}
				rb.Name = s
			}
		case "description":
			rb.Description, _ = d.str(v, key)
		case "trigger":
			trigger = v
			rb.Trigger = d.trigger(v, key)
		case "actions":
			actions = v
			rb.Actions = d.actions(v, key)
			for _, item := range v.Content {
				rb.ActionSources = append(rb.ActionSources, fmt.Sprintf("%s:%d", d.file, item.Line))
			}
		case "safety":
			safety = v
			rb.Safety = d.safety(v, key)
		case "estimatedRecoveryTime":
			rb.EstimatedRecoveryTime, _ = d.nonNegInt(v, key)
		case "verify":
			rb.Verify = d.verify(v, key)
		case "approvers":
			rb.Approvers = d.strings(v, key)
		case "fourEyes":
			rb.FourEyes, _ = d.bool(v, key)
		}
	})
	if name == nil {
		d.errorf(n, "name", "missing required field")
	}
	if trigger == nil {
		d.errorf(n, "trigger", "missing required field")
	}
	if actions == nil {
		d.errorf(n, "actions", "missing required field")
	}
	if safety == nil {
		d.errorf(n, "safety", "missing required field (maxExecutionsPerHour at least)")
	}
	if len(d.errs) > before {
		return out
	}
	rb.Hash = hashRunbook(rb)
	out.rb = rb
	return out
}

// hasErrorAt reports whether an error for path p was recorded since index from, so
// a field with a bad value is not also reported as missing.
func (d *decoder) hasErrorAt(p string, from int) bool {
	for _, e := range d.errs[from:] {
		if e.Path == p {
			return true
		}
	}
	return false
}

// hashRunbook is the hex SHA-256 of the runbook's canonical JSON encoding (maps
// with sorted keys, numbers as float64). Comments and layout do not change it; any
// change of meaning does. Plans record it, so an audit can tell which version ran.
func hashRunbook(rb *Runbook) string {
	c := *rb
	c.Hash, c.Source = "", ""
	b, err := json.Marshal(&c)
	if err != nil {
		// Unreachable: the loader only produces JSON-encodable values (finite
		// numbers, string keys). Hash the error so the value is still stable.
		b = []byte(err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (d *decoder) trigger(n *yaml.Node, p string) Trigger {
	var t Trigger
	var eventType *yaml.Node
	d.mapping(n, p, triggerFields, func(key string, k, v *yaml.Node) {
		switch key {
		case "eventType":
			eventType = v
			if s, ok := d.str(v, p+".eventType"); ok {
				if !EventType(s).Valid() {
					d.errorf(v, p+".eventType", "unknown event type %q (known: %s)", s, joinTypes(EventTypes))
				}
				t.EventType = EventType(s)
			}
		case "conditions":
			t.Conditions = d.conditions(v, p+".conditions")
		}
	})
	if n.Kind == yaml.MappingNode && eventType == nil {
		d.errorf(n, p+".eventType", "missing required field")
	}
	return t
}

// conditions decodes trigger.conditions, an open map, keeping file order: the
// matcher tests them in that order.
func (d *decoder) conditions(n *yaml.Node, p string) []Condition {
	var out []Condition
	d.mapping(n, p, nil, func(key string, k, v *yaml.Node) {
		cp := p + "." + key
		c := Condition{Key: key}
		switch key {
		case "confidence":
			// The event's own confidence, a probability: only a range makes sense.
			if v.Kind != yaml.MappingNode {
				d.errorf(v, cp, "must be {min, max} with numbers between 0 and 1, got %s", describe(v))
				return
			}
			if !d.bounds(v, cp, &c, 0, 1) {
				return
			}
		case "severity":
			c.Equals, c.AnyOf = d.severity(v, cp)
			if c.Equals == nil && c.AnyOf == nil {
				return
			}
		default:
			switch v.Kind {
			case yaml.MappingNode:
				if !d.bounds(v, cp, &c, math.Inf(-1), math.Inf(1)) {
					return
				}
			case yaml.SequenceNode:
				if len(v.Content) == 0 {
					d.errorf(v, cp, "an any-of list must not be empty")
					return
				}
				ok := true
				for i, item := range v.Content {
					s, good := d.scalar(item, fmt.Sprintf("%s[%d]", cp, i))
					ok = ok && good
					c.AnyOf = append(c.AnyOf, s)
				}
				if !ok {
					return
				}
			default:
				s, ok := d.scalar(v, cp)
				if !ok {
					return
				}
				c.Equals = s
			}
		}
		out = append(out, c)
	})
	return out
}

// bounds decodes a {min, max} condition: inclusive numeric bounds within [lo, hi].
func (d *decoder) bounds(n *yaml.Node, p string, c *Condition, lo, hi float64) bool {
	before, ok := len(d.errs), true
	d.mapping(n, p, rangeFields, func(key string, k, v *yaml.Node) {
		f, good := d.float(v, p+"."+key)
		if !good {
			ok = false
			return
		}
		if f < lo || f > hi {
			d.errorf(v, p+"."+key, "%v is outside %v..%v", f, lo, hi)
			ok = false
			return
		}
		if key == "min" {
			c.Min = &f
		} else {
			c.Max = &f
		}
	})
	if !ok || len(d.errs) > before {
		return false
	}
	if c.Min == nil && c.Max == nil {
		d.errorf(n, p, "a range needs min, max or both")
		return false
	}
	if c.Min != nil && c.Max != nil && *c.Min > *c.Max {
		d.errorf(n, p, "min %v is greater than max %v", *c.Min, *c.Max)
		return false
	}
	return true
}

func (d *decoder) severity(n *yaml.Node, p string) (any, []any) {
	one := func(n *yaml.Node, p string) (string, bool) {
		s, ok := d.str(n, p)
		if ok && !Severity(s).Valid() {
			d.errorf(n, p, "%q is not a severity (INFO, WARNING or CRITICAL)", s)
			return "", false
		}
		return s, ok
	}
	if n.Kind == yaml.SequenceNode {
		if len(n.Content) == 0 {
			d.errorf(n, p, "an any-of list must not be empty")
			return nil, nil
		}
		var out []any
		ok := true
		for i, item := range n.Content {
			s, good := one(item, fmt.Sprintf("%s[%d]", p, i))
			ok = ok && good
			out = append(out, s)
		}
		if !ok {
			return nil, nil
		}
		return nil, out
	}
	if s, ok := one(n, p); ok {
		return s, nil
	}
	return nil, nil
}

// scalar decodes a condition value: a string, a number (as float64) or a bool.
func (d *decoder) scalar(n *yaml.Node, p string) (any, bool) {
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!str":
			return n.Value, true
		case "!!int", "!!float":
			return d.float(n, p)
		case "!!bool":
			return d.bool(n, p)
		}
	}
	d.typeErr(n, p, "a scalar (string, number or boolean), a list of scalars or {min, max}")
	return nil, false
}

func (d *decoder) actions(n *yaml.Node, p string) []Action {
	if n.Kind != yaml.SequenceNode {
		d.typeErr(n, p, "a list of actions")
		return nil
	}
	if len(n.Content) == 0 {
		d.errorf(n, p, "must have at least one action")
		return nil
	}
	out := make([]Action, len(n.Content))
	for i, item := range n.Content {
		d.action(item, fmt.Sprintf("%s[%d]", p, i), &out[i])
	}
	return out
}

func (d *decoder) action(n *yaml.Node, p string, a *Action) {
	var typ *yaml.Node
	d.mapping(n, p, actionFields, func(key string, k, v *yaml.Node) {
		fp := p + "." + key
		switch key {
		case "type":
			typ = v
			if s, ok := d.str(v, fp); ok {
				if !ActionType(s).Valid() {
					d.errorf(v, fp, "unknown action type %q (known: %s)", s, joinTypes(ActionTypes))
				}
				a.Type = ActionType(s)
			}
		case "resource":
			a.Resource, _ = d.literal(v, fp)
		case "operation":
			a.Operation, _ = d.literal(v, fp)
		case "target":
			d.mapping(v, fp, targetFields, func(key string, k, v *yaml.Node) {
				s, ok := d.templated(v, fp+"."+key)
				if !ok {
					return
				}
				switch key {
				case "namespace":
					a.Target.Namespace = s
				case "deployment":
					a.Target.Deployment = s
				case "service":
					a.Target.Service = s
				}
			})
		case "parameters":
			if v.Kind != yaml.MappingNode {
				d.typeErr(v, fp, "a mapping")
				return
			}
			a.Parameters = d.object(v, fp)
		case "duration":
			a.Duration, _ = d.nonNegInt(v, fp)
		case "gradual":
			a.Gradual, _ = d.bool(v, fp)
		case "risk":
			if s, ok := d.str(v, fp); ok {
				if s != "" && s != "low" && s != "high" {
					d.errorf(v, fp, "%q is not a risk (low or high)", s)
				}
				a.Risk = s
			}
		}
	})
	if n.Kind == yaml.MappingNode && typ == nil {
		d.errorf(n, p+".type", "missing required field")
	}
	// The rules of each action type's parameters belong to its driver, which
	// checks literal actions at start-up (bot) and rendered ones at plan time.
}

func (d *decoder) safety(n *yaml.Node, p string) Safety {
	var s Safety
	var max *yaml.Node
	d.mapping(n, p, safetyFields, func(key string, k, v *yaml.Node) {
		fp := p + "." + key
		switch key {
		case "requiresApproval":
			s.RequiresApproval, _ = d.bool(v, fp)
		case "maxExecutionsPerHour":
			max = v
			if i, ok := d.int(v, fp); ok {
				if i < 1 {
					d.errorf(v, fp, "must be at least 1, got %d", i)
				}
				s.MaxExecutionsPerHour = i
			}
		case "rollbackAfterMinutes":
			s.RollbackAfterMinutes, _ = d.nonNegInt(v, fp)
		case "dryRun":
			s.DryRun, _ = d.bool(v, fp)
		case "cooldown":
			s.Cooldown, _ = d.duration(v, fp)
		case "autoRollback":
			s.AutoRollback, _ = d.bool(v, fp)
		}
	})
	if n.Kind == yaml.MappingNode && max == nil {
		d.errorf(n, p+".maxExecutionsPerHour", "missing required field")
	}
	return s
}

func (d *decoder) verify(n *yaml.Node, p string) *Verify {
	before := len(d.errs)
	v := &Verify{}
	d.mapping(n, p, verifyFields, func(key string, k, val *yaml.Node) {
		fp := p + "." + key
		switch key {
		case "prometheus":
			var ok bool
			if v.Prometheus, ok = d.str(val, fp); ok && strings.Contains(v.Prometheus, "{{") {
				if _, err := parseTemplate(v.Prometheus); err != nil {
					d.errorf(val, fp, "%v", err)
				}
			}
		case "within":
			v.Within, _ = d.duration(val, fp)
		case "every":
			v.Every, _ = d.duration(val, fp)
		case "onVerifyFailure":
			if s, ok := d.str(val, fp); ok {
				if s != "" && s != "rollback" && s != "escalate" {
					d.errorf(val, fp, "%q is not rollback or escalate", s)
				}
				v.OnVerifyFailure = s
			}
		}
	})
	if n.Kind == yaml.MappingNode && strings.TrimSpace(v.Prometheus) == "" && !d.hasErrorAt(p+".prometheus", before) {
		d.errorf(n, p+".prometheus", "a PromQL query is required when verify is present")
	}
	return v
}

// mapping walks a mapping node's pairs in file order, reporting non-string,
// duplicate and (when known is non-nil) unknown keys.
func (d *decoder) mapping(n *yaml.Node, p string, known []string, fn func(key string, k, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		d.typeErr(n, p, "a mapping")
		return
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kp := join(p, k.Value)
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, p, "keys must be strings, got %s", describe(k))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, kp, "duplicate key")
			continue
		}
		seen[k.Value] = true
		if known != nil && !slices.Contains(known, k.Value) {
			d.errorf(k, kp, "unknown field%s", suggest(k.Value, known))
			continue
		}
		if v.Kind == yaml.AliasNode {
			d.errorf(v, kp, "YAML aliases are not supported")
			continue
		}
		fn(k.Value, k, v)
	}
}

// suggest offers the known field a misspelt key probably meant.
func suggest(key string, known []string) string {
	for _, f := range known {
		if strings.EqualFold(strings.ReplaceAll(key, "_", ""), f) {
			return fmt.Sprintf(" (did you mean %q?)", f)
		}
	}
	return fmt.Sprintf(" (known: %s)", strings.Join(known, ", "))
}

func join(p, key string) string {
	if p == "" {
		return key
	}
	return p + "." + key
}

// object decodes an open mapping (parameters) into map[string]any with values as
// encoding/json would produce them: float64 numbers, map[string]any, []any.
// top, when set, sees every top-level key's value node.
func (d *decoder) object(n *yaml.Node, p string) map[string]any {
	out := make(map[string]any, len(n.Content)/2)
	d.mapping(n, p, nil, func(key string, k, v *yaml.Node) {
		kp := p + "." + key
		if strings.Contains(key, "{{") {
			d.errorf(k, kp, "templates are not expanded in keys")
			return
		}
		if val, ok := d.value(v, kp); ok {
			out[key] = val
		}
	})
	return out
}

func (d *decoder) value(n *yaml.Node, p string) (any, bool) {
	switch n.Kind {
	case yaml.MappingNode:
		return d.object(n, p), true
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			if v, ok := d.value(item, fmt.Sprintf("%s[%d]", p, i)); ok {
				out = append(out, v)
			}
		}
		return out, true
	case yaml.AliasNode:
		d.errorf(n, p, "YAML aliases are not supported")
		return nil, false
	}
	switch n.ShortTag() {
	case "!!str":
		return d.templated(n, p)
	case "!!int", "!!float":
		return d.float(n, p)
	case "!!bool":
		return d.bool(n, p)
	case "!!null":
		return nil, true
	case "!!timestamp":
		return n.Value, true // as written; JSON has no timestamp type
	}
	d.errorf(n, p, "unsupported YAML value %s", describe(n))
	return nil, false
}

// templated decodes a string that may hold {{variables}}, parsing them now so an
// unknown variable fails the load and Render finds them compiled.
func (d *decoder) templated(n *yaml.Node, p string) (string, bool) {
	s, ok := d.str(n, p)
	if !ok || !strings.Contains(s, "{{") {
		return s, ok
	}
	t, err := parseTemplate(s)
	if err != nil {
		d.errorf(n, p, "%v", err)
		return s, false
	}
	d.templates[s] = t
	return s, true
}

// literal decodes a string field that Render does not expand, refusing a
// template there rather than passing "{{…}}" on to a driver.
func (d *decoder) literal(n *yaml.Node, p string) (string, bool) {
	s, ok := d.str(n, p)
	if ok && strings.Contains(s, "{{") {
		d.errorf(n, p, "templates are expanded only in parameters and target")
		return s, false
	}
	return s, ok
}

func (d *decoder) typeErr(n *yaml.Node, p, want string) {
	if n.Kind == yaml.AliasNode {
		d.errorf(n, p, "YAML aliases are not supported")
		return
	}
	d.errorf(n, p, "must be %s, got %s", want, describe(n))
}

func (d *decoder) str(n *yaml.Node, p string) (string, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		return n.Value, true
	}
	d.typeErr(n, p, "a string")
	return "", false
}

func (d *decoder) strings(n *yaml.Node, p string) []string {
	if n.Kind != yaml.SequenceNode {
		d.typeErr(n, p, "a list of strings")
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, item := range n.Content {
		if s, ok := d.str(item, fmt.Sprintf("%s[%d]", p, i)); ok {
			out = append(out, s)
		}
	}
	return out
}

func (d *decoder) bool(n *yaml.Node, p string) (bool, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		var b bool
		if n.Decode(&b) == nil {
			return b, true
		}
	}
	d.typeErr(n, p, "true or false")
	return false, false
}

func (d *decoder) int(n *yaml.Node, p string) (int, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		var i int
		if n.Decode(&i) == nil {
			return i, true
		}
	}
	d.typeErr(n, p, "an integer")
	return 0, false
}

func (d *decoder) nonNegInt(n *yaml.Node, p string) (int, bool) {
	i, ok := d.int(n, p)
	if ok && i < 0 {
		d.errorf(n, p, "must not be negative, got %d", i)
		return 0, false
	}
	return i, ok
}

// float decodes a YAML int or float as float64, refusing .inf and .nan, which
// JSON cannot carry.
func (d *decoder) float(n *yaml.Node, p string) (float64, bool) {
	if n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!int" || n.ShortTag() == "!!float") {
		var f float64
		if n.Decode(&f) == nil {
			if math.IsInf(f, 0) || math.IsNaN(f) {
				d.errorf(n, p, "must be a finite number, got %s", n.Value)
				return 0, false
			}
			return f, true
		}
	}
	d.typeErr(n, p, "a number")
	return 0, false
}

func (d *decoder) duration(n *yaml.Node, p string) (Duration, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.typeErr(n, p, `a duration such as "30s" or "5m"`)
		return 0, false
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.errorf(n, p, "%q is not a duration such as 30s or 5m", n.Value)
		return 0, false
	}
	if v < 0 {
		d.errorf(n, p, "must not be negative, got %s", n.Value)
		return 0, false
	}
	return Duration(v), true
}

// describe names a node's kind and value for "got …" in messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!str":
		return fmt.Sprintf("string %q", truncate(n.Value))
	case "!!int":
		return "integer " + truncate(n.Value)
	case "!!float":
		return "number " + truncate(n.Value)
	case "!!bool":
		return "boolean " + n.Value
	case "!!null":
		return "null"
	}
	return fmt.Sprintf("%s %q", strings.TrimPrefix(n.ShortTag(), "!!"), truncate(n.Value))
}

func joinTypes[T ~string](ts []T) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}
