package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/store"
)

var t0 = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)

type apiHarness struct {
	t     testing.TB
	srv   *httptest.Server
	eng   *recovery.Engine
	db    *store.DB
	drv   *logdriver.Driver
	clock *recovery.ManualClock
	api   *API
}

const testApprover = "UTESTER"

func newAPI(t testing.TB, mode recovery.Mode, intakeToken, adminToken string) *apiHarness {
	t.Helper()
	// The admin token belongs to an approver (Slack user UTESTER); without
	// one the loopback caller is the local operator of an offline bot.
	var tokens []AdminToken
	if adminToken != "" {
		tokens = []AdminToken{{Name: "tester", SlackID: testApprover, Token: adminToken}}
	}
	return newAPIWith(t, mode, "", func(a *API) {
		a.IntakeToken, a.AdminTokens = intakeToken, tokens
		a.Approvers.LocalDecides = adminToken == ""
	})
}

// newAPIWith is newAPI with a runbook directory (empty: the defaults) and a
// say over the API's settings; the approver policy's global list is
// [testApprover].
func newAPIWith(t testing.TB, mode recovery.Mode, runbookDir string, configure func(*API)) *apiHarness {
	t.Helper()
	books, err := LoadRunbooks(runbookDir)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(t.TempDir(), "bot.db"))
	if err != nil {
		t.Fatal(err)
	}
	h := &apiHarness{t: t, db: db, drv: logdriver.New(nil), clock: recovery.NewManualClock(t0)}
	cfg := recovery.DefaultConfig()
	cfg.Mode, cfg.Clock = mode, h.clock
	h.eng = recovery.New(cfg, db, books, h.drv.All())
	if err := h.eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	api := &API{Engine: h.eng, Approvers: commands.NewApprovers([]string{testApprover}, nil, 0, nil),
		AlertmanagerConfidence: 0.5, Log: slog.New(slog.DiscardHandler)}
	configure(api)
	h.api = api
	api.SetReady(true)
	h.srv = httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		h.srv.Close()
		_ = h.eng.Close(context.Background())
		_ = db.Close()
	})
	return h
}

type reply struct {
	status int
	body   map[string]any
	raw    string
}

func (h *apiHarness) do(method, path, token string, body []byte) reply {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	if msg, ok := r.body["message"].(string); ok {
		r.raw += "\n" + msg // unescaped, for assertions on the sentence
	}
	return r
}

func event(t *testing.T, typ string) []byte {
	t.Helper()
	files, _ := filepath.Glob("../examples/events/*.json")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(`"`+typ+`"`)) {
			return b
		}
	}
	t.Fatalf("no reference event %s", typ)
	return nil
}

func TestIntakeRefusals(t *testing.T) {
	h := newAPI(t, recovery.ModeFull, "in-tok", "ad-tok")
	big := append([]byte(`{"type":"LATENCY_ANOMALY","summary":"`), bytes.Repeat([]byte("x"), 1<<20)...)
	big = append(big, `"}`...)
	cases := []struct {
		name   string
		token  string
		body   []byte
		status int
		msg    string
	}{
		{"no token", "", event(t, "LATENCY_ANOMALY"), 401, "missing bearer token"},
		{"wrong token", "nope", event(t, "LATENCY_ANOMALY"), 401, "wrong bearer token"},
		{"malformed JSON", "in-tok", []byte(`{"type": "LATENCY_ANOMALY",`), 400, "malformed JSON"},
		{"wrong JSON type", "in-tok", []byte(`{"type":"LATENCY_ANOMALY","confidence":"high"}`), 400, "confidence must be float64"},
		{"empty body", "in-tok", nil, 400, "the body is empty"},
		{"unknown event type", "in-tok", []byte(`{"type":"DISK_ON_FIRE","severity":"WARNING","confidence":0.9}`), 422, `unknown event type "DISK_ON_FIRE"`},
		{"missing confidence", "in-tok", []byte(`{"type":"LATENCY_ANOMALY","severity":"WARNING"}`), 400, "confidence is required"},
		{"bad severity", "in-tok", []byte(`{"type":"LATENCY_ANOMALY","severity":"LOUD","confidence":0.9}`), 400, "severity must be"},
		{"confidence out of range", "in-tok", []byte(`{"type":"LATENCY_ANOMALY","severity":"WARNING","confidence":1.5}`), 400, "between 0 and 1"},
		{"too large", "in-tok", big, 413, "larger than 1048576 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.do("POST", "/v1/events", c.token, c.body)
			if r.status != c.status || !strings.Contains(r.raw, c.msg) {
				t.Errorf("got %d %s, want %d containing %q", r.status, r.raw, c.status, c.msg)
			}
		})
	}
	// Refusals lose nothing already accepted, and accept nothing.
	xs, _ := h.db.Executions(context.Background(), recovery.ExecutionFilter{})
	if len(xs) != 0 {
		t.Errorf("%d executions after refusals only, want 0", len(xs))
	}
}

