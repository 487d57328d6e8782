package runbooks_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/recoverbot/recoverbot/runbooks"
)

// writeDir writes files into a fresh temporary directory and returns it.
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func mustLoad(t *testing.T, files map[string]string) *runbooks.Set {
	t.Helper()
	set, err := runbooks.Load(writeDir(t, files))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return set
}

// loadErrors loads files and returns the errors as "file:line: path: msg" with
// the temporary directory stripped.
func loadErrors(t *testing.T, files map[string]string) []string {
	t.Helper()
	dir := writeDir(t, files)
	set, err := runbooks.Load(dir)
	if err == nil {
		t.Fatalf("Load succeeded with %d runbooks, want errors", len(set.All()))
	}
	if set != nil {
		t.Errorf("Load returned a Set along with errors")
	}
	var es runbooks.Errors
	if !errors.As(err, &es) {
		t.Fatalf("Load error is %T (%v), want runbooks.Errors", err, err)
	}
	var out []string
	for _, e := range es {
		out = append(out, strings.TrimPrefix(e.Error(), dir+string(filepath.Separator)))
	}
	return out
}

// valid is a minimal runbook; cases below change one thing at a time.
const valid = `name: ok
trigger:
  eventType: LATENCY_ANOMALY
actions:
  - type: CACHE_CLEAR
    parameters: {pattern: "users:*"}
safety:
  maxExecutionsPerHour: 1
`

func TestLoadDefaults(t *testing.T) {
	set, err := runbooks.LoadDefaults()
	if err != nil {
		t.Fatalf("LoadDefaults: %v", err)
	}
	var got []string
	for _, rb := range set.All() {
		got = append(got, rb.Name)
	}
	want := []string{"scale-database-connections", "open-circuit-breaker", "clear-cache-on-stale-data",
		"restart-pod-memory-leak", "apply-rate-limit-abuse", "failover-upstream-degraded"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadDefaults names = %v, want %v", got, want)
	}

	t.Run("keeps the reference playbook's settings", func(t *testing.T) {
		type summary struct {
			Event      runbooks.EventType
			Conditions string
			Action     runbooks.ActionType
			Params     string
			Target     runbooks.Target
			Risk       string
			Safety     runbooks.Safety
			ERT        int
		}
		want := map[string]summary{
			"scale-database-connections": {runbooks.LatencyAnomaly, `[{"key":"cause","equals":"DATABASE"},{"key":"confidence","min":0.8},{"key":"severity","equals":"WARNING"}]`,
				runbooks.ScaleResource, `{"from":20,"increment":10,"intervalSeconds":30,"to":50}`, runbooks.Target{Deployment: "api-gateway"}, "",
				runbooks.Safety{MaxExecutionsPerHour: 3, RollbackAfterMinutes: 30}, 5},
			"open-circuit-breaker": {runbooks.CircuitBreakerCandidate, `[{"key":"confidence","min":0.85},{"key":"errorRate","min":50}]`,
				runbooks.CircuitBreaker, `{"duration":60,"halfOpenRequests":3,"service":"{{upstream}}"}`, runbooks.Target{}, "",
				runbooks.Safety{MaxExecutionsPerHour: 5, RollbackAfterMinutes: 5}, 2},
			"clear-cache-on-stale-data": {runbooks.ErrorRateSpike, `[{"key":"confidence","min":0.75},{"key":"errorCategory","equals":"5xx"}]`,
				runbooks.CacheClear, `{"graceful":true,"pattern":"{{route}}:*"}`, runbooks.Target{}, "",
				runbooks.Safety{MaxExecutionsPerHour: 5}, 1},
			"restart-pod-memory-leak": {runbooks.CapacityWarning, `[{"key":"resourceType","equals":"MEMORY"},{"key":"confidence","min":0.8},{"key":"utilization","min":90}]`,
				runbooks.RestartPod, `{"deployment":"api-gateway","drainTimeout":30,"graceful":true}`, runbooks.Target{Deployment: "api-gateway"}, "high",
				runbooks.Safety{RequiresApproval: true, MaxExecutionsPerHour: 2}, 3},
			"apply-rate-limit-abuse": {runbooks.RateLimitBreach, `[{"key":"trafficType","equals":"ABUSE"},{"key":"confidence","min":0.75}]`,
				runbooks.RateLimit, `{"duration":1800,"limit":100,"target":"{{client}}","window":60}`, runbooks.Target{}, "",
				runbooks.Safety{MaxExecutionsPerHour: 10}, 1},
			"failover-upstream-degraded": {runbooks.UpstreamDegradation, `[{"key":"confidence","min":0.85},{"key":"severity","equals":"CRITICAL"}]`,
				runbooks.Failover, `{"autoRevertOnRecovery":true,"from":"{{upstream}}","healthCheckInterval":10,"to":"{{backup_service}}"}`, runbooks.Target{}, "high",
				runbooks.Safety{RequiresApproval: true, MaxExecutionsPerHour: 2}, 5},
		}
		for _, rb := range set.All() {
			if len(rb.Actions) != 1 {
				t.Fatalf("%s has %d actions, want 1", rb.Name, len(rb.Actions))
			}
			a := rb.Actions[0]
			conds, _ := json.Marshal(rb.Trigger.Conditions)
			params, _ := json.Marshal(a.Parameters)
			got := summary{rb.Trigger.EventType, string(conds), a.Type, string(params), a.Target, a.Risk, rb.Safety, rb.EstimatedRecoveryTime}
			if got != want[rb.Name] {
				t.Errorf("%s:\n got %+v\nwant %+v", rb.Name, got, want[rb.Name])
			}
		}
		if a := set.Get("scale-database-connections").Actions[0]; a.Resource != "DB_POOL_SIZE" || !a.Gradual {
			t.Errorf("scale-database-connections action = %+v, want resource DB_POOL_SIZE, gradual", a)
		}
		if a := set.Get("open-circuit-breaker").Actions[0]; a.Operation != "OPEN" || a.Duration != 60 {
			t.Errorf("open-circuit-breaker action = %+v, want operation OPEN, duration 60", a)
		}
	})

	t.Run("sets source and hash", func(t *testing.T) {
		rb := set.Get("open-circuit-breaker")
		if got, want := rb.Source, "defaults/20-open-circuit-breaker.yaml:3"; got != want {
			t.Errorf("Source = %q, want %q", got, want)
		}
		if len(rb.Hash) != 64 {
			t.Errorf("Hash = %q, want 64 hex digits", rb.Hash)
		}
	})
}

