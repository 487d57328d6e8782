package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/recoverbot/recoverbot/recovery"
)

// nested returns a data object nesting depth levels (data itself is level 1).
func nested(depth int) string {
	return strings.Repeat(`{"a":`, depth-1) + `1` + strings.Repeat(`}`, depth-1)
}

func withData(data string) []byte {
	return []byte(`{"type":"LATENCY_ANOMALY","severity":"WARNING","confidence":0.9,"data":` + data + `}`)
}

func manyKeys(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	b.WriteString("}")
	return b.String()
}

// Issue #12 item 1: an event over a bound is a 422 naming the bound, and
// what was accepted before stays readable. On main the 10,000-level event
// was accepted and then every read of it answered 500.
func TestIntakeBoundsAreA422NamingTheLimit(t *testing.T) {
	h := newAPI(t, recovery.ModeFull, "", "")
	ok := h.do("POST", "/v1/events", "", event(t, "CAPACITY_WARNING"))
	if ok.status != 202 {
		t.Fatalf("reference event: %d %s", ok.status, ok.raw)
	}
	long := `"` + strings.Repeat("x", recovery.MaxDataString+1) + `"`
	var big strings.Builder
	big.WriteString("{")
	for i := range 17 { // 17 × 4000 bytes > 64 KiB
		if i > 0 {
			big.WriteString(",")
		}
		fmt.Fprintf(&big, `"k%d":"%s"`, i, strings.Repeat("y", 4000))
	}
	big.WriteString("}")
	for _, c := range []struct {
		name string
		body []byte
		msg  string
	}{
		{"10,000 levels", withData(nested(10000)), "deeper than the limit of 8 levels"},
		{"9 levels", withData(nested(9)), "deeper than the limit of 8 levels"},
		{"deep context", []byte(`{"type":"LATENCY_ANOMALY","severity":"WARNING","confidence":0.9,"context":` + nested(9) + `}`), "context.a.a.a.a.a.a.a.a nests deeper"},
		{"deep array", withData(`{"a":` + strings.Repeat("[", 8) + strings.Repeat("]", 8) + `}`), "deeper than the limit of 8 levels"},
		{"257 keys", withData(manyKeys(257)), "more than 256 keys"},
		{"a long value", withData(`{"logs":` + long + `}`), "longer than the limit of 4096 bytes"},
		{"a long key", withData(`{` + long + `:1}`), "a key of 4097 bytes is longer than the limit of 4096 bytes"},
		{"over 64 KiB in all", withData(big.String()), "more than 65536 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := h.do("POST", "/v1/events", "", c.body)
			if r.status != 422 || r.body["error"] != "too_large" || !strings.Contains(r.raw, c.msg) {
				t.Errorf("got %d %.300s, want 422 too_large containing %q", r.status, r.raw, c.msg)
			}
		})
	}
	if r := h.do("POST", "/v1/events", "", withData(nested(8))); r.status != 200 && r.status != 202 {
		t.Errorf("8 levels (the limit): %d %s, want accepted", r.status, r.raw)
	}
	if r := h.do("POST", "/v1/events", "", withData(manyKeys(256))); r.status != 200 && r.status != 202 {
		t.Errorf("256 keys (the limit): %d %.300s, want accepted", r.status, r.raw)
	}
	for _, path := range []string{"/v1/executions", "/v1/audit?since=1h", "/v1/events/" + ok.body["event_id"].(string)} {
		if r := h.do("GET", path, "", nil); r.status != 200 {
			t.Errorf("GET %s after the refusals: %d %s", path, r.status, r.raw)
		}
	}
	xs, _ := h.db.Executions(context.Background(), recovery.ExecutionFilter{})
	if len(xs) != 1 {
		t.Errorf("%d executions, want the reference one only", len(xs))
	}
	_ = h.eng.Idle(context.Background())
}

