package runbooks_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/recoverbot/recoverbot/runbooks"
)

// loadSeeds are runbook files as people write them, and the mistakes they make.
var loadSeeds = []string{
	"name: a\ntrigger: {eventType: ERROR_RATE_SPIKE}\nactions: [{type: CACHE_CLEAR, parameters: {pattern: 'x:*'}}]\nsafety: {maxExecutionsPerHour: 1}\n",
	"name: a\ntrigger: {eventType: ERROR_RATE_SPIKE}\nactions: [{type: CACHE_CLEAR, parameters: {pattern: '{{route}}:*'}}]\nsafety: {maxExecutionsPerHour: 1}\n---\nname: a\ntrigger: {eventType: ERROR_RATE_SPIKE}\nactions: [{type: CACHE_CLEAR, parameters: {pattern: 'x:*'}}]\nsafety: {maxExecutionsPerHour: 1}\n",
	"name: b\ntrigger:\n  eventType: CIRCUIT_BREAKER_CANDIDATE\n  conditions:\n    confidence: {min: 0.5, max: 0.2}\n    errorRate: [1, 2, {x: 1}]\nactions:\n  - type: CIRCUIT_BREAKER\n    operation: OPEN\n    parameters: {service: '{{upstream}}'}\n    duration: -1\nsafety: {maxExecutionsPerHour: 0, cooldown: 5x}\n",
	"name: c\ntrigger: {eventType: UPSTREAM_DEGRADATION}\nactions:\n  - type: FAILOVER\n    parameters: {from: '{{nope}}', to: '{{upstream'}\nsafety: {maxExecutionsPerHour: 1}\nverify: {prometheus: 'up{job=\"{{route}}\"} == 1', within: 1m, every: 0s, onVerifyFailure: pray}\n",
	"name: Bad_Name\ntriger: {eventType: X}\nactions: {}\nsafety: []\n",
	"- just\n- a list\n",
	"name: d\n\ttrigger: {}\n",
	"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
	"name: e\ntrigger: {eventType: RATE_LIMIT_BREACH}\nactions: [{type: RATE_LIMIT, parameters: {target: 'a b', limit: -1, window: 0}}]\nsafety: {maxExecutionsPerHour: 99999999999999999999}\n",
	"name: f\ntrigger: {eventType: CAPACITY_WARNING}\nactions: [{type: RESTART_POD, target: {deployment: x}, parameters: {deployment: y}, risk: medium}]\nsafety: {maxExecutionsPerHour: 1}\napprovers: [U1, 2]\nfourEyes: maybe\n",
	"\ufeffname: g\r\ntrigger: {eventType: LATENCY_ANOMALY}\r\nactions: [{type: SCALE_RESOURCE, resource: X, gradual: true, parameters: {to: 5, increment: 0}}]\r\nsafety: {maxExecutionsPerHour: 1}\r\n",
	"name: h\x01\n", "---\n---\n", "", "{{", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
	"name: i\ntrigger: {eventType: ERROR_RATE_SPIKE}\nactions: [{type: CACHE_CLEAR, parameters: {pattern: '*'}}]\nsafety: {maxExecutionsPerHour: 1}\n",
	"name: j\ntrigger: {eventType: ERROR_RATE_SPIKE, conditions: {severity: [WARNING, LOUD]}}\nactions: [{type: CACHE_CLEAR, parameters: {pattern: 'a:{{context.k-1}}', nested: {list: ['{{data.x}}', 1, true, null]}}}]\nsafety: {maxExecutionsPerHour: 1, rollbackAfterMinutes: 1, dryRun: true}\n",
}

