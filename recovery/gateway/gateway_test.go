package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/runbooks"
)

func breakerAction(op string, params map[string]any) runbooks.Action {
	return runbooks.Action{Type: runbooks.CircuitBreaker, Operation: op, Parameters: params}
}

func rateAction(op string, params map[string]any) runbooks.Action {
	return runbooks.Action{Type: runbooks.RateLimit, Operation: op, Parameters: params}
}

func failoverAction(from, to string) runbooks.Action {
	return runbooks.Action{Type: runbooks.Failover, Parameters: map[string]any{"from": from, "to": to}}
}

// TestApplyAndUndo checks, per action, the exact requests of Apply and of Undo,
// and that Undo leaves the gateway exactly as it was before Apply.
func TestApplyAndUndo(t *testing.T) {
	const (
		openPay  = `{"state":"open","duration_s":60,"half_open_requests":3}`
		halfOpen = `{"state":"half_open", "half_open_requests": 5, "expires_at": "2030-01-01T00:00:00Z", "owner": "sre"}`
		rl500    = `{"limit":500,"window_s":60,"note":"set by hand"}`
		routePay = `{"upstream":"payments","timeout_ms":300, "retries":2}`
	)
	for _, tc := range []struct {
		name      string
		state     map[string]string // before Apply
		action    runbooks.Action
		apply     []string // requests of Apply
		applied   map[string]string
		undo      []string // requests of Undo
		applyLine string
	}{
		{
			name:   "open breaker with none before, undo deletes",
			action: breakerAction("OPEN", map[string]any{"service": "payments.v2", "duration": 60.0, "halfOpenRequests": 3.0}),
			apply: []string{"GET /v1/breakers/payments.v2",
				"PUT /v1/breakers/payments.v2 " + openPay},
			applied:   map[string]string{"/v1/breakers/payments.v2": openPay},
			undo:      []string{"GET /v1/breakers/payments.v2", "DELETE /v1/breakers/payments.v2"},
			applyLine: "circuit breaker payments.v2 was no override; open the circuit breaker payments.v2 for 60s (3 half-open trial requests)",
		},
		{
			name:   "open breaker over half-open, undo puts the exact before body",
			state:  map[string]string{"/v1/breakers/payments": halfOpen},
			action: runbooks.Action{Type: runbooks.CircuitBreaker, Operation: "open", Target: runbooks.Target{Service: "payments"}, Duration: 90},
			apply: []string{"GET /v1/breakers/payments",
				`PUT /v1/breakers/payments {"state":"open","duration_s":90}`},
			applied: map[string]string{"/v1/breakers/payments": `{"state":"open","duration_s":90}`},
			undo:    []string{"GET /v1/breakers/payments", "PUT /v1/breakers/payments " + halfOpen},
		},
		{
			name:    "close breaker",
			state:   map[string]string{"/v1/breakers/payments": openPay},
			action:  breakerAction("CLOSE", map[string]any{"service": "payments"}),
			apply:   []string{"GET /v1/breakers/payments", `PUT /v1/breakers/payments {"state":"closed"}`},
			applied: map[string]string{"/v1/breakers/payments": `{"state":"closed"}`},
			undo:    []string{"GET /v1/breakers/payments", "PUT /v1/breakers/payments " + openPay},
		},
		{
			name:   "rate limit with none before, undo deletes",
			action: rateAction("", map[string]any{"target": "10.1.2.0/24", "limit": 100.0, "window": 60.0, "duration": 1800.0}),
			apply: []string{"GET /v1/ratelimits/10.1.2.0%2F24",
				`PUT /v1/ratelimits/10.1.2.0%2F24 {"limit":100,"window_s":60,"duration_s":1800}`},
			applied:   map[string]string{"/v1/ratelimits/10.1.2.0%2F24": `{"limit":100,"window_s":60,"duration_s":1800}`},
			undo:      []string{"GET /v1/ratelimits/10.1.2.0%2F24", "DELETE /v1/ratelimits/10.1.2.0%2F24"},
			applyLine: "rate limit of 10.1.2.0/24 was no limit; limit 10.1.2.0/24 to 100 requests per 60s for 1800s",
		},
		{
			name:   "rate limit over another, undo puts it back",
			state:  map[string]string{"/v1/ratelimits/client-42": rl500},
			action: rateAction("SET", map[string]any{"target": "client-42", "limit": 100.0, "window": 60.0}),
			apply: []string{"GET /v1/ratelimits/client-42",
				`PUT /v1/ratelimits/client-42 {"limit":100,"window_s":60}`},
			applied: map[string]string{"/v1/ratelimits/client-42": `{"limit":100,"window_s":60}`},
			undo:    []string{"GET /v1/ratelimits/client-42", "PUT /v1/ratelimits/client-42 " + rl500},
		},
		{
			name:    "remove rate limit, undo puts it back",
			state:   map[string]string{"/v1/ratelimits/client-42": rl500},
			action:  rateAction("REMOVE", map[string]any{"target": "client-42"}),
			apply:   []string{"GET /v1/ratelimits/client-42", "DELETE /v1/ratelimits/client-42"},
			applied: map[string]string{},
			undo:    []string{"GET /v1/ratelimits/client-42", "PUT /v1/ratelimits/client-42 " + rl500},
		},
		{
			name:   "failover keeps the route's other settings",
			state:  map[string]string{"/v1/routes/payments": routePay},
			action: failoverAction("payments", "payments-dr"),
			apply: []string{"GET /v1/routes/payments",
				`PUT /v1/routes/payments {"retries":2,"timeout_ms":300,"upstream":"payments-dr"}`},
			applied:   map[string]string{"/v1/routes/payments": `{"retries":2,"timeout_ms":300,"upstream":"payments-dr"}`},
			undo:      []string{"GET /v1/routes/payments", "PUT /v1/routes/payments " + routePay},
			applyLine: "route payments was upstream payments; fail route payments over to upstream payments-dr",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, tc.state)
			d, _ := newDriver(t, f)
			var l lines
			before, err := d.Apply(context.Background(), tc.action, l.report)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if got := f.take(); !slices.Equal(got, tc.apply) {
				t.Errorf("Apply requests:\n got %q\nwant %q", got, tc.apply)
			}
			if got := f.snapshot(); !maps.Equal(got, tc.applied) {
				t.Errorf("gateway after Apply: got %q, want %q", got, tc.applied)
			}
			if tc.applyLine != "" && (len(l) != 2 || l[0] != tc.applyLine) {
				t.Errorf("Apply report: got %s, want first of two lines %q", l, tc.applyLine)
			}
			// The before state survives the store's JSON round trip.
			var raw json.RawMessage
			if err := json.Unmarshal(before, &raw); err != nil {
				t.Fatalf("before %s: %v", before, err)
			}

			l = nil
			if err := d.Undo(context.Background(), tc.action, raw, l.report); err != nil {
				t.Fatalf("Undo: %v (report %s)", err, l)
			}
			if got := f.take(); !slices.Equal(got, tc.undo) {
				t.Errorf("Undo requests:\n got %q\nwant %q", got, tc.undo)
			}
			want := tc.state
			if want == nil {
				want = map[string]string{}
			}
			if got := f.snapshot(); !maps.Equal(got, want) {
				t.Errorf("gateway after Undo: got %q, want the state before Apply %q", got, want)
			}
		})
	}
}