func TestLoadReadsFilesAndDocumentsInOrder(t *testing.T) {
	doc := func(name string) string { return strings.Replace(valid, "name: ok", "name: "+name, 1) }
	set := mustLoad(t, map[string]string{
		"b.yml":         doc("third"),
		"a.yaml":        "# two documents\n" + doc("first") + "---\n" + doc("second") + "---\n",
		"c.yaml":        doc("fourth"),
		"notes.txt":     "not a runbook",
		"sub/d.yaml":    "not: loaded", // subdirectories are not read
		"empty.yaml":    "# only a comment\n",
		"z-blank.yaml":  "",
		"zz-multi.yaml": "---\n" + doc("fifth"),
	})
	var got []string
	for _, rb := range set.All() {
		got = append(got, rb.Name+"@"+filepath.Base(rb.Source))
	}
	want := []string{"first@a.yaml:2", "second@a.yaml:11", "third@b.yml:1", "fourth@c.yaml:1", "fifth@zz-multi.yaml:2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("load order = %v, want %v", got, want)
	}
	if set.Get("second") == nil || set.Get("missing") != nil {
		t.Errorf("Get(second) = %v, Get(missing) = %v; want found, nil", set.Get("second"), set.Get("missing"))
	}
}

func TestLoadFS(t *testing.T) {
	fsys := fstest.MapFS{"books/x.yaml": {Data: []byte(valid)}}
	set, err := runbooks.LoadFS(fsys, "books")
	if err != nil {
		t.Fatalf("LoadFS: %v", err)
	}
	if got, want := set.Get("ok").Source, "books/x.yaml:1"; got != want {
		t.Errorf("Source = %q, want %q", got, want)
	}
}

func TestLoadNormalizesParameters(t *testing.T) {
	set := mustLoad(t, map[string]string{"a.yaml": `name: ok
trigger: {eventType: LATENCY_ANOMALY}
actions:
  - type: CACHE_CLEAR
    parameters:
      pattern: "users:*"
      int: 20
      float: 2.5
      hex: 0x10
      bool: true
      null: ~
      text: "20"
      nested: {list: [1, two, {deep: 3}], open: {anything: goes}}
safety: {maxExecutionsPerHour: 1}
`})
	got := set.Get("ok").Actions[0].Parameters
	var want map[string]any
	err := json.Unmarshal([]byte(`{"pattern":"users:*","int":20,"float":2.5,"hex":16,"bool":true,"null":null,"text":"20",
		"nested":{"list":[1,"two",{"deep":3}],"open":{"anything":"goes"}}}`), &want)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parameters = %#v\nwant (as encoding/json decodes) %#v", got, want)
	}
}

