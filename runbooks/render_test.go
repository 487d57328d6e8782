package runbooks_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/recoverbot/recoverbot/runbooks"
)

func TestRenderReferenceEvents(t *testing.T) {
	set := defaults(t)
	want := map[string]string{
		"scale-database-connections": `[{"type":"SCALE_RESOURCE","resource":"DB_POOL_SIZE","target":{"deployment":"api-gateway"},"parameters":{"from":20,"increment":10,"intervalSeconds":30,"to":50},"gradual":true}]`,
		"open-circuit-breaker":       `[{"type":"CIRCUIT_BREAKER","operation":"OPEN","parameters":{"duration":60,"halfOpenRequests":3,"service":"payments"},"duration":60}]`,
		"clear-cache-on-stale-data":  `[{"type":"CACHE_CLEAR","parameters":{"graceful":true,"pattern":"/api/users:*"}}]`,
		"restart-pod-memory-leak":    `[{"type":"RESTART_POD","target":{"deployment":"api-gateway"},"parameters":{"deployment":"api-gateway","drainTimeout":30,"graceful":true},"risk":"high"}]`,
		"apply-rate-limit-abuse":     `[{"type":"RATE_LIMIT","parameters":{"duration":1800,"limit":100,"target":"10.1.2.3","window":60}}]`,
		"failover-upstream-degraded": `[{"type":"FAILOVER","parameters":{"autoRevertOnRecovery":true,"from":"payments","healthCheckInterval":10,"to":"payments-dr"},"risk":"high"}]`,
	}
	for name, e := range referenceEvents(t) {
		t.Run(name, func(t *testing.T) {
			actions, err := runbooks.Render(set.Get(name), e)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			got, _ := json.Marshal(actions)
			if string(got) != want[name] {
				t.Errorf("Render =\n %s\nwant\n %s", got, want[name])
			}
		})
	}
}

// deep is a runbook whose templates sit at every depth and in every target field.
const deep = `name: deep
trigger: {eventType: UPSTREAM_DEGRADATION}
actions:
  - type: FAILOVER
    target: {namespace: '{{data.ns}}', service: '{{upstream}}'}
    parameters:
      from: '{{upstream}}'
      to: '{{backup_service}}'
      note: '{{upstream}}->{{backup_service}} ({{upstream}} again)'
      nested:
        list: ['{{context.route}}', {deeper: 'x-{{data.count}}-{{data.flag}}-{{data.ratio}}'}]
        literal: 'no templates here'
        number: 7
safety: {maxExecutionsPerHour: 1}
`