// TestApplyAlreadyDone: when the gateway already is as asked, nothing is sent
// and Apply returns nil, so a rollback cannot undo someone else's change.
func TestApplyAlreadyDone(t *testing.T) {
	for _, tc := range []struct {
		name   string
		state  map[string]string
		action runbooks.Action
		line   string
	}{
		{"breaker already open", map[string]string{"/v1/breakers/payments": `{"state":"open","duration_s":600}`},
			breakerAction("OPEN", map[string]any{"service": "payments", "duration": 60.0}),
			"circuit breaker payments is already open: nothing to change"},
		{"no rate limit to remove", nil, rateAction("REMOVE", map[string]any{"target": "client-42"}),
			"rate limit of client-42 is already no limit: nothing to change"},
		{"route already on the backup", map[string]string{"/v1/routes/payments": `{"upstream":"payments-dr"}`},
			failoverAction("payments", "payments-dr"), "route payments is already upstream payments-dr: nothing to change"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, tc.state)
			d, _ := newDriver(t, f)
			var l lines
			before, err := d.Apply(context.Background(), tc.action, l.report)
			if err != nil || before != nil {
				t.Fatalf("Apply: got (%s, %v), want (nil, nil)", before, err)
			}
			if got := f.take(); len(got) != 1 || !strings.HasPrefix(got[0], "GET ") {
				t.Errorf("requests: got %q, want one GET", got)
			}
			if len(l) != 1 || l[0] != tc.line {
				t.Errorf("report: got %s, want [%q]", l, tc.line)
			}
		})
	}
}

