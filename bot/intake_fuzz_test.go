package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/runbooks"
)

// The intake fuzz targets drive the whole HTTP handler (auth wrapper, body
// limit, decoder, engine, bbolt) with random bodies. The harness is built once
// per process (the fuzz engine runs one per worker), in full mode with the
// log driver, so a body that makes it through the guardrails reaches a driver
// and the driver calls can be checked. After each input the engine is let go
// idle and the manual clock jumps an hour: rate windows and cooldowns empty,
// approval deadlines and scheduled rollbacks fire, and the next input starts
// from a quiet engine, so what it reaches does not depend on earlier inputs.

type fuzzAPI struct {
	h     http.Handler
	eng   *recovery.Engine
	drv   *logdriver.Driver
	clock *recovery.ManualClock

	mu   sync.Mutex // the seeds run as sequential subtests; this keeps -race honest
	seen int        // driver calls already checked
}

func newFuzzAPI(f *testing.F) *fuzzAPI {
	f.Helper()
	a := newAPI(f, recovery.ModeFull, "", "")
	return &fuzzAPI{h: a.srv.Config.Handler, eng: a.eng, drv: a.drv, clock: a.clock}
}

// serve runs one request through the handler as a loopback client (the admin
// API answers only those when no token is set).
func (fa *fuzzAPI) serve(method, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://127.0.0.1:8080"+path, bytes.NewReader(body))
	req.RemoteAddr = "127.0.0.1:40000"
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	fa.h.ServeHTTP(rec, req)
	return rec
}

// refusal checks that a 4xx carries a JSON error code and a sentence, and that
// nothing answers 5xx: the store does not fail here, so a 5xx is a bug.
func refusal(t *testing.T, what string, body []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("%s %q: got %d %s, want no 5xx (the store is healthy)", what, cut(body), rec.Code, rec.Body)
	}
	if rec.Code < 400 {
		return
	}
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" || strings.TrimSpace(e.Message) == "" {
		t.Fatalf("%s %q: refusal %d %q is not a JSON {error, message} (%v)", what, cut(body), rec.Code, rec.Body, err)
	}
}

var decisions = map[recovery.Decision]bool{
	recovery.DecideAuto: true, recovery.DecideApproval: true, recovery.DecideDryRun: true,
	recovery.DecideSuppressed: true, recovery.DecideDuplicate: true, recovery.DecideNoRunbook: true,
	recovery.DecideRefused: true, recovery.DecideCancelled: true, recovery.DecideIgnored: true,
}