// Issue #12 item 2: human text is never a reason to lose an incident. On main
// a 5 KB summary or Alertmanager description was a 4xx (and Alertmanager
// never resends after a 4xx).
func TestLongTextIsCutNotRefused(t *testing.T) {
	h := newAPI(t, recovery.ModeFull, "", "")
	trace := strings.Repeat("at com.example.Pay.charge(Pay.java:42)\n", 130) // 5 KB
	ev := map[string]any{"type": "CAPACITY_WARNING", "severity": "WARNING", "confidence": 0.9,
		"summary": trace, "context": map[string]any{"service": "payments"}, "data": map[string]any{"resourceType": "MEMORY", "utilization": 95}}
	body, _ := json.Marshal(ev)
	r := h.do("POST", "/v1/events", "", body)
	if r.status != 202 {
		t.Fatalf("5 KB summary: %d %.300s, want 202", r.status, r.raw)
	}
	if got := h.storedSummary(r); got != trace {
		t.Errorf("5 KB summary stored as %d bytes, want it whole (%d)", len(got), len(trace))
	}

	ev["summary"] = strings.Repeat("é", 20000) // 40,000 bytes, cut on a rune
	ev["id"] = "long-one"
	body, _ = json.Marshal(ev)
	r = h.do("POST", "/v1/events", "", body)
	if r.status != 202 && r.status != 200 {
		t.Fatalf("40 KB summary: %d %.300s, want accepted", r.status, r.raw)
	}
	got := h.storedSummary(r)
	if len(got) > recovery.MaxTextBytes || !strings.HasSuffix(got, " bytes]") || !strings.Contains(got, "… [cut ") || !strings.HasPrefix(got, "éé") {
		t.Errorf("40 KB summary stored as %d bytes ending %q, want at most %d ending with the cut marker", len(got), got[max(0, len(got)-30):], recovery.MaxTextBytes)
	}

	// Alertmanager: a description that is a stack trace becomes the summary;
	// a long annotation is cut, marked; a label over the bounds refuses that
	// alert alone, naming the limit.
	payload := func(fp, annotations, labels string) []byte {
		return []byte(`{"version":"4","status":"firing","alerts":[{"status":"firing","fingerprint":"` + fp + `","startsAt":"2026-11-27T03:00:00Z",
		"labels":{"event_type":"CAPACITY_WARNING","severity":"warning","resourceType":"MEMORY"` + labels + `},"annotations":{"confidence":"0.9"` + annotations + `}}]}`)
	}
	tr, _ := json.Marshal(trace)
	r = h.do("POST", "/v1/alertmanager", "", payload("a1", `,"description":`+string(tr)+`,"details":"`+strings.Repeat("d", 10000)+`"`, ""))
	if r.status != 200 {
		t.Fatalf("alert with a 5 KB description: %d %.300s, want 200", r.status, r.raw)
	}
	res := r.body["results"].([]any)[0].(map[string]any)
	rec, err := h.db.EventRecord(context.Background(), res["event_id"].(string))
	if err != nil {
		t.Fatalf("alert result %v: %v", res, err)
	}
	x := struct{ Event recovery.Event }{rec.Event}
	if x.Event.Summary != trace {
		t.Errorf("alert summary is %d bytes, want the whole description (%d)", len(x.Event.Summary), len(trace))
	}
	if d, _ := x.Event.Data["details"].(string); len(d) > recovery.MaxDataString || !strings.HasSuffix(d, " bytes]") {
		t.Errorf("a 10 KB annotation stored as %d bytes, want at most %d, marked", len(d), recovery.MaxDataString)
	}
	r = h.do("POST", "/v1/alertmanager", "", payload("a2", "", `,"pod":"`+strings.Repeat("p", 5000)+`"`))
	if r.status != 422 || !strings.Contains(r.raw, "longer than the limit of 4096 bytes") {
		t.Errorf("alert with a 5 KB label: %d %.300s, want 422 naming the limit", r.status, r.raw)
	}
	// Resolved, the same alert meets the same bounds: Resolve calls
	// recovery.BoundEvent, the edge no longer checks on its own.
	resolved := bytes.ReplaceAll(payload("a3", "", `,"pod":"`+strings.Repeat("p", 5000)+`"`), []byte(`"firing"`), []byte(`"resolved"`))
	r = h.do("POST", "/v1/alertmanager", "", resolved)
	if r.status != 422 || !strings.Contains(r.raw, "longer than the limit of 4096 bytes") {
		t.Errorf("resolved alert with a 5 KB label: %d %.300s, want 422 naming the limit", r.status, r.raw)
	}
	_ = h.eng.Idle(context.Background())
}

func (h *apiHarness) storedSummary(r reply) string {
	h.t.Helper()
	rec, err := h.db.EventRecord(context.Background(), r.body["event_id"].(string))
	if err != nil {
		h.t.Fatalf("stored event %v: %v", r.body["event_id"], err)
	}
	return rec.Event.Summary
}

func TestCutText(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{strings.Repeat("a", 100), 40, strings.Repeat("a", 22) + "… [cut 78 bytes]"},      // 22 + 18 = 40
		{strings.Repeat("é", 50), 41, strings.Repeat("é", 11) + "… [cut 78 bytes]"},       // never half a rune
		{strings.Repeat("a", 100000), 30, strings.Repeat("a", 9) + "… [cut 99991 bytes]"}, // 9 + 21 = 30
	} {
		got := recovery.CutText(c.in, c.max)
		if got != c.want || len(got) > c.max {
			t.Errorf("CutText(%d bytes, %d) = %q, want %q", len(c.in), c.max, got, c.want)
		}
	}
}