func TestFailoverOfMissingRouteChangesNothing(t *testing.T) {
	f := newFake(t, nil)
	d, _ := newDriver(t, f)
	before, err := d.Apply(context.Background(), failoverAction("payments", "payments-dr"), func(string) {})
	if err == nil || before != nil || !strings.Contains(err.Error(), "route payments does not exist") {
		t.Fatalf("Apply: got (%s, %v), want (nil, route does not exist)", before, err)
	}
	if got := f.take(); !slices.Equal(got, []string{"GET /v1/routes/payments"}) {
		t.Errorf("requests: got %q, want only the GET", got)
	}
}

// TestUndoDecides: Undo looks before it restores.
func TestUndoDecides(t *testing.T) {
	const p = "/v1/ratelimits/client-42"
	apply := func(t *testing.T, f *fake, d *Driver, a runbooks.Action) json.RawMessage {
		t.Helper()
		before, err := d.Apply(context.Background(), a, func(string) {})
		if err != nil || before == nil {
			t.Fatalf("Apply: got (%s, %v)", before, err)
		}
		f.take()
		return before
	}
	timeBoxed := rateAction("", map[string]any{"target": "client-42", "limit": 100.0, "window": 60.0, "duration": 1800.0})

	t.Run("changed by someone else since: reported and left", func(t *testing.T) {
		f := newFake(t, map[string]string{p: `{"limit":500,"window_s":60}`})
		d, _ := newDriver(t, f)
		before := apply(t, f, d, timeBoxed)
		f.set(p, `{"limit":5,"window_s":1}`) // an operator's change
		var l lines
		err := d.Undo(context.Background(), timeBoxed, before, l.report)
		if !errors.Is(err, ErrChanged) {
			t.Fatalf("Undo: got %v, want ErrChanged", err)
		}
		if got := f.take(); !slices.Equal(got, []string{"GET " + p}) {
			t.Errorf("requests: got %q, want only the GET", got)
		}
		if got := f.snapshot()[p]; got != `{"limit":5,"window_s":1}` {
			t.Errorf("state: got %s, want the operator's change kept", got)
		}
		want := "rate limit of client-42 is now 5 requests per 1s, not the 100 requests per 60s recoverbot set: someone changed it since; leaving it (it was 500 requests per 60s before)"
		if len(l) != 1 || l[0] != want {
			t.Errorf("report: got %s, want [%q]", l, want)
		}
	})
	t.Run("time-boxed change expired: the overwritten limit is restored", func(t *testing.T) {
		f := newFake(t, map[string]string{p: `{"limit":500,"window_s":60}`})
		d, _ := newDriver(t, f)
		before := apply(t, f, d, timeBoxed)
		f.set(p, "") // the gateway removed ours after duration_s
		if err := d.Undo(context.Background(), timeBoxed, before, func(string) {}); err != nil {
			t.Fatalf("Undo: %v", err)
		}
		if got, want := f.take(), []string{"GET " + p, "PUT " + p + ` {"limit":500,"window_s":60}`}; !slices.Equal(got, want) {
			t.Errorf("requests: got %q, want %q", got, want)
		}
	})
	t.Run("already back: nothing sent", func(t *testing.T) {
		f := newFake(t, nil)
		d, _ := newDriver(t, f)
		before := apply(t, f, d, timeBoxed)
		f.set(p, "")
		var l lines
		if err := d.Undo(context.Background(), timeBoxed, before, l.report); err != nil {
			t.Fatalf("Undo: %v", err)
		}
		if got := f.take(); !slices.Equal(got, []string{"GET " + p}) {
			t.Errorf("requests: got %q, want only the GET", got)
		}
		if want := "rate limit of client-42 is already back to no limit: nothing to undo"; len(l) != 1 || l[0] != want {
			t.Errorf("report: got %s, want [%q]", l, want)
		}
	})
	t.Run("nil before: nothing sent", func(t *testing.T) {
		f := newFake(t, nil)
		d, _ := newDriver(t, f)
		if err := d.Undo(context.Background(), timeBoxed, nil, func(string) {}); err != nil || f.count() != 0 {
			t.Errorf("Undo: got %v after %d requests, want nil after none", err, f.count())
		}
	})
	t.Run("before of another action type: refused", func(t *testing.T) {
		f := newFake(t, nil)
		d, _ := newDriver(t, f)
		before := json.RawMessage(`{"kind":"route","name":"payments","found":true,"body":"{\"upstream\":\"x\"}"}`)
		if err := d.Undo(context.Background(), timeBoxed, before, func(string) {}); err == nil || f.count() != 0 {
			t.Errorf("Undo: got %v after %d requests, want an error before any", err, f.count())
		}
	})
}