// accepted checks an intake answer and that the event is durable and readable
// through the admin API with the same plan.
func (fa *fuzzAPI) accepted(t *testing.T, what string, body []byte, ans recovery.Answer) {
	t.Helper()
	if ans.EventID == "" || !decisions[ans.Decision] {
		t.Fatalf("%s %q: answer %+v: want an event id and a known decision", what, cut(body), ans)
	}
	if ans.Decision == recovery.DecideRefused && len(ans.Reasons) == 0 {
		t.Fatalf("%s %q: refused without a reason: %+v", what, cut(body), ans)
	}
	rec := fa.serve("GET", "/v1/events/"+url.PathEscape(ans.EventID), nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("%s %q: accepted as %q, but GET /v1/events/%s answers %d %s", what, cut(body), ans.EventID, url.PathEscape(ans.EventID), rec.Code, rec.Body)
	}
	var got struct {
		PlanID string         `json:"plan_id"`
		Event  recovery.Event `json:"event"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("GET event %s: %v: %s", ans.EventID, err, rec.Body)
	}
	if got.PlanID != ans.PlanID {
		t.Fatalf("%s %q: answered plan %q, the stored event says %q", what, cut(body), ans.PlanID, got.PlanID)
	}
	// What was accepted is within the bounds (recovery/eventcaps.go).
	stored := len(got.Event.Summary)
	if err := recovery.BoundEvent(&got.Event); err != nil || stored > recovery.MaxTextBytes {
		t.Fatalf("%s %q: accepted an event over the bounds (summary %d bytes): %v", what, cut(body), stored, err)
	}
}

// boundSeeds are events at and over each bound of recovery/eventcaps.go.
func boundSeeds() [][]byte {
	deep := func(n int) string { return strings.Repeat(`{"a":`, n-1) + `1` + strings.Repeat(`}`, n-1) }
	keys := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `,"k%d":%d`, i, i)
		}
		return "{" + strings.TrimPrefix(b.String(), ",") + "}"
	}
	ev := func(field, v string) []byte {
		return []byte(`{"type":"CAPACITY_WARNING","severity":"WARNING","confidence":0.9,"data":{"resourceType":"MEMORY","utilization":95},"` + field + `":` + v + `}`)
	}
	long := func(n int) string { return `"` + strings.Repeat("x", n) + `"` }
	return [][]byte{
		ev("context", deep(recovery.MaxDataDepth)), ev("context", deep(recovery.MaxDataDepth+1)), ev("context", deep(10000)),
		ev("context", `{"a":`+strings.Repeat("[", 70)+strings.Repeat("]", 70)+`}`),
		ev("context", keys(recovery.MaxDataKeys-2)), ev("context", keys(recovery.MaxDataKeys+1)),
		ev("context", `{"s":`+long(recovery.MaxDataString)+`}`), ev("context", `{"s":`+long(recovery.MaxDataString+1)+`}`),
		ev("context", `{`+long(recovery.MaxDataString+1)+`:1}`),
		ev("summary", long(recovery.MaxTextBytes)), ev("summary", long(recovery.MaxTextBytes+1)), ev("summary", long(200000)),
		ev("summary", `"`+strings.Repeat("\u00e9", 9000)+`"`),
	}
}

// settle lets the engine finish what the input started, checks what reached
// the driver, then moves time an hour so the next input meets an empty rate
// window and a closed blast-radius breaker (deadlines and scheduled rollbacks
// fire here, and are checked too).
func (fa *fuzzAPI) settle(t *testing.T, body []byte) {
	t.Helper()
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := fa.eng.Idle(ctx)
		cancel()
		if err != nil {
			t.Fatalf("input %q: the engine did not go idle within 10s: %v", cut(body), err)
		}
		calls := fa.drv.Calls()
		for _, c := range calls[fa.seen:] {
			if problem := unsafeDriverCall(c.Action); problem != "" {
				t.Fatalf("input %q: a driver was called with %s: %+v", cut(body), problem, c.Action)
			}
		}
		fa.seen = len(calls)
		fa.clock.Advance(time.Hour)
	}
	// A payload of many alerts can trip the blast-radius breaker, which then
	// holds every later plan for approval and no input would reach a driver:
	// a person resumes.
	if fa.eng.Breaker() != "" {
		if err := fa.eng.Resume(context.Background(), "fuzz"); err != nil {
			t.Fatalf("resume: %v", err)
		}
	}
}

// unsafeDriverCall is an oracle written apart from runbooks' own checks: no
// value a driver receives may hold a glob, quoting or shell character,
// whitespace, a control or non-ASCII byte, "..", or exceed 253 bytes. The one
// glob the default runbooks write themselves, the ":*" that ends the cache
// pattern, is taken off before the check.
func unsafeDriverCall(a runbooks.Action) string {
	check := func(field, s string) string {
		if a.Type == runbooks.CacheClear && field == "parameters.pattern" {
			s = strings.TrimSuffix(s, ":*")
		}
		if len(s) > 253 {
			return fmt.Sprintf("%s of %d bytes", field, len(s))
		}
		if strings.Contains(s, "..") {
			return fmt.Sprintf("%s %q holding \"..\"", field, s)
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("*?[]{}\\`'\"$;|&<>", c) >= 0 {
				return fmt.Sprintf("%s %q holding byte %q", field, s, c)
			}
		}
		return ""
	}
	for _, tf := range [][2]string{{"target.namespace", a.Target.Namespace}, {"target.deployment", a.Target.Deployment}, {"target.service", a.Target.Service}} {
		if p := check(tf[0], tf[1]); p != "" {
			return p
		}
	}
	var walk func(field string, v any) string
	walk = func(field string, v any) string {
		switch x := v.(type) {
		case string:
			return check(field, x)
		case map[string]any:
			for k, v := range x {
				if p := walk(field+"."+k, v); p != "" {
					return p
				}
			}
		case []any:
			for i, v := range x {
				if p := walk(fmt.Sprintf("%s[%d]", field, i), v); p != "" {
					return p
				}
			}
		}
		return ""
	}
	return walk("parameters", a.Parameters)
}