// FuzzLoad writes random YAML to a file and loads its directory: no panic, no
// hang, and either runbooks that are whole or Errors whose every item names the
// file and a line in it, or says plainly what is wrong.
func FuzzLoad(f *testing.F) {
	defaults, err := fs.Glob(os.DirFS("defaults"), "*.yaml")
	if err != nil || len(defaults) == 0 {
		f.Fatalf("default runbooks: %v %v", defaults, err)
	}
	for _, name := range defaults {
		b, err := os.ReadFile(filepath.Join("defaults", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range loadSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		dir := t.TempDir()
		file := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(file, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		type result struct {
			set *runbooks.Set
			err error
		}
		done := make(chan result, 1)
		go func() {
			set, err := runbooks.Load(dir)
			done <- result{set, err}
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Load did not return within 10s on %q", doc)
		}
		lines := bytes.Count(doc, []byte("\n")) + 1
		if r.err != nil {
			checkLoadErrors(t, doc, dir, file, lines, r.err)
			return
		}
		checkLoaded(t, doc, file, lines, r.set)
	})
}

func checkLoadErrors(t *testing.T, doc []byte, dir, file string, lines int, err error) {
	t.Helper()
	var es runbooks.Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("input %q: error %T %v is not a non-empty runbooks.Errors", doc, err, err)
	}
	if err.Error() == "" {
		t.Fatalf("input %q: empty error text", doc)
	}
	for _, e := range es {
		switch {
		case e == nil:
			t.Fatalf("input %q: nil item in %v", doc, es)
		case e.File != file && e.File != dir:
			t.Fatalf("input %q: error %q names file %q, want %q", doc, e, e.File, file)
		case strings.TrimSpace(e.Msg) == "" || !utf8.ValidString(e.Msg):
			t.Fatalf("input %q: error %#v has no readable message", doc, e)
		case e.Line < 0 || e.Line > lines:
			t.Fatalf("input %q: error %q at line %d of a %d-line file", doc, e, e.Line, lines)
		case e.Line == 0 && e.File == file && strings.HasPrefix(e.Msg, "yaml: line "):
			t.Fatalf("input %q: error %q carries a line in its text but not in Line", doc, e)
		}
	}
}

func checkLoaded(t *testing.T, doc []byte, file string, lines int, set *runbooks.Set) {
	t.Helper()
	books := set.All()
	if len(books) == 0 {
		t.Fatalf("input %q: loaded without error but no runbook", doc)
	}
	for _, rb := range books {
		src, line, ok := strings.Cut(rb.Source, file+":")
		n, err := strconv.Atoi(line)
		if !ok || src != "" || err != nil || n < 1 || n > lines {
			t.Fatalf("input %q: runbook %q has source %q, want %s:<line 1..%d>", doc, rb.Name, rb.Source, file, lines)
		}
		if rb.Name == "" || !rb.Trigger.EventType.Valid() || len(rb.Actions) == 0 || rb.Safety.MaxExecutionsPerHour < 1 || len(rb.Hash) != 64 {
			t.Fatalf("input %q: incomplete runbook accepted: %+v", doc, rb)
		}
		for i, a := range rb.Actions {
			if !a.Type.Valid() {
				t.Fatalf("input %q: runbook %q action %d has type %q", doc, rb.Name, i, a.Type)
			}
		}
		if set.Get(rb.Name) != rb {
			t.Fatalf("input %q: Get(%q) does not find it", doc, rb.Name)
		}
		// Whatever loaded must render to a plan or a *RenderError, never panic.
		for _, e := range []*runbooks.Event{plainEvent("payments", "payments-dr"), plainEvent("a b", "*")} {
			e.Type = rb.Trigger.EventType
			_ = set.Match(e)
			if _, err := runbooks.Render(rb, e); err != nil {
				var re *runbooks.RenderError
				if !errors.As(err, &re) || re.Reason == "" {
					t.Fatalf("input %q: runbook %q: Render error %T %v is not a *RenderError with a reason", doc, rb.Name, err, err)
				}
			}
		}
	}
}

// plainEvent sets every shorthand variable, in data and context, to a or b.
func plainEvent(a, b string) *runbooks.Event {
	return &runbooks.Event{Severity: runbooks.Warning, Confidence: 0.9,
		Data:    map[string]any{"route": a, "x": a},
		Context: map[string]any{"upstream": a, "client": a, "backup_service": b, "k-1": a}}
}
