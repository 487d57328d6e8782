package runbooks_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/recoverbot/recoverbot/runbooks"
)

// referenceEvents reads ../examples/events: each file holds one event and is named
// after the runbook it must match.
func referenceEvents(t testing.TB) map[string]*runbooks.Event {
	t.Helper()
	files, err := filepath.Glob("../examples/events/*.json")
	if err != nil || len(files) != 6 {
		t.Fatalf("examples/events: %d files (%v), want 6", len(files), err)
	}
	out := map[string]*runbooks.Event{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var e runbooks.Event
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = &e
	}
	return out
}

func defaults(t testing.TB) *runbooks.Set {
	t.Helper()
	set, err := runbooks.LoadDefaults()
	if err != nil {
		t.Fatalf("LoadDefaults: %v", err)
	}
	return set
}

func event(js string) *runbooks.Event {
	var e runbooks.Event
	if err := json.Unmarshal([]byte(js), &e); err != nil {
		panic(err)
	}
	return &e
}

func runbookName(rb *runbooks.Runbook) string {
	if rb == nil {
		return "<none>"
	}
	return rb.Name
}

func TestMatchReferenceEvents(t *testing.T) {
	set := defaults(t)
	for want, e := range referenceEvents(t) {
		t.Run(want, func(t *testing.T) {
			if got := runbookName(set.Match(e)); got != want {
				t.Errorf("Match(%s event) = %s, want %s", e.Type, got, want)
			}
		})
	}
}