func cut(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// hostileValues are event values that must never reach a driver: globs, path
// climbing, whitespace, control bytes, look-alike letters, template syntax,
// shell syntax, a 10 KB string, and non-strings.
var hostileValues = []any{
	"*", "?", "[a-z]", "../", "..", "a b", "a\nb", "a\tb", "a\x00b", "a\x7fb", "\u0430pi", "payments\u200b",
	"{{route}}", "$(id)", "a;b", "a|b", "`id`", `a"b`, "a'b", "a\\b", "a<b>", strings.Repeat("a", 10240),
	"", nil, true, 12.5, 1e300, map[string]any{"x": 1}, []any{"a"},
}

// hostileEvents puts each hostile value in each variable the default runbooks
// template, in an event that otherwise matches that runbook.
func hostileEvents() [][]byte {
	bases := []struct {
		typ, sev string
		data     map[string]any
		context  map[string]any
		vars     []string
	}{
		{"CIRCUIT_BREAKER_CANDIDATE", "WARNING", map[string]any{"errorRate": 75}, map[string]any{"upstream": "payments"}, []string{"upstream"}},
		{"ERROR_RATE_SPIKE", "WARNING", map[string]any{"errorCategory": "5xx"}, map[string]any{"route": "/api/users"}, []string{"route"}},
		{"RATE_LIMIT_BREACH", "WARNING", map[string]any{"trafficType": "ABUSE"}, map[string]any{"client": "10.1.2.3"}, []string{"client"}},
		{"UPSTREAM_DEGRADATION", "CRITICAL", map[string]any{}, map[string]any{"upstream": "payments", "backup_service": "payments-dr"}, []string{"upstream", "backup_service"}},
	}
	var out [][]byte
	for _, b := range bases {
		for _, v := range b.vars {
			for _, hv := range hostileValues {
				ctx := map[string]any{}
				for k, x := range b.context {
					ctx[k] = x
				}
				ctx[v] = hv
				body, err := json.Marshal(map[string]any{"type": b.typ, "severity": b.sev, "confidence": 0.95, "data": b.data, "context": ctx})
				if err != nil {
					panic(err)
				}
				out = append(out, body)
			}
		}
	}
	return out
}

// FuzzIntakeEvent posts random bodies to POST /v1/events: never a panic, never
// a 5xx, every refusal a 4xx with a JSON message, every acceptance durable and
// readable, and nothing unsafe ever handed to a driver.
func FuzzIntakeEvent(f *testing.F) {
	for _, b := range referenceJSON {
		f.Add(b)
	}
	for _, b := range hostileEvents() {
		f.Add(b)
	}
	for _, b := range boundSeeds() {
		f.Add(b)
	}
	// Ids are any printable ASCII: each must still be readable back by its id.
	// ("." and ".." are not here yet: they are accepted, but ServeMux redirects
	// GET /v1/events/.. to its cleaned path, so they cannot be read back.)
	for _, id := range []string{"a/b", "../x", "%2F", "a?b", "a#b", "a%zz", "~", "..a", strings.Repeat("i", 128)} {
		b, _ := json.Marshal(map[string]any{"id": id, "type": "LATENCY_ANOMALY", "severity": "INFO", "confidence": 0.5})
		f.Add(b)
	}
	fa := newFuzzAPI(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		fa.mu.Lock()
		defer fa.mu.Unlock()
		rec := fa.serve("POST", "/v1/events", body)
		refusal(t, "POST /v1/events", body, rec)
		if rec.Code < 300 {
			var ans recovery.Answer
			if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
				t.Fatalf("body %q: answer %d %q is not JSON: %v", cut(body), rec.Code, rec.Body, err)
			}
			if (rec.Code == http.StatusOK) != (ans.Decision == recovery.DecideNoRunbook) {
				t.Fatalf("body %q: status %d with decision %q: want 200 exactly for no_runbook, else 202", cut(body), rec.Code, ans.Decision)
			}
			fa.accepted(t, "POST /v1/events", body, ans)
		}
		fa.settle(t, body)
	})
}