func TestIntakeAcceptsAndAnswers(t *testing.T) {
	h := newAPI(t, recovery.ModeFull, "in-tok", "ad-tok")
	r := h.do("POST", "/v1/events", "in-tok", event(t, "CAPACITY_WARNING"))
	if r.status != 202 || r.body["decision"] != "approval" || r.body["plan_id"] == "" {
		t.Fatalf("got %d %s, want 202 with an approval plan", r.status, r.raw)
	}
	r = h.do("POST", "/v1/events", "in-tok", []byte(`{"type":"RECOVERY_SIGNAL","severity":"INFO","confidence":1}`))
	if r.status != 200 || r.body["decision"] != "no_runbook" {
		t.Fatalf("got %d %s, want 200 no_runbook", r.status, r.raw)
	}
	withID := []byte(`{"id":"sender-7","type":"RATE_LIMIT_BREACH","severity":"WARNING","confidence":0.8,"data":{"trafficType":"ABUSE"},"context":{"client":"10.1.2.3"}}`)
	first := h.do("POST", "/v1/events", "in-tok", withID)
	second := h.do("POST", "/v1/events", "in-tok", withID)
	if first.body["plan_id"] != second.body["plan_id"] || second.body["replayed"] != true {
		t.Fatalf("retry answered %s, want the first answer %s replayed", second.raw, first.raw)
	}
	ev := h.do("GET", "/v1/events/sender-7", "ad-tok", nil)
	if ev.status != 200 || ev.body["plan_id"] != first.body["plan_id"] {
		t.Fatalf("GET event: %d %s", ev.status, ev.raw)
	}
	_ = h.eng.Idle(context.Background())
}

func TestAdminAPI(t *testing.T) {
	h := newAPI(t, recovery.ModeFull, "", "ad-tok")
	plan := h.do("POST", "/v1/events", "", event(t, "CAPACITY_WARNING")).body["plan_id"].(string)

	for _, c := range []struct {
		name, method, path, token string
		status                    int
		msg                       string
	}{
		{"no token", "GET", "/v1/executions", "", 401, "missing bearer token for the admin API"},
		{"wrong token", "POST", "/v1/pause", "in-tok", 401, "wrong bearer token"},
		{"unknown execution", "GET", "/v1/executions/NOPE", "ad-tok", 404, "execution NOPE not found"},
		{"unknown event", "GET", "/v1/events/NOPE", "ad-tok", 404, "event NOPE not found"},
		{"unknown verb", "POST", "/v1/executions/" + plan + "/explode", "ad-tok", 404, "use approve, reject, rollback or false"},
		{"bad state filter", "GET", "/v1/executions?state=NAPPING", "ad-tok", 400, "unknown state"},
		{"bad limit", "GET", "/v1/executions?limit=0", "ad-tok", 400, "limit must be 1..1000"},
		{"rollback of a pending plan", "POST", "/v1/executions/" + plan + "/rollback", "ad-tok", 409, "can be rolled back"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := h.do(c.method, c.path, c.token, nil)
			if r.status != c.status || !strings.Contains(r.raw, c.msg) {
				t.Errorf("got %d %s, want %d containing %q", r.status, r.raw, c.status, c.msg)
			}
		})
	}

	list := h.do("GET", "/v1/executions?state=PENDING_APPROVAL", "ad-tok", nil)
	xs := list.body["executions"].([]any)
	if len(xs) != 1 || xs[0].(map[string]any)["id"] != plan {
		t.Fatalf("list: %s", list.raw)
	}
	for _, k := range []string{"id", "runbook", "state", "decision", "reasons", "event_id", "created_at", "updated_at"} {
		if _, ok := xs[0].(map[string]any)[k]; !ok {
			t.Errorf("list item lacks %q", k)
		}
	}
	if r := h.do("POST", "/v1/executions/"+plan+"/approve", "ad-tok", nil); r.status != 200 {
		t.Fatalf("approve: %d %s", r.status, r.raw)
	}
	if r := h.do("POST", "/v1/executions/"+plan+"/approve", "ad-tok", nil); r.status != 409 {
		t.Fatalf("second approve: %d %s, want 409", r.status, r.raw)
	}
	_ = h.eng.Idle(context.Background())
	show := h.do("GET", "/v1/executions/"+plan, "ad-tok", nil)
	if show.body["execution"].(map[string]any)["state"] != "SUCCEEDED" || len(show.body["audit"].([]any)) < 3 {
		t.Fatalf("show: %s", show.raw)
	}
	if r := h.do("POST", "/v1/pause", "ad-tok", nil); r.status != 200 || !h.eng.Paused() {
		t.Fatalf("pause: %d %s", r.status, r.raw)
	}
	if r := h.do("POST", "/v1/resume", "ad-tok", nil); r.status != 200 || h.eng.Paused() {
		t.Fatalf("resume: %d %s", r.status, r.raw)
	}
	audit := h.do("GET", "/v1/audit?since=1h", "ad-tok", nil)
	if audit.status != 200 || !strings.Contains(audit.raw, `"to":"APPROVED"`) {
		t.Fatalf("audit: %d %s", audit.status, audit.raw)
	}
}