// TestErrorAnswers: a non-2xx answer fails with its body quoted (≤ 512 bytes,
// token removed); only 429/502/503/504 and network errors are retried.
func TestErrorAnswers(t *testing.T) {
	open := breakerAction("OPEN", map[string]any{"service": "payments", "duration": 60.0})

	t.Run("500 on PUT fails with the body, not retried, before state returned", func(t *testing.T) {
		f := newFake(t, nil)
		long := "db locked; header was Bearer " + token + "; " + strings.Repeat("x", 2000)
		f.fail = func(_ int, r req, w http.ResponseWriter, _ *http.Request) bool {
			if r.Method != http.MethodPut {
				return false
			}
			http.Error(w, long, http.StatusInternalServerError)
			return true
		}
		d, w := newDriver(t, f)
		var l lines
		before, err := d.Apply(context.Background(), open, l.report)
		var se *StatusError
		if !errors.As(err, &se) || se.Code != 500 {
			t.Fatalf("Apply: got %v, want a *StatusError 500", err)
		}
		if !strings.HasPrefix(err.Error(), "gateway PUT /v1/breakers/payments: 500 Internal Server Error: db locked; header was Bearer [REDACTED]; xxx") {
			t.Errorf("error: got %.200q", err)
		}
		if strings.Contains(err.Error(), token) {
			t.Error("the error shows the token")
		}
		if len(se.Body) > 512+len(" …(truncated)") || !strings.HasSuffix(se.Body, "…(truncated)") {
			t.Errorf("quoted body: %d bytes, want at most 512 and marked truncated", len(se.Body))
		}
		if got := f.take(); len(got) != 2 || len(w.all()) != 0 {
			t.Errorf("requests: got %d (waits %v), want GET and one PUT: a 500 is not retried", len(got), w.all())
		}
		if before == nil {
			t.Error("before: nil, want the state: a PUT answered 500 may have been applied")
		}
	})
	t.Run("400 on PUT is not retried and changed nothing", func(t *testing.T) {
		f := newFake(t, nil)
		f.fail = func(_ int, r req, w http.ResponseWriter, _ *http.Request) bool {
			if r.Method != http.MethodPut {
				return false
			}
			http.Error(w, `{"error":"duration_s too large"}`, http.StatusBadRequest)
			return true
		}
		d, w := newDriver(t, f)
		before, err := d.Apply(context.Background(), open, func(string) {})
		if err == nil || !strings.Contains(err.Error(), `400 Bad Request: {"error":"duration_s too large"}`) {
			t.Fatalf("Apply: got %v, want the 400 with its body", err)
		}
		if before != nil {
			t.Errorf("before: got %s, want nil: a refused PUT changed nothing", before)
		}
		if got := f.take(); len(got) != 2 || len(w.all()) != 0 {
			t.Errorf("requests: got %q (waits %v), want GET and one PUT", got, w.all())
		}
	})
	t.Run("503 then 200 on PUT is retried", func(t *testing.T) {
		f := newFake(t, nil)
		f.fail = func(n int, r req, w http.ResponseWriter, _ *http.Request) bool {
			if r.Method == http.MethodPut && n == 2 {
				http.Error(w, "warming up", http.StatusServiceUnavailable)
				return true
			}
			return false
		}
		d, w := newDriver(t, f, WithBackoff(100*time.Millisecond))
		var l lines
		if _, err := d.Apply(context.Background(), open, l.report); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		body := `{"state":"open","duration_s":60}`
		if got, want := f.take(), []string{"GET /v1/breakers/payments", "PUT /v1/breakers/payments " + body, "PUT /v1/breakers/payments " + body}; !slices.Equal(got, want) {
			t.Errorf("requests:\n got %q\nwant %q", got, want)
		}
		if got := w.all(); !slices.Equal(got, []time.Duration{100 * time.Millisecond}) {
			t.Errorf("waits: got %v, want [100ms]", got)
		}
		if !l.has("PUT /v1/breakers/payments: 503 Service Unavailable; retrying in 100ms (attempt 2 of 4)") {
			t.Errorf("report: got %s, want the retry said", l)
		}
	})
	t.Run("429 honours Retry-After", func(t *testing.T) {
		f := newFake(t, nil)
		f.fail = func(n int, _ req, w http.ResponseWriter, _ *http.Request) bool {
			if n == 1 {
				w.Header().Set("Retry-After", "7")
				http.Error(w, "slow down", http.StatusTooManyRequests)
				return true
			}
			return false
		}
		d, w := newDriver(t, f)
		if _, err := d.Apply(context.Background(), open, func(string) {}); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if got := w.all(); !slices.Equal(got, []time.Duration{7 * time.Second}) {
			t.Errorf("waits: got %v, want [7s]", got)
		}
		if got := f.take(); len(got) != 3 {
			t.Errorf("requests: got %q, want GET twice then PUT", got)
		}
	})
	t.Run("retries give up after the count, with doubling backoff", func(t *testing.T) {
		f := newFake(t, nil)
		f.fail = func(_ int, _ req, w http.ResponseWriter, _ *http.Request) bool {
			http.Error(w, "upstream down", http.StatusBadGateway)
			return true
		}
		d, w := newDriver(t, f)
		_, err := d.Apply(context.Background(), open, func(string) {})
		if err == nil || !strings.Contains(err.Error(), "502 Bad Gateway (after 4 attempts): upstream down") {
			t.Fatalf("Apply: got %v, want the 502 after 4 attempts", err)
		}
		if got, want := w.all(), []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}; !slices.Equal(got, want) {
			t.Errorf("waits: got %v, want %v", got, want)
		}
		if n := f.count(); n != 4 {
			t.Errorf("requests: got %d, want 4 GETs", n)
		}
	})
	t.Run("cancelled during the backoff: no more attempts", func(t *testing.T) {
		f := newFake(t, nil)
		f.fail = func(_ int, _ req, w http.ResponseWriter, _ *http.Request) bool {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return true
		}
		d, _ := newDriver(t, f)
		ctx, cancel := context.WithCancelCause(context.Background())
		d.sleep = func(ctx context.Context, _ time.Duration) error {
			cancel(errors.New("engine shutting down"))
			return sleep(ctx, time.Hour) // the real wait returns at once on a done context
		}
		_, err := d.Apply(ctx, open, func(string) {})
		if err == nil || !strings.Contains(err.Error(), "engine shutting down") {
			t.Fatalf("Apply: got %v, want the cancel cause", err)
		}
		if n := f.count(); n != 1 {
			t.Errorf("requests: got %d, want 1", n)
		}
	})
	t.Run("Retry-After beyond the caller's deadline fails at once", func(t *testing.T) {
		f := newFake(t, nil)
		f.fail = func(_ int, _ req, w http.ResponseWriter, _ *http.Request) bool {
			w.Header().Set("Retry-After", "20")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return true
		}
		d, w := newDriver(t, f)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := d.Apply(ctx, open, func(string) {})
		if err == nil || !strings.Contains(err.Error(), "no time left to retry") || len(w.all()) != 0 {
			t.Fatalf("Apply: got %v after waits %v, want \"no time left to retry\" and no wait", err, w.all())
		}
	})
}