// alertmanagerSeeds are payloads as Alertmanager sends them, and near misses.
func alertmanagerSeeds() [][]byte {
	alert := func(status, fp string, labels, ann map[string]string) map[string]any {
		return map[string]any{"status": status, "fingerprint": fp, "labels": labels, "annotations": ann,
			"startsAt": "2026-11-27T03:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph"}
	}
	payload := func(alerts ...map[string]any) []byte {
		b, err := json.Marshal(map[string]any{"version": "4", "groupKey": `{}:{alertname="X"}`, "status": "firing",
			"receiver": "recoverbot", "truncatedAlerts": 0, "groupLabels": map[string]string{}, "commonLabels": map[string]string{},
			"commonAnnotations": map[string]string{}, "externalURL": "http://alertmanager", "alerts": alerts})
		if err != nil {
			panic(err)
		}
		return b
	}
	mem := map[string]string{"alertname": "MemoryHigh", "event_type": "CAPACITY_WARNING", "severity": "warning", "resourceType": "MEMORY"}
	memAnn := map[string]string{"summary": "memory at 95%", "confidence": "0.85", "utilization": "95"}
	cb := map[string]string{"alertname": "Upstream5xx", "event_type": "CIRCUIT_BREAKER_CANDIDATE", "severity": "critical", "upstream": "payments"}
	cbAnn := map[string]string{"description": "payments failing", "confidence": "0.9", "errorRate": "80"}
	out := [][]byte{
		payload(alert("firing", "a1b2c3", mem, memAnn)),
		payload(alert("resolved", "a1b2c3", mem, memAnn)),
		payload(alert("firing", "0123456789abcdef", cb, cbAnn), alert("firing", "fedcba9876543210", mem, memAnn)),
		payload(alert("firing", "b1", cb, map[string]string{"confidence": "0.9", "errorRate": "80"}), alert("firing", "zz", cb, cbAnn)),
		payload(alert("firing", "c1", map[string]string{"event_type": "NOPE"}, nil)),
		payload(alert("firing", "c2", cb, map[string]string{"confidence": "high"})),
		payload(alert("firing", "c3", cb, map[string]string{"confidence": "NaN", "errorRate": "80"})),
		payload(alert("firing", "c4", cb, map[string]string{"confidence": "-1"})),
		payload(alert("pending", "c5", cb, cbAnn)),
		payload(alert("firing", strings.Repeat("f", 33), cb, cbAnn)),
		[]byte(`{"version":"4","alerts":[{}]}`),
		[]byte(`{"version":"4","alerts":null}`),
		[]byte(`{"version":3,"alerts":[]}`),
		[]byte(`{"version":"4","alerts":[{"status":"firing","fingerprint":"ab","startsAt":"yesterday"}]}`),
		[]byte(`{"version":"4","alerts":[{"status":"firing","fingerprint":"ab","labels":{"event_type":"CAPACITY_WARNING","severity":"WARNING"},"annotations":{"confidence":"1e999"}}]}`),
		[]byte(`[]`), []byte(`null`), []byte(``), []byte(`{"version":"4"`),
	}
	// At and over the bounds: a stack trace for a description (cut, never
	// refused), a long annotation (cut), a long label and too many labels
	// (that alert refused, naming the bound).
	trace := strings.Repeat("at com.example.Pay.charge(Pay.java:42)\n", 600)
	many := map[string]string{"event_type": "CAPACITY_WARNING", "severity": "warning", "resourceType": "MEMORY"}
	for i := range recovery.MaxDataKeys {
		many[fmt.Sprintf("l%d", i)] = "v"
	}
	out = append(out,
		payload(alert("firing", "e1", mem, map[string]string{"description": trace, "confidence": "0.9", "details": trace})),
		payload(alert("resolved", "e1", mem, map[string]string{"description": trace, "details": trace})),
		payload(alert("firing", "e2", map[string]string{"event_type": "CAPACITY_WARNING", "severity": "warning", "pod": trace}, memAnn)),
		payload(alert("firing", "e3", many, memAnn), alert("firing", "e4", mem, memAnn)),
	)
	for _, hv := range hostileValues {
		s, ok := hv.(string)
		if !ok {
			continue
		}
		l := map[string]string{"event_type": "CIRCUIT_BREAKER_CANDIDATE", "severity": "critical", "upstream": s}
		out = append(out, payload(alert("firing", "dd01", l, cbAnn)))
	}
	return out
}

// FuzzAlertmanager posts random payloads to POST /v1/alertmanager: never a
// panic, never a 5xx (the store is healthy), every refusal with a message, and
// a 200 has one result per alert, each with an event id or an error.
func FuzzAlertmanager(f *testing.F) {
	for _, b := range alertmanagerSeeds() {
		f.Add(b)
	}
	fa := newFuzzAPI(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		fa.mu.Lock()
		defer fa.mu.Unlock()
		rec := fa.serve("POST", "/v1/alertmanager", body)
		refusal(t, "POST /v1/alertmanager", body, rec)
		if rec.Code < 300 {
			var p amPayload
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("payload %q: accepted (%d) although it does not decode: %v", cut(body), rec.Code, err)
			}
			var got struct {
				Results []amResult `json:"results"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("payload %q: answer %q: %v", cut(body), rec.Body, err)
			}
			if len(got.Results) != len(p.Alerts) {
				t.Fatalf("payload %q: %d results for %d alerts", cut(body), len(got.Results), len(p.Alerts))
			}
			for i, r := range got.Results {
				if r.Error == "" {
					fa.accepted(t, fmt.Sprintf("POST /v1/alertmanager alert %d", i), body, r.Answer)
				}
			}
		}
		fa.settle(t, body)
	})
}