func TestMatchDefaultsRefuse(t *testing.T) {
	set := defaults(t)
	tests := []struct {
		name, event string
	}{
		// The reference playbook matched this one: undefined < 90 is false in JS.
		{"capacity warning without utilization", `{"type":"CAPACITY_WARNING","severity":"WARNING","confidence":0.85,"data":{"resourceType":"MEMORY"}}`},
		{"utilization below min", `{"type":"CAPACITY_WARNING","confidence":0.85,"data":{"resourceType":"MEMORY","utilization":89.9}}`},
		{"breaker candidate without errorRate", `{"type":"CIRCUIT_BREAKER_CANDIDATE","confidence":0.9,"context":{"upstream":"payments"}}`},
		{"latency without cause", `{"type":"LATENCY_ANOMALY","severity":"WARNING","confidence":0.9}`},
		{"latency with another cause", `{"type":"LATENCY_ANOMALY","severity":"WARNING","confidence":0.9,"context":{"cause":"NETWORK"}}`},
		{"latency with wrong severity", `{"type":"LATENCY_ANOMALY","severity":"CRITICAL","confidence":0.9,"context":{"cause":"DATABASE"}}`},
		{"confidence below min", `{"type":"UPSTREAM_DEGRADATION","severity":"CRITICAL","confidence":0.84}`},
		{"event type with no runbook", `{"type":"RECOVERY_SIGNAL","severity":"INFO","confidence":1}`},
		{"unknown event type", `{"type":"SOMETHING","confidence":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := set.Match(event(tt.event)); got != nil {
				t.Errorf("Match = %s, want no match", got.Name)
			}
		})
	}
	if got := set.Match(nil); got != nil {
		t.Errorf("Match(nil) = %s, want nil", got.Name)
	}
}

func TestMatchConditions(t *testing.T) {
	set := mustLoad(t, map[string]string{"a.yaml": `name: ranges
trigger:
  eventType: CAPACITY_WARNING
  conditions:
    utilization: {min: 90, max: 95}
    confidence: {min: 0.5, max: 0.9}
actions: [{type: CACHE_CLEAR, parameters: {pattern: "a:*"}}]
safety: {maxExecutionsPerHour: 1}
---
name: equality
trigger:
  eventType: LATENCY_ANOMALY
  conditions:
    cause: DATABASE
    code: 503
    canary: false
actions: [{type: CACHE_CLEAR, parameters: {pattern: "a:*"}}]
safety: {maxExecutionsPerHour: 1}
---
name: any-of
trigger:
  eventType: ERROR_RATE_SPIKE
  conditions:
    errorCategory: [5xx, timeout, 429]
    severity: [WARNING, CRITICAL]
actions: [{type: CACHE_CLEAR, parameters: {pattern: "a:*"}}]
safety: {maxExecutionsPerHour: 1}
`})
	tests := []struct {
		name  string
		event string
		want  string
	}{
		{"inside range", `{"type":"CAPACITY_WARNING","confidence":0.7,"data":{"utilization":92}}`, "ranges"},
		{"at min, inclusive", `{"type":"CAPACITY_WARNING","confidence":0.5,"data":{"utilization":90}}`, "ranges"},
		{"at max, inclusive", `{"type":"CAPACITY_WARNING","confidence":0.9,"data":{"utilization":95}}`, "ranges"},
		{"above max", `{"type":"CAPACITY_WARNING","confidence":0.7,"data":{"utilization":95.01}}`, "<none>"},
		{"confidence above max", `{"type":"CAPACITY_WARNING","confidence":0.95,"data":{"utilization":92}}`, "<none>"},
		{"numeric string in range", `{"type":"CAPACITY_WARNING","confidence":0.7,"data":{"utilization":"92"}}`, "ranges"},
		{"non-numeric string", `{"type":"CAPACITY_WARNING","confidence":0.7,"data":{"utilization":"high"}}`, "<none>"},
		{"null value", `{"type":"CAPACITY_WARNING","confidence":0.7,"data":{"utilization":null}}`, "<none>"},
		{"boolean value", `{"type":"CAPACITY_WARNING","confidence":0.7,"data":{"utilization":true}}`, "<none>"},
		{"key in context", `{"type":"CAPACITY_WARNING","confidence":0.7,"context":{"utilization":93}}`, "ranges"},
		{"data wins over context", `{"type":"CAPACITY_WARNING","confidence":0.7,"data":{"utilization":50},"context":{"utilization":93}}`, "<none>"},

		{"all equal", `{"type":"LATENCY_ANOMALY","data":{"cause":"DATABASE","code":503,"canary":false}}`, "equality"},
		{"number equals numeric string", `{"type":"LATENCY_ANOMALY","data":{"cause":"DATABASE","code":"503","canary":false}}`, "equality"},
		{"string differs", `{"type":"LATENCY_ANOMALY","data":{"cause":"database","code":503,"canary":false}}`, "<none>"},
		{"number differs", `{"type":"LATENCY_ANOMALY","data":{"cause":"DATABASE","code":500,"canary":false}}`, "<none>"},
		{"bool is not its string", `{"type":"LATENCY_ANOMALY","data":{"cause":"DATABASE","code":503,"canary":"false"}}`, "<none>"},
		{"string is not a number", `{"type":"LATENCY_ANOMALY","data":{"cause":"DATABASE","code":503,"canary":0}}`, "<none>"},
		{"one key missing", `{"type":"LATENCY_ANOMALY","data":{"cause":"DATABASE","code":503}}`, "<none>"},

		{"any-of first", `{"type":"ERROR_RATE_SPIKE","severity":"WARNING","data":{"errorCategory":"5xx"}}`, "any-of"},
		{"any-of number", `{"type":"ERROR_RATE_SPIKE","severity":"CRITICAL","data":{"errorCategory":429}}`, "any-of"},
		{"any-of none", `{"type":"ERROR_RATE_SPIKE","severity":"WARNING","data":{"errorCategory":"4xx"}}`, "<none>"},
		{"severity not listed", `{"type":"ERROR_RATE_SPIKE","severity":"INFO","data":{"errorCategory":"5xx"}}`, "<none>"},
		{"severity missing", `{"type":"ERROR_RATE_SPIKE","data":{"errorCategory":"5xx"}}`, "<none>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := event(tt.event)
			if got := runbookName(set.Match(ev)); got != tt.want {
				t.Errorf("Match = %s, want %s", got, tt.want)
			}
			// Unmet is the same check: empty exactly when the event's only
			// candidate matches.
			for _, rb := range set.All() {
				if rb.Trigger.EventType != ev.Type {
					continue
				}
				if unmet := set.Unmet(rb, ev); (len(unmet) == 0) != (tt.want == rb.Name) {
					t.Errorf("Unmet(%s) = %q, but Match = %s", rb.Name, unmet, tt.want)
				}
			}
		})
	}
}

func TestMatchFirstInLoadOrderWins(t *testing.T) {
	rb := func(name, cond string) string {
		return "name: " + name + "\ntrigger:\n  eventType: ERROR_RATE_SPIKE\n  conditions: " + cond +
			"\nactions: [{type: CACHE_CLEAR, parameters: {pattern: \"a:*\"}}]\nsafety: {maxExecutionsPerHour: 1}\n"
	}
	set := mustLoad(t, map[string]string{
		"10-specific.yaml": rb("specific", "{errorCategory: 5xx, confidence: {min: 0.9}}"),
		"20-general.yaml":  rb("general", "{errorCategory: 5xx}") + "---\n" + rb("general-too", "{}"),
	})
	tests := []struct {
		name, event, want string
	}{
		{"both match, the earlier file wins", `{"type":"ERROR_RATE_SPIKE","confidence":0.95,"data":{"errorCategory":"5xx"}}`, "specific"},
		{"the earlier fails, the next is tried", `{"type":"ERROR_RATE_SPIKE","confidence":0.5,"data":{"errorCategory":"5xx"}}`, "general"},
		{"only the catch-all matches", `{"type":"ERROR_RATE_SPIKE","confidence":0.5}`, "general-too"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := runbookName(set.Match(event(tt.event))); got != tt.want {
				t.Errorf("Match = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	set := defaults(t)
	events := referenceEvents(t)
	miss := event(`{"type":"CAPACITY_WARNING","confidence":0.85,"data":{"resourceType":"MEMORY","utilization":"95"}}`)
	allocs := testing.AllocsPerRun(100, func() {
		for _, e := range events {
			set.Match(e)
		}
		set.Match(miss)
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per run, want 0", allocs)
	}
}

func BenchmarkMatch(b *testing.B) {
	set := defaults(b)
	var events []*runbooks.Event
	for _, e := range referenceEvents(b) {
		events = append(events, e)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if set.Match(events[i%len(events)]) == nil {
			b.Fatal("no match")
		}
	}
}

func TestUnmetSaysWhatIsOutsideTheTrigger(t *testing.T) {
	set, err := runbooks.LoadDefaults()
	if err != nil {
		t.Fatal(err)
	}
	rb := set.Get("failover-upstream-degraded")
	got := set.Unmet(rb, event(`{"type":"UPSTREAM_DEGRADATION","severity":"INFO","confidence":0.05}`))
	want := []string{"confidence is 0.05, want at least 0.85", "severity is INFO, want CRITICAL"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("Unmet = %q, want %q", got, want)
	}
	if got := set.Unmet(rb, event(`{"type":"LATENCY_ANOMALY","severity":"CRITICAL","confidence":1}`)); len(got) != 1 || got[0] != "event type is LATENCY_ANOMALY, want UPSTREAM_DEGRADATION" {
		t.Errorf("Unmet of another type = %q", got)
	}
	if got := set.Unmet(rb, event(`{"type":"UPSTREAM_DEGRADATION","severity":"CRITICAL","confidence":0.9}`)); got != nil {
		t.Errorf("Unmet inside the trigger = %q, want nil", got)
	}
}