func TestRenderSubstitutesEverywhere(t *testing.T) {
	set := mustLoad(t, map[string]string{"a.yaml": deep})
	rb := set.Get("deep")
	before, _ := json.Marshal(rb)
	e := event(`{"type":"UPSTREAM_DEGRADATION","data":{"ns":"prod","count":3,"flag":true,"ratio":0.25,"route":"/from/data"},
		"context":{"upstream":"payments","backup_service":"payments-dr","route":"/api/users"}}`)
	actions, err := runbooks.Render(rb, e)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if got, want := actions[0].Target, (runbooks.Target{Namespace: "prod", Service: "payments"}); got != want {
		t.Errorf("target = %+v, want %+v", got, want)
	}
	got := actions[0].Parameters
	want := map[string]any{
		"from": "payments",
		"to":   "payments-dr",
		"note": "payments->payments-dr (payments again)",
		"nested": map[string]any{
			// context.route reads the context only, though data has a route too.
			"list":    []any{"/api/users", map[string]any{"deeper": "x-3-true-0.25"}},
			"literal": "no templates here",
			"number":  7.0,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parameters = %#v\nwant %#v", got, want)
	}

	t.Run("leaves the runbook unchanged", func(t *testing.T) {
		// Mutating the rendered copy must not reach the runbook: plans are persisted
		// and executed long after, while the runbook keeps serving other events.
		got["from"] = "changed"
		got["nested"].(map[string]any)["list"].([]any)[0] = "changed"
		after, _ := json.Marshal(rb)
		if string(after) != string(before) {
			t.Errorf("runbook after Render =\n%s\nwant\n%s", after, before)
		}
	})
}

func TestRenderLookupOrder(t *testing.T) {
	set := mustLoad(t, map[string]string{"a.yaml": `name: order
trigger: {eventType: ERROR_RATE_SPIKE}
actions:
  - type: CACHE_CLEAR
    parameters: {pattern: '{{route}}:*', fromData: '{{data.route}}', fromContext: '{{context.route}}'}
safety: {maxExecutionsPerHour: 1}
`})
	actions, err := runbooks.Render(set.Get("order"), event(`{"type":"ERROR_RATE_SPIKE","data":{"route":"/d"},"context":{"route":"/c"}}`))
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	p := actions[0].Parameters
	if p["pattern"] != "/d:*" || p["fromData"] != "/d" || p["fromContext"] != "/c" {
		t.Errorf("parameters = %v, want {{route}} from data, {{data.route}} /d, {{context.route}} /c", p)
	}
}

func TestRenderRefuses(t *testing.T) {
	set := defaults(t)
	breaker := set.Get("open-circuit-breaker") // parameters.service: '{{upstream}}'
	cache := set.Get("clear-cache-on-stale-data")
	withUpstream := func(v any) *runbooks.Event {
		return &runbooks.Event{Type: runbooks.CircuitBreakerCandidate, Context: map[string]any{"upstream": v}}
	}
	tests := []struct {
		name   string
		rb     *runbooks.Runbook
		e      *runbooks.Event
		want   runbooks.RenderError
		reason string // prefix of want.Reason
	}{
		// The reference playbook turned "{{route}}:*" into ":*" and cleared every key.
		{"missing route", cache, &runbooks.Event{Type: runbooks.ErrorRateSpike, Context: map[string]any{}},
			runbooks.RenderError{Field: "parameters.pattern", Var: "route"}, "is unresolved (missing"},
		{"empty route", cache, &runbooks.Event{Context: map[string]any{"route": ""}},
			runbooks.RenderError{Field: "parameters.pattern", Var: "route"}, "is unresolved (empty"},
		{"null route", cache, &runbooks.Event{Context: map[string]any{"route": nil}},
			runbooks.RenderError{Field: "parameters.pattern", Var: "route"}, "is unresolved (null"},
		{"route is a map", cache, &runbooks.Event{Context: map[string]any{"route": map[string]any{"a": "b"}}},
			runbooks.RenderError{Field: "parameters.pattern", Var: "route"}, "is a map"},
		{"route is a list", cache, &runbooks.Event{Context: map[string]any{"route": []any{"a"}}},
			runbooks.RenderError{Field: "parameters.pattern", Var: "route"}, "is a list"},
		{"wildcard", breaker, withUpstream("*"), runbooks.RenderError{Field: "parameters.service", Var: "upstream", Value: "*"}, "contains the character '*'"},
		{"question mark", breaker, withUpstream("?"), runbooks.RenderError{Field: "parameters.service", Var: "upstream", Value: "?"}, "contains the character '?'"},
		{"character class", breaker, withUpstream("[a-z]"), runbooks.RenderError{Field: "parameters.service", Var: "upstream", Value: "[a-z]"}, "contains the character '['"},
		{"path traversal", cache, &runbooks.Event{Context: map[string]any{"route": "../"}},
			runbooks.RenderError{Field: "parameters.pattern", Var: "route", Value: "../"}, `contains ".."`},
		{"space", breaker, withUpstream("a b"), runbooks.RenderError{Field: "parameters.service", Var: "upstream", Value: "a b"}, "contains whitespace"},
		{"newline", breaker, withUpstream("a\nb"), runbooks.RenderError{Field: "parameters.service", Var: "upstream", Value: "a\nb"}, "contains whitespace"},
		{"control character", breaker, withUpstream("a\x1bb"), runbooks.RenderError{Field: "parameters.service", Var: "upstream", Value: "a\x1bb"}, "contains a control character"},
		{"delete character", breaker, withUpstream("a\x7f"), runbooks.RenderError{Field: "parameters.service", Var: "upstream", Value: "a\x7f"}, "contains a control character"},
		{"cyrillic look-alike", breaker, withUpstream("раyments"), runbooks.RenderError{Field: "parameters.service", Var: "upstream", Value: "раyments"}, "contains non-ASCII"},
		{"10 KB value", breaker, withUpstream(strings.Repeat("a", 10<<10)),
			runbooks.RenderError{Field: "parameters.service", Var: "upstream", Value: strings.Repeat("a", 64) + "..."}, "is longer than 253 bytes"},
		{"shell metacharacters", breaker, withUpstream("a;b"), runbooks.RenderError{Field: "parameters.service", Var: "upstream", Value: "a;b"}, "contains the character ';'"},
		{"quote", breaker, withUpstream(`a"b`), runbooks.RenderError{Field: "parameters.service", Var: "upstream", Value: `a"b`}, `contains the character '"'`},
		{"dollar", breaker, withUpstream("$HOME"), runbooks.RenderError{Field: "parameters.service", Var: "upstream", Value: "$HOME"}, "contains the character '$'"},
		{"infinite number", breaker, withUpstream(math.Inf(1)), runbooks.RenderError{Field: "parameters.service", Var: "upstream"}, "is not a finite number"},
		// Safe characters, but not a Kubernetes name: the field rule refuses it.
		{"failover without backup", set.Get("failover-upstream-degraded"), &runbooks.Event{Context: map[string]any{"upstream": "payments"}},
			runbooks.RenderError{Field: "parameters.to", Var: "backup_service"}, "is unresolved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			actions, err := runbooks.Render(tt.rb, tt.e)
			if err == nil {
				t.Fatalf("Render = %v, want an error", actions)
			}
			if actions != nil {
				t.Errorf("Render returned actions %v with its error", actions)
			}
			var got *runbooks.RenderError
			if !errors.As(err, &got) {
				t.Fatalf("error is %T (%v), want *RenderError", err, err)
			}
			if !strings.HasPrefix(got.Reason, tt.reason) {
				t.Errorf("Reason = %q, want prefix %q", got.Reason, tt.reason)
			}
			tt.want.Reason = got.Reason
			if *got != tt.want {
				t.Errorf("error = %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestRenderErrorMessage(t *testing.T) {
	set := defaults(t)
	_, err := runbooks.Render(set.Get("clear-cache-on-stale-data"), &runbooks.Event{})
	if got, want := err.Error(), "actions[0].parameters.pattern: {{route}} is unresolved (missing from the event)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	_, err = runbooks.Render(set.Get("open-circuit-breaker"), &runbooks.Event{Context: map[string]any{"upstream": "a\nb"}})
	if got, want := err.Error(), `actions[0].parameters.service: {{upstream}} value "a\nb" contains whitespace`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestRenderNumbers(t *testing.T) {
	set := mustLoad(t, map[string]string{"a.yaml": `name: nums
trigger: {eventType: RATE_LIMIT_BREACH}
actions:
  - type: RATE_LIMIT
    parameters: {target: 10.0.0.1, limit: 1, window: 1, label: 'client-{{data.n}}'}
safety: {maxExecutionsPerHour: 1}
`})
	tests := []struct {
		name string
		n    any
		want string
	}{
		{"integer-valued float", 95.0, "client-95"},
		{"fraction", 0.5, "client-0.5"},
		{"large", 1e21, "client-1e+21"},
		{"small", 1e-7, "client-1e-7"},
		{"bool", true, "client-true"},
		{"go int", 42, "client-42"},
		{"json.Number", json.Number("12"), "client-12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			actions, err := runbooks.Render(set.Get("nums"), &runbooks.Event{Data: map[string]any{"n": tt.n}})
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got := actions[0].Parameters["label"]; got != tt.want {
				t.Errorf("label = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRenderHandBuiltRunbook(t *testing.T) {
	// Runbooks built in code skip the loader: Render still parses their templates.
	// (Field rules per action type are the drivers': recovery.Drivers.Check.)
	rb := &runbooks.Runbook{Name: "hand", Actions: []runbooks.Action{
		{Type: runbooks.RestartPod, Parameters: map[string]any{"deployment": "{{nope}}"}},
	}}
	_, err := runbooks.Render(rb, &runbooks.Event{})
	if err == nil || !strings.Contains(err.Error(), "unknown template variable {{nope}}") {
		t.Errorf("Render error = %v, want unknown template variable", err)
	}
}

func BenchmarkRender(b *testing.B) {
	set := defaults(b)
	type pair struct {
		rb *runbooks.Runbook
		e  *runbooks.Event
	}
	var pairs []pair
	for name, e := range referenceEvents(b) {
		pairs = append(pairs, pair{set.Get(name), e})
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p := pairs[i%len(pairs)]
		if _, err := runbooks.Render(p.rb, p.e); err != nil {
			b.Fatal(err)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	// The engine matches and renders from many goroutines while a reload may
	// publish new templates; run under -race this checks the shared state.
	set := defaults(t)
	events := referenceEvents(t)
	done := make(chan error)
	for range 4 {
		go func() {
			for range 50 {
				for name, e := range events {
					rb := set.Match(e)
					if rb == nil || rb.Name != name {
						done <- errors.New("Match(" + name + ") = " + runbookName(rb))
						return
					}
					if _, err := runbooks.Render(rb, e); err != nil {
						done <- err
						return
					}
				}
			}
			done <- nil
		}()
	}
	go func() {
		_, err := runbooks.LoadDefaults() // publishes templates while others read them
		done <- err
	}()
	for range 5 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