// TestPostIsNeverRetried: the driver sends no POST, but if it did, a 503
// would not be retried: a POST is not idempotent.
func TestPostIsNeverRetried(t *testing.T) {
	f := newFake(t, nil)
	f.fail = func(_ int, _ req, w http.ResponseWriter, _ *http.Request) bool {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return true
	}
	d, w := newDriver(t, f)
	_, _, _, err := d.call(context.Background(), func(string) {}, http.MethodPost, "/v1/things", []byte("{}"), nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusServiceUnavailable || se.Attempts != 1 {
		t.Errorf("POST: got %v, want one 503", err)
	}
	if n := f.count(); n != 1 || len(w.all()) != 0 {
		t.Errorf("requests: got %d (waits %v), want 1", n, w.all())
	}
}

// TestTimeout: a gateway that does not answer fails the call after the
// per-call deadline, which the error names; each attempt gets its own.
func TestTimeout(t *testing.T) {
	f := newFake(t, nil)
	f.fail = func(_ int, _ req, _ http.ResponseWriter, hr *http.Request) bool {
		<-hr.Context().Done() // hold the request until the client gives up
		return true
	}
	d, w := newDriver(t, f, WithTimeout(50*time.Millisecond), WithRetries(1))
	start := time.Now()
	before, err := d.Apply(context.Background(), breakerAction("CLOSE", map[string]any{"service": "payments"}), func(string) {})
	if before != nil || err == nil {
		t.Fatalf("Apply: got (%s, %v), want a timeout", before, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) || err.Error() != "gateway GET /v1/breakers/payments (after 2 attempts): no answer within 50ms: context deadline exceeded" {
		t.Errorf("error: got %q", err)
	}
	// The gateway never answers: the bound only tells "each deadline fired"
	// from "the call hung"; a loaded machine always meets it.
	if n, took := f.count(), time.Since(start); n != 2 || took > 30*time.Second {
		t.Errorf("got %d requests in %s, want 2 of about 50ms each", n, took)
	}
	if len(w.all()) != 1 {
		t.Errorf("waits: got %v, want 1", w.all())
	}
}

// TestDescribeMakesNoRequest: Describe only reads the action.
func TestDescribeMakesNoRequest(t *testing.T) {
	f := newFake(t, nil)
	d, err := New(strings.Replace(f.srv.URL, "http://", "http://ops:pw@", 1)+"/admin", token)
	if err != nil {
		t.Fatal(err)
	}
	gw := strings.Replace(f.srv.URL, "http://", "http://ops:xxxxx@", 1) + "/admin"
	for _, tc := range []struct {
		a    runbooks.Action
		want string
	}{
		{breakerAction("OPEN", map[string]any{"service": "payments", "duration": 60.0, "halfOpenRequests": 3.0}),
			"open the circuit breaker payments for 60s (3 half-open trial requests) on gateway " + gw},
		{breakerAction("CLOSE", map[string]any{"service": "payments"}), "close the circuit breaker payments on gateway " + gw},
		{rateAction("", map[string]any{"target": "client-42", "limit": 100.0, "window": 60.0, "duration": 1800.0}),
			"limit client-42 to 100 requests per 60s for 1800s on gateway " + gw},
		{rateAction("REMOVE", map[string]any{"target": "client-42"}), "remove the rate limit of client-42 on gateway " + gw},
		{failoverAction("payments", "payments-dr"), "fail route payments over to upstream payments-dr on gateway " + gw},
		{breakerAction("HALF", map[string]any{"service": "payments"}),
			`refuse CIRCUIT_BREAKER on gateway ` + gw + `: operation "HALF": want OPEN or CLOSE`},
	} {
		if got := d.Describe(tc.a); got != tc.want {
			t.Errorf("Describe:\n got %q\nwant %q", got, tc.want)
		}
	}
	if n := f.count(); n != 0 {
		t.Errorf("requests: got %d, want 0", n)
	}
}

// TestInvalidActionsMakeNoRequest: a bad action fails before any request.
func TestInvalidActionsMakeNoRequest(t *testing.T) {
	for name, a := range map[string]runbooks.Action{
		"breaker without service":  breakerAction("OPEN", nil),
		"service is a path step":   breakerAction("OPEN", map[string]any{"service": ".."}),
		"service not a string":     breakerAction("OPEN", map[string]any{"service": 42.0}),
		"service with a newline":   breakerAction("OPEN", map[string]any{"service": "pay\nments"}),
		"unknown operation":        breakerAction("TOGGLE", map[string]any{"service": "payments"}),
		"fractional duration":      breakerAction("OPEN", map[string]any{"service": "payments", "duration": 1.5}),
		"negative duration":        breakerAction("OPEN", map[string]any{"service": "payments", "duration": -1.0}),
		"rate limit without limit": rateAction("", map[string]any{"target": "c", "window": 60.0}),
		"rate limit of zero":       rateAction("", map[string]any{"target": "c", "limit": 0.0, "window": 60.0}),
		"failover to itself":       failoverAction("payments", "payments"),
		"failover without to":      {Type: runbooks.Failover, Parameters: map[string]any{"from": "payments"}},
		"other action type":        {Type: runbooks.CacheClear, Parameters: map[string]any{"pattern": "x:*"}},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFake(t, nil)
			d, _ := newDriver(t, f)
			before, err := d.Apply(context.Background(), a, func(string) {})
			if err == nil || before != nil || !strings.Contains(err.Error(), "refused") {
				t.Errorf("Apply: got (%s, %v), want a refusal", before, err)
			}
			if n := f.count(); n != 0 {
				t.Errorf("requests: got %d, want 0", n)
			}
		})
	}
}