func TestLoadKeepsConditionOrder(t *testing.T) {
	set := mustLoad(t, map[string]string{"a.yaml": `name: ok
trigger:
  eventType: LATENCY_ANOMALY
  conditions:
    zeta: 1
    alpha: [a, 2, true]
    severity: [WARNING, CRITICAL]
    mid: {min: 1, max: 2}
    confidence: {max: 0.5}
actions: [{type: CACHE_CLEAR, parameters: {pattern: "users:*"}}]
safety: {maxExecutionsPerHour: 1}
`})
	got, _ := json.Marshal(set.Get("ok").Trigger.Conditions)
	want := `[{"key":"zeta","equals":1},{"key":"alpha","anyOf":["a",2,true]},{"key":"severity","anyOf":["WARNING","CRITICAL"]},` +
		`{"key":"mid","min":1,"max":2},{"key":"confidence","max":0.5}]`
	if string(got) != want {
		t.Errorf("conditions = %s\nwant %s", got, want)
	}
}

func TestLoadHash(t *testing.T) {
	hash := func(t *testing.T, body string) string {
		t.Helper()
		return mustLoad(t, map[string]string{"a.yaml": body}).Get("ok").Hash
	}
	base := hash(t, valid)
	t.Run("differs when content differs", func(t *testing.T) {
		for _, changed := range []string{
			strings.Replace(valid, "users:*", "orders:*", 1),
			strings.Replace(valid, "maxExecutionsPerHour: 1", "maxExecutionsPerHour: 2", 1),
			valid + "description: new\n",
		} {
			if got := hash(t, changed); got == base {
				t.Errorf("hash of changed runbook = %s, same as before", got)
			}
		}
	})
	t.Run("ignores comments and layout", func(t *testing.T) {
		same := "# a comment\n" + strings.Replace(valid, `parameters: {pattern: "users:*"}`, "parameters:\n      pattern: 'users:*'", 1)
		if got := hash(t, same); got != base {
			t.Errorf("hash after reformatting = %s, want %s", got, base)
		}
	})
}