func TestAlertmanagerPayloadRefusals(t *testing.T) {
	h := newAPI(t, recovery.ModeFull, "", "")
	for _, c := range []struct {
		name   string
		body   string
		status int
		msg    string
	}{
		{"wrong version", `{"version":"3","alerts":[{}]}`, 400, `version "3" is not supported`},
		{"no alerts", `{"version":"4","alerts":[]}`, 400, "no alerts"},
		{"bad fingerprint", `{"version":"4","alerts":[{"status":"firing","fingerprint":"zz;","labels":{"event_type":"CAPACITY_WARNING"}}]}`, 422, "not 1-32 hex digits"},
		{"unknown event type", `{"version":"4","alerts":[{"status":"firing","fingerprint":"ab12","labels":{"event_type":"NOPE","severity":"warning"}}]}`, 422, "unknown event type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := h.do("POST", "/v1/alertmanager", "", []byte(c.body))
			if r.status != c.status || !strings.Contains(r.raw, c.msg) {
				t.Errorf("got %d %s, want %d containing %q", r.status, r.raw, c.status, c.msg)
			}
		})
	}
}

func TestAlertmanagerMapping(t *testing.T) {
	h := newAPI(t, recovery.ModeFull, "", "")
	body := `{"version":"4","status":"firing","futureField":{"x":1},"alerts":[{"status":"firing","fingerprint":"a1b2c3",
	"startsAt":"2026-11-27T03:00:00Z","labels":{"alertname":"MemoryHigh","event_type":"CAPACITY_WARNING","severity":"Warning","resourceType":"MEMORY"},
	"annotations":{"summary":"memory at 95%","confidence":"0.85","utilization":"95"}}]}`
	r := h.do("POST", "/v1/alertmanager", "", []byte(body))
	if r.status != 200 {
		t.Fatalf("got %d %s", r.status, r.raw)
	}
	res := r.body["results"].([]any)[0].(map[string]any)
	if res["decision"] != "approval" {
		t.Fatalf("result %v, want an approval plan for restart-pod-memory-leak", res)
	}
	x, err := h.db.Execution(context.Background(), res["plan_id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if x.Runbook != "restart-pod-memory-leak" || x.Event.Severity != "WARNING" || x.Event.Confidence != 0.85 ||
		x.Event.Summary != "memory at 95%" || x.Event.Context["alertname"] != "MemoryHigh" || x.Event.Data["utilization"] != 95.0 {
		t.Errorf("mapped event %+v", x.Event)
	}
	// Without a confidence annotation the configured default (0.5) applies, which
	// is under the runbook's min 0.80: no match.
	noConf := strings.Replace(body, `"confidence":"0.85",`, "", 1)
	noConf = strings.Replace(noConf, "a1b2c3", "d4e5f6", 1)
	r = h.do("POST", "/v1/alertmanager", "", []byte(noConf))
	if got := r.body["results"].([]any)[0].(map[string]any)["decision"]; got != "no_runbook" {
		t.Errorf("without confidence: %v, want no_runbook", got)
	}
}

func TestConfigRefusesOpenListenerWithoutTokens(t *testing.T) {
	env := map[string]string{"RECOVERBOT_LISTEN": "0.0.0.0:8080"}
	_, err := LoadConfig("", func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "intake_token") || !strings.Contains(err.Error(), "admin_tokens") || !strings.Contains(err.Error(), "allowed_hosts") {
		t.Fatalf("err %v, want both tokens named", err)
	}
	env["RECOVERBOT_INTAKE_TOKEN"], env["RECOVERBOT_ADMIN_TOKENS"] = "intake-0123456789", "ops=admin-0123456789"
	env["RECOVERBOT_ALLOWED_HOSTS"] = "bot.example.com"
	if _, err := LoadConfig("", func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
}

func TestConfigFileIsStrictAndEnvWins(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(f, []byte("mode: full\napproval_timout: 1m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(f, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "approval_timout") {
		t.Fatalf("err %v, want the unknown key named", err)
	}
	if err := os.WriteFile(f, []byte("mode: full\napproval_timeout: 1m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(f, func(k string) string {
		return map[string]string{"RECOVERBOT_MODE": "low-risk"}[k]
	})
	if err != nil || c.Mode != "low-risk" || c.ApprovalTimeout != time.Minute {
		t.Fatalf("config %+v %v: want mode from env, timeout from file", c, err)
	}
	if _, err := LoadConfig("", func(k string) string {
		return map[string]string{"RECOVERBOT_APPROVAL_TIMEOUT": "soon"}[k]
	}); err == nil || !strings.Contains(err.Error(), "RECOVERBOT_APPROVAL_TIMEOUT") {
		t.Fatalf("err %v, want the variable named", err)
	}
}