func TestNew(t *testing.T) {
	for name, tc := range map[string]struct {
		url, token string
		opts       []Option
	}{
		"not http":          {"ftp://gw", token, nil},
		"no host":           {"http://", token, nil},
		"query":             {"http://gw/?token=x", token, nil},
		"no token":          {"http://gw", "", nil},
		"zero timeout":      {"http://gw", token, []Option{WithTimeout(0)}},
		"negative retries":  {"http://gw", token, []Option{WithRetries(-1)}},
		"unparsable secret": {"http://ops:pw@gw:port/%zz", token, nil},
	} {
		t.Run(name+" refused", func(t *testing.T) {
			_, err := New(tc.url, tc.token, tc.opts...)
			if err == nil {
				t.Fatal("New: got nil error")
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Errorf("error shows credentials: %v", err)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"3":                             3 * time.Second,
		"0":                             0,
		"Fri, 01 May 2026 10:00:09 GMT": 9 * time.Second,
		"Fri, 01 May 2026 09:00:00 GMT": 0,
	} {
		got, ok := retryAfter(http.Header{"Retry-After": {v}}, now)
		if !ok || got != want {
			t.Errorf("retryAfter(%q): got (%s, %t), want (%s, true)", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "soon", "-3"} {
		if _, ok := retryAfter(http.Header{"Retry-After": {v}}, now); ok {
			t.Errorf("retryAfter(%q): ok, want not ok", v)
		}
	}
}
