package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/recoverbot/recoverbot/recovery"
)

// raw sends a request with full control of Host and headers, as a loopback
// client.
func (h *apiHarness) raw(method, path, host string, hdr map[string]string, body []byte) reply {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	if msg, ok := r.body["message"].(string); ok {
		r.raw += "\n" + msg
	}
	return r
}

// Issue #12 item 3: without tokens (the loopback default) a web page could
// create plans with a text/plain POST, read executions after rebinding its
// DNS name to 127.0.0.1, and approve with a bare POST. Each is refused, and
// nothing changes.
func TestBrowserRequestsAreRefused(t *testing.T) {
	h := newAPIWith(t, recovery.ModeFull, "", func(a *API) {
		a.Approvers.LocalDecides = true
		a.AllowedHosts = []string{"bot.example.com"}
	})
	plan := h.do("POST", "/v1/events", "", event(t, "CAPACITY_WARNING")).body["plan_id"].(string)
	evt := event(t, "LATENCY_ANOMALY")
	jsonCT := map[string]string{"Content-Type": "application/json"}
	for _, c := range []struct {
		name, method, path, host string
		hdr                      map[string]string
		body                     []byte
		status                   int
		msg                      string
	}{
		{"text/plain POST of an event", "POST", "/v1/events", "", map[string]string{"Content-Type": "text/plain"}, evt, 415, `POST needs Content-Type: application/json, not "text/plain"`},
		{"form POST of an alert", "POST", "/v1/alertmanager", "", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, []byte(`{}`), 415, "application/json"},
		{"bare POST approves", "POST", "/v1/executions/" + plan + "/approve", "", nil, nil, 415, `not ""`},
		{"bare POST pauses", "POST", "/v1/pause", "", nil, nil, 415, "application/json"},
		{"rebound DNS name reads executions", "GET", "/v1/executions", "evil.example:8080", nil, nil, 403, `Host "evil.example:8080" is not a loopback name or one of RECOVERBOT_ALLOWED_HOSTS`},
		{"rebound DNS name posts", "POST", "/v1/events", "evil.example", jsonCT, evt, 403, "RECOVERBOT_ALLOWED_HOSTS"},
		{"a look-alike of an allowed name", "GET", "/v1/status", "bot.example.com.evil.example", nil, nil, 403, "not a loopback name"},
		{"cross-origin JSON POST approves", "POST", "/v1/executions/" + plan + "/approve", "", map[string]string{"Content-Type": "application/json", "Origin": "https://evil.example"}, nil, 403, `Origin "https://evil.example" is not a loopback name`},
		{"sandboxed page (Origin null)", "POST", "/v1/resume", "", map[string]string{"Content-Type": "application/json", "Origin": "null"}, nil, 403, "requests from web pages are refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := h.raw(c.method, c.path, c.host, c.hdr, c.body)
			if r.status != c.status || !strings.Contains(r.raw, c.msg) {
				t.Errorf("got %d %s, want %d containing %q", r.status, r.raw, c.status, c.msg)
			}
		})
	}
	if x, _ := h.db.Execution(context.Background(), plan); x.State != recovery.PendingApproval || h.eng.Paused() {
		t.Fatalf("after the refusals: plan %s, paused %v; want nothing changed", x.State, h.eng.Paused())
	}
	xs, _ := h.db.Executions(context.Background(), recovery.ExecutionFilter{})
	if len(xs) != 1 {
		t.Errorf("%d executions, want the first one only", len(xs))
	}

	// What a real client sends passes: loopback names with any port, the
	// configured name, JSON with a charset, an Origin on an allowed host.
	for _, c := range []struct {
		name, method, path, host string
		hdr                      map[string]string
		status                   int
	}{
		{"localhost", "GET", "/v1/status", "localhost:8080", nil, 200},
		{"[::1]", "GET", "/v1/status", "[::1]:8080", nil, 200},
		{"127.0.0.1 without a port", "GET", "/v1/status", "127.0.0.1", nil, 200},
		{"the reverse proxy's name, any case", "GET", "/v1/status", "Bot.Example.com:443", nil, 200},
		{"an allowed Origin", "GET", "/v1/status", "bot.example.com", map[string]string{"Origin": "https://bot.example.com"}, 200},
		{"health by pod IP", "GET", "/healthz", "10.2.3.4:8080", nil, 200},
		{"JSON with a charset", "POST", "/v1/pause", "", map[string]string{"Content-Type": "application/json; charset=utf-8"}, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			if r := h.raw(c.method, c.path, c.host, c.hdr, nil); r.status != c.status {
				t.Errorf("got %d %s, want %d", r.status, r.raw, c.status)
			}
		})
	}
	_ = h.eng.Idle(context.Background())
}

// The CLI's client sends what the server requires: JSON on every POST, bodyless
// ones too, and its bearer token.
func TestClientSendsJSONOnEveryPOST(t *testing.T) {
	h := newAPI(t, recovery.ModeFull, "", "ad-tok-0123456789")
	c := NewClient(Config{AdminURL: h.srv.URL, AdminToken: "ad-tok-0123456789"})
	if _, err := c.Do(context.Background(), "POST", "/v1/pause", nil, nil); err != nil || !h.eng.Paused() {
		t.Fatalf("pause through the client: %v (paused %v)", err, h.eng.Paused())
	}
	// Sharing the server's environment, the client takes the only named token.
	c = NewClient(Config{AdminURL: h.srv.URL, AdminTokens: "tester:" + testApprover + "=ad-tok-0123456789"})
	if _, err := c.Do(context.Background(), "POST", "/v1/resume", nil, nil); err != nil || h.eng.Paused() {
		t.Fatalf("resume through the client: %v (paused %v)", err, h.eng.Paused())
	}
}