func TestLoadErrors(t *testing.T) {
	// Each case lists every error expected, as "file:line: path: msg" prefixes, so
	// both a missing error and an extra one fail the test.
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"empty directory", map[string]string{}, []string{"no runbooks found"}},
		{"no runbook files", map[string]string{"readme.md": "x", "a.yaml": "# nothing\n---\n"}, []string{"no runbooks found"}},
		{"yaml syntax error", map[string]string{"a.yaml": "name: ok\ntrigger: x\n  eventType: y\n"}, []string{"a.yaml:3: mapping values are not allowed"}},
		{"yaml syntax error after a good document", map[string]string{"a.yaml": valid + "---\nname: [\n"}, []string{"a.yaml:10: did not find expected node content"}},
		{"document not a mapping", map[string]string{"a.yaml": "- a\n- b\n"}, []string{"a.yaml:1: a runbook must be a mapping"}},
		{"unknown top-level field", map[string]string{"a.yaml": valid + "timeout: 5\n"},
			[]string{"a.yaml:9: timeout: unknown field"}},
		{"misspelt field", map[string]string{"a.yaml": strings.Replace(valid, "eventType", "eventtype", 1)},
			[]string{`a.yaml:3: trigger.eventtype: unknown field (did you mean "eventType"?)`, "a.yaml:3: trigger.eventType: missing required field"}},
		{"unknown action field", map[string]string{"a.yaml": strings.Replace(valid, "    parameters:", "    paramaters: {}\n    parameters:", 1)},
			[]string{"a.yaml:6: actions[0].paramaters: unknown field"}},
		{"unknown target field", map[string]string{"a.yaml": strings.Replace(valid, "    parameters:", "    target: {pod: api}\n    parameters:", 1)},
			[]string{"a.yaml:6: actions[0].target.pod: unknown field"}},
		{"unknown verify field", map[string]string{"a.yaml": valid + "  dryRun: true\nverify: {prometheus: up, timeout: 5m}\n"},
			[]string{"a.yaml:10: verify.timeout: unknown field"}},
		{"unknown field in a condition range", map[string]string{"a.yaml": strings.Replace(valid, "LATENCY_ANOMALY", "LATENCY_ANOMALY\n  conditions:\n    errorRate: {min: 1, mx: 2}", 1)},
			[]string{"a.yaml:5: trigger.conditions.errorRate.mx: unknown field"}},
		{"duplicate key", map[string]string{"a.yaml": valid + "name: again\n"}, []string{"a.yaml:9: name: duplicate key"}},
		{"wrong type integer", map[string]string{"a.yaml": strings.Replace(valid, "maxExecutionsPerHour: 1", `maxExecutionsPerHour: "3"`, 1)},
			[]string{`a.yaml:8: safety.maxExecutionsPerHour: must be an integer, got string "3"`}},
		{"wrong type bool", map[string]string{"a.yaml": valid + "fourEyes: yes\n"},
			[]string{`a.yaml:9: fourEyes: must be true or false, got string "yes"`}},
		{"autoRollback not a bool", map[string]string{"a.yaml": valid + "  autoRollback: \"yes\"\n"},
			[]string{`a.yaml:9: safety.autoRollback: must be true or false, got string "yes"`}},
		{"autoRollback misspelt", map[string]string{"a.yaml": valid + "  autoRollBack: true\n"},
			[]string{`a.yaml:9: safety.autoRollBack: unknown field (did you mean "autoRollback"?)`}},
		{"wrong type list", map[string]string{"a.yaml": strings.Replace(valid, "actions:\n  - type", "actions:\n    type", 1)},
			[]string{"a.yaml:5: actions: must be a list of actions, got a mapping"}},
		{"unknown event type", map[string]string{"a.yaml": strings.Replace(valid, "LATENCY_ANOMALY", "LATENCY", 1)},
			[]string{`a.yaml:3: trigger.eventType: unknown event type "LATENCY"`}},
		{"unknown action type", map[string]string{"a.yaml": strings.Replace(valid, "CACHE_CLEAR", "REBOOT", 1)},
			[]string{`a.yaml:5: actions[0].type: unknown action type "REBOOT"`}},
		{"duplicate name across files", map[string]string{"a.yaml": valid, "b.yaml": "# again\n" + valid},
			[]string{`b.yaml:2: name: duplicate runbook name "ok" (first defined at `}},
		{"duplicate name in one file", map[string]string{"a.yaml": valid + "---\n" + valid},
			[]string{`a.yaml:10: name: duplicate runbook name "ok" (first defined at `}},
		{"confidence above 1", map[string]string{"a.yaml": strings.Replace(valid, "LATENCY_ANOMALY", "LATENCY_ANOMALY\n  conditions:\n    confidence: {min: 1.5}", 1)},
			[]string{"a.yaml:5: trigger.conditions.confidence.min: 1.5 is outside 0..1"}},
		{"confidence below 0", map[string]string{"a.yaml": strings.Replace(valid, "LATENCY_ANOMALY", "LATENCY_ANOMALY\n  conditions:\n    confidence:\n      max: -0.1", 1)},
			[]string{"a.yaml:6: trigger.conditions.confidence.max: -0.1 is outside 0..1"}},
		{"confidence not a range", map[string]string{"a.yaml": strings.Replace(valid, "LATENCY_ANOMALY", "LATENCY_ANOMALY\n  conditions:\n    confidence: 0.8", 1)},
			[]string{"a.yaml:5: trigger.conditions.confidence: must be {min, max}"}},
		{"min above max", map[string]string{"a.yaml": strings.Replace(valid, "LATENCY_ANOMALY", "LATENCY_ANOMALY\n  conditions:\n    errorRate: {min: 5, max: 1}", 1)},
			[]string{"a.yaml:5: trigger.conditions.errorRate: min 5 is greater than max 1"}},
		{"missing name", map[string]string{"a.yaml": strings.Replace(valid, "name: ok\n", "description: x\n", 1)},
			[]string{"a.yaml:1: name: missing required field"}},
		{"missing trigger", map[string]string{"a.yaml": strings.Replace(valid, "trigger:\n  eventType: LATENCY_ANOMALY\n", "", 1)},
			[]string{"a.yaml:1: trigger: missing required field"}},
		{"missing event type", map[string]string{"a.yaml": strings.Replace(valid, "  eventType: LATENCY_ANOMALY", "  conditions: {}", 1)},
			[]string{"a.yaml:3: trigger.eventType: missing required field"}},
		{"missing actions", map[string]string{"a.yaml": "name: ok\ntrigger: {eventType: LATENCY_ANOMALY}\nsafety: {maxExecutionsPerHour: 1}\n"},
			[]string{"a.yaml:1: actions: missing required field"}},
		{"empty actions", map[string]string{"a.yaml": "name: ok\ntrigger: {eventType: LATENCY_ANOMALY}\nactions: []\nsafety: {maxExecutionsPerHour: 1}\n"},
			[]string{"a.yaml:3: actions: must have at least one action"}},
		{"missing action type", map[string]string{"a.yaml": strings.Replace(valid, "  - type: CACHE_CLEAR\n    parameters", "  - parameters", 1)},
			[]string{"a.yaml:5: actions[0].type: missing required field"}},
		{"missing safety", map[string]string{"a.yaml": strings.Replace(valid, "safety:\n  maxExecutionsPerHour: 1\n", "", 1)},
			[]string{"a.yaml:1: safety: missing required field"}},
		{"missing max executions", map[string]string{"a.yaml": strings.Replace(valid, "maxExecutionsPerHour: 1", "dryRun: true", 1)},
			[]string{"a.yaml:8: safety.maxExecutionsPerHour: missing required field"}},
		{"zero max executions", map[string]string{"a.yaml": strings.Replace(valid, "maxExecutionsPerHour: 1", "maxExecutionsPerHour: 0", 1)},
			[]string{"a.yaml:8: safety.maxExecutionsPerHour: must be at least 1, got 0"}},
		{"name not a slug", map[string]string{"a.yaml": strings.Replace(valid, "name: ok", "name: Scale_DB", 1)},
			[]string{`a.yaml:1: name: "Scale_DB" is not a valid runbook name`}},
		{"bad severity", map[string]string{"a.yaml": strings.Replace(valid, "LATENCY_ANOMALY", "LATENCY_ANOMALY\n  conditions:\n    severity: [WARNING, WARN]", 1)},
			[]string{`a.yaml:5: trigger.conditions.severity[1]: "WARN" is not a severity`}},
		{"condition value a map", map[string]string{"a.yaml": strings.Replace(valid, "LATENCY_ANOMALY", "LATENCY_ANOMALY\n  conditions:\n    cause: {eq: DATABASE}", 1)},
			[]string{"a.yaml:5: trigger.conditions.cause.eq: unknown field"}},
		{"condition value a nested list", map[string]string{"a.yaml": strings.Replace(valid, "LATENCY_ANOMALY", "LATENCY_ANOMALY\n  conditions:\n    cause: [[DATABASE]]", 1)},
			[]string{"a.yaml:5: trigger.conditions.cause[0]: must be a scalar (string, number or boolean), a list of scalars or {min, max}, got a list"}},
		{"condition value null", map[string]string{"a.yaml": strings.Replace(valid, "LATENCY_ANOMALY", "LATENCY_ANOMALY\n  conditions:\n    cause:", 1)},
			[]string{"a.yaml:5: trigger.conditions.cause: must be a scalar"}},
		{"bad risk", map[string]string{"a.yaml": strings.Replace(valid, "    parameters:", "    risk: medium\n    parameters:", 1)},
			[]string{`a.yaml:6: actions[0].risk: "medium" is not a risk (low or high)`}},
		{"empty verify query", map[string]string{"a.yaml": valid + "verify:\n  within: 5m\n"},
			[]string{"a.yaml:10: verify.prometheus: a PromQL query is required"}},
		{"bad onVerifyFailure", map[string]string{"a.yaml": valid + "verify:\n  prometheus: up == 1\n  onVerifyFailure: retry\n"},
			[]string{`a.yaml:11: verify.onVerifyFailure: "retry" is not rollback or escalate`}},
		{"bad durations", map[string]string{"a.yaml": valid + "  cooldown: 5 minutes\nverify:\n  prometheus: up == 1\n  within: 300\n  every: -1s\n"},
			[]string{`a.yaml:9: safety.cooldown: "5 minutes" is not a duration`,
				"a.yaml:12: verify.within: must be a duration", "a.yaml:13: verify.every: must not be negative"}},
		{"unknown template variable", map[string]string{"a.yaml": strings.Replace(valid, `"users:*"`, `"{{rout}}:*"`, 1)},
			[]string{"a.yaml:6: actions[0].parameters.pattern: unknown template variable {{rout}}"}},
		{"unknown template variable in target", map[string]string{"a.yaml": strings.Replace(valid, "    parameters:", "    target: {service: '{{context}}'}\n    parameters:", 1)},
			[]string{"a.yaml:6: actions[0].target.service: unknown template variable {{context}}"}},
		{"unterminated template", map[string]string{"a.yaml": strings.Replace(valid, `"users:*"`, `"{{route:*"`, 1)},
			[]string{"a.yaml:6: actions[0].parameters.pattern: unterminated {{"}},
		{"template where it is not expanded", map[string]string{"a.yaml": strings.Replace(valid, "    parameters:", "    resource: '{{data.r}}'\n    parameters:", 1)},
			[]string{"a.yaml:6: actions[0].resource: templates are expanded only in parameters and target"}},
		{"yaml alias", map[string]string{"a.yaml": strings.Replace(valid, "    parameters: {pattern: \"users:*\"}", "    parameters: {pattern: &p \"users:*\", again: *p}", 1)},
			[]string{"a.yaml:6: actions[0].parameters.again: YAML aliases are not supported"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := loadErrors(t, tt.files)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n got: %s\nwant: %s", len(got), len(tt.want), strings.Join(got, "\n      "), strings.Join(tt.want, "\n      "))
			}
			for i := range got {
				// The empty-directory error names the directory, not a file.
				if !strings.HasPrefix(got[i], tt.want[i]) && !strings.Contains(got[i], ": "+tt.want[i]) {
					t.Errorf("error %d = %q, want it to start with %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestLoadReportsEveryErrorAtOnce(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"a.yaml": strings.Replace(valid, "LATENCY_ANOMALY", "LATENCY", 1) + "---\n" +
			strings.Replace(strings.Replace(valid, "name: ok", "name: two", 1), "CACHE_CLEAR", "REBOOT", 1),
		"b.yaml": strings.Replace(strings.Replace(valid, "name: ok", "name: three", 1), "maxExecutionsPerHour: 1", "maxExecutionsPerHour: 0", 1),
	})
	_, err := runbooks.Load(dir)
	if err == nil {
		t.Fatal("Load succeeded, want errors")
	}
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	want := strings.Join([]string{
		a + `:3: trigger.eventType: unknown event type "LATENCY" (known: LATENCY_ANOMALY, ERROR_RATE_SPIKE, CIRCUIT_BREAKER_CANDIDATE, CAPACITY_WARNING, RATE_LIMIT_BREACH, UPSTREAM_DEGRADATION, RECOVERY_SIGNAL)`,
		a + `:14: actions[0].type: unknown action type "REBOOT" (known: SCALE_RESOURCE, CIRCUIT_BREAKER, RESTART_POD, CACHE_CLEAR, RATE_LIMIT, FAILOVER)`,
		b + `:8: safety.maxExecutionsPerHour: must be at least 1, got 0`,
	}, "\n")
	if got := err.Error(); got != want {
		t.Errorf("Load error =\n%s\nwant\n%s", got, want)
	}
	var one *runbooks.Error
	if !errors.As(err, &one) || one.Line != 3 || one.Path != "trigger.eventType" || one.Column != 14 {
		t.Errorf("errors.As(*Error) = %+v, want the first error at line 3 column 14", one)
	}
}

func TestLoadMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nope")
	_, err := runbooks.Load(dir)
	if err == nil || !strings.HasPrefix(err.Error(), dir+": cannot read runbook directory") {
		t.Errorf("Load(missing) error = %v, want it to name %s", err, dir)
	}
}

func TestLoadAcceptsOpenMaps(t *testing.T) {
	// parameters and trigger.conditions take any key; a typo there cannot be caught
	// by the loader, which is why the other mappings are strict.
	set := mustLoad(t, map[string]string{"a.yaml": strings.Replace(strings.Replace(valid,
		`{pattern: "users:*"}`, `{pattern: "users:*", anyKey: {nested: [1]}}`, 1),
		"LATENCY_ANOMALY", "LATENCY_ANOMALY\n  conditions: {whatever: 1, other-key: x}", 1)})
	if got := len(set.Get("ok").Trigger.Conditions); got != 2 {
		t.Errorf("conditions = %d, want 2", got)
	}
}

func TestLoadAutoRollback(t *testing.T) {
	for _, c := range []struct {
		name string
		yaml string
		want bool
	}{
		{"off by default", valid, false},
		{"opted in", valid + "  autoRollback: true\n", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			rb := mustLoad(t, map[string]string{"a.yaml": c.yaml}).Get("ok")
			if rb.Safety.AutoRollback != c.want {
				t.Errorf("Safety.AutoRollback = %v, want %v", rb.Safety.AutoRollback, c.want)
			}
		})
	}
}
