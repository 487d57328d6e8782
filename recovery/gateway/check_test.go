package gateway

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/recoverbot/recoverbot/runbooks"
)

// TestCheckTargets: Check names the resource an action touches, by the rules
// Apply acts by, with no gateway configured.
func TestCheckTargets(t *testing.T) {
	for _, tc := range []struct {
		a    runbooks.Action
		want string
	}{
		{breakerAction("OPEN", map[string]any{"service": "payments"}), "breaker/payments"},
		{runbooks.Action{Type: runbooks.CircuitBreaker, Operation: "CLOSE", Target: runbooks.Target{Service: "payments"}}, "breaker/payments"},
		{rateAction("", map[string]any{"target": "client-42", "limit": 1.0, "window": 1.0}), "ratelimit/client-42"},
		{failoverAction("payments", "payments-dr"), "route/payments"},
	} {
		got, err := Check(tc.a)
		if err != nil || got != tc.want {
			t.Errorf("Check(%s): got (%q, %v), want %q", tc.a.Type, got, err, tc.want)
		}
	}
}

// TestRateLimitPrefixFloors: a catch-all prefix is never a target; IPv4
// prefixes wider than /24 and IPv6 wider than /64 only with
// parameters.allowWidePrefix: true (a literal boolean).
func TestRateLimitPrefixFloors(t *testing.T) {
	action := func(target string, wide any) runbooks.Action {
		p := map[string]any{"target": target, "limit": 10.0, "window": 60.0}
		if wide != nil {
			p["allowWidePrefix"] = wide
		}
		return rateAction("", p)
	}
	for _, tc := range []struct {
		target string
		wide   any
		refuse string // "" accepted
	}{
		{"0.0.0.0/0", nil, "catch-all"},
		{"0.0.0.0/0", true, "catch-all"},
		{"::/0", true, "catch-all"},
		{"::ffff:0:0/96", true, "catch-all"}, // every IPv4 client, written as IPv6
		{"::/80", true, "catch-all"},         // holds the IPv4-mapped range
		{"10.0.0.0/8", nil, "wider than /24"},
		{"10.0.0.0/23", nil, "wider than /24"},
		{"2001:db8::/48", nil, "wider than /64"},
		{"::ffff:10.0.0.0/104", nil, "wider than /24"},
		{"10.0.0.0/33", nil, "not a valid CIDR prefix"},
		{"10.0.0.0/8", "true", "want true or false"}, // a rendered template is a string
		{"10.0.0.0/8", false, "wider than /24"},
		{"10.0.0.0/8", true, ""},
		{"2001:db8::/48", true, ""},
		{"10.1.2.0/24", nil, ""},
		{"2001:db8::/64", nil, ""},
		{"203.0.113.7", nil, ""},
		{"client-42", nil, ""},
	} {
		_, err := Check(action(tc.target, tc.wide))
		switch {
		case tc.refuse == "" && err != nil:
			t.Errorf("%s (allowWidePrefix %v): got %v, want accepted", tc.target, tc.wide, err)
		case tc.refuse != "" && (err == nil || !strings.Contains(err.Error(), tc.refuse)):
			t.Errorf("%s (allowWidePrefix %v): got %v, want refused: %s", tc.target, tc.wide, err, tc.refuse)
		}
	}
}

// TestUndoChangedBetweenReadAndWrite: a change that lands between the undo's
// GET and its PUT is refused by the gateway (If-Match no longer holds) and
// reported as a concurrent change; the operator's value is kept.
func TestUndoChangedBetweenReadAndWrite(t *testing.T) {
	const p = "/v1/ratelimits/client-42"
	f := newFake(t, map[string]string{p: `{"limit":500,"window_s":60}`})
	d, _ := newDriver(t, f)
	a := rateAction("", map[string]any{"target": "client-42", "limit": 100.0, "window": 60.0})
	before, err := d.Apply(context.Background(), a, func(string) {})
	if err != nil || before == nil {
		t.Fatalf("Apply: got (%s, %v)", before, err)
	}
	f.take()
	const operator = `{"limit":5,"window_s":1}`
	f.fail = func(_ int, r req, _ http.ResponseWriter, _ *http.Request) bool {
		if r.Method == http.MethodPut {
			f.set(p, operator) // lands after the undo's GET, before its PUT
		}
		return false
	}
	var l lines
	err = d.Undo(context.Background(), a, before, l.report)
	var se *StatusError
	if !errors.Is(err, ErrChanged) || !errors.As(err, &se) || se.Code != http.StatusPreconditionFailed {
		t.Fatalf("Undo: got %v, want ErrChanged after a 412", err)
	}
	if got := f.snapshot()[p]; got != operator {
		t.Errorf("state: got %s, want the operator's change kept", got)
	}
	if got, want := f.take(), []string{"GET " + p, "PUT " + p + ` {"limit":500,"window_s":60}`, "GET " + p}; !slices.Equal(got, want) {
		t.Errorf("requests: got %q, want %q", got, want)
	}
	if !l.has("changed by someone else between recoverbot's read and its write: not overwritten (it is now 5 requests per 1s)") {
		t.Errorf("report: got %s, want the concurrent change said", l)
	}
}

// TestWriteRetryThatLanded: a PUT whose answer was lost but which took effect
// is retried; the retry's 412 (the ETag moved with our own write) is checked
// against the state and is not a concurrent change.
func TestWriteRetryThatLanded(t *testing.T) {
	const p = "/v1/breakers/payments"
	f := newFake(t, nil)
	d, _ := newDriver(t, f)
	first := true
	f.fail = func(_ int, r req, w http.ResponseWriter, _ *http.Request) bool {
		if r.Method == http.MethodPut && first {
			first = false
			f.set(p, r.Body) // applied, but the answer is lost
			w.WriteHeader(http.StatusBadGateway)
			return true
		}
		return false
	}
	before, err := d.Apply(context.Background(), breakerAction("OPEN", map[string]any{"service": "payments"}), func(string) {})
	if err != nil || before == nil {
		t.Fatalf("Apply: got (%s, %v), want the change done", before, err)
	}
	if got, want := f.snapshot()[p], `{"state":"open"}`; got != want {
		t.Errorf("state: got %s, want %s", got, want)
	}
}

// TestGetWithoutETagWritesNothing: no ETag, no conditional write: refused.
func TestGetWithoutETagWritesNothing(t *testing.T) {
	f := newFake(t, map[string]string{"/v1/breakers/payments": `{"state":"closed"}`})
	f.fail = func(_ int, r req, w http.ResponseWriter, _ *http.Request) bool {
		if r.Method == http.MethodGet {
			w.Write([]byte(`{"state":"closed"}`)) // no ETag header
			return true
		}
		return false
	}
	d, _ := newDriver(t, f)
	before, err := d.Apply(context.Background(), breakerAction("OPEN", map[string]any{"service": "payments"}), func(string) {})
	if err == nil || before != nil || !strings.Contains(err.Error(), "without an ETag") {
		t.Fatalf("Apply: got (%s, %v), want a refusal naming the ETag", before, err)
	}
	if got := f.take(); len(got) != 1 {
		t.Errorf("requests: got %q, want only the GET", got)
	}
}
