// Package gateway is the driver for an HTTP gateway's admin API: circuit
// breakers (CIRCUIT_BREAKER), rate limits (RATE_LIMIT) and route failover
// (FAILOVER). The API it speaks is docs/gateway-api.md.
//
// Apply GETs the resource first — that answer, byte for byte, is the "before"
// state — then PUTs or DELETEs. Undo GETs again and restores the before state
// only if the resource is still what Apply left (or Apply's time-boxed change
// has expired); if someone changed it since, Undo reports that and leaves it.
// Every PUT and DELETE is conditional on the ETag of the GET before it
// (If-Match, or If-None-Match: * after a 404), so a change that lands between
// the read and the write is refused by the gateway (412), never overwritten.
//
// Check (also without a configured gateway) validates an action by the same
// parse Apply uses, including the blast-radius floors of rate-limit prefixes.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

var _ recovery.Driver = (*Driver)(nil)

// Defaults.
const (
	DefaultTimeout = 5 * time.Second
	DefaultRetries = 3
	DefaultBackoff = 200 * time.Millisecond
)

// ErrChanged is returned by Undo when the resource was changed by someone else
// since Apply: it is left as found, for a person to decide.
var ErrChanged = errors.New("changed since recoverbot applied its change")

// Driver drives one gateway. It is safe for concurrent use.
type Driver struct {
	base    string // no trailing slash
	shown   string // base without credentials, for messages
	token   string
	client  *http.Client
	timeout time.Duration
	retries int
	backoff time.Duration
	// sleep waits between retries; tests replace it to see the waits.
	sleep func(ctx context.Context, d time.Duration) error
	now   func() time.Time
}

// Option configures a Driver.
type Option func(*Driver)

// WithHTTPClient sets the HTTP client (default: a client of its own with no
// overall timeout; each call has its own deadline, see WithTimeout).
func WithHTTPClient(c *http.Client) Option { return func(d *Driver) { d.client = c } }

// WithTimeout sets the deadline of each HTTP call, reading the answer
// included (default 5 s). A retry gets a new one.
func WithTimeout(t time.Duration) Option { return func(d *Driver) { d.timeout = t } }

// WithRetries sets how many times a failed idempotent call is retried
// (default 3; 0 disables retries).
func WithRetries(n int) Option { return func(d *Driver) { d.retries = n } }

// WithBackoff sets the wait before the first retry; it doubles for each next
// one (default 200 ms). A Retry-After from the gateway takes precedence.
func WithBackoff(b time.Duration) Option { return func(d *Driver) { d.backoff = b } }

// New builds a driver for the gateway at baseURL (http or https, no query),
// authenticating with token. It makes no request.
func New(baseURL, token string, opts ...Option) (*Driver, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, errors.New("gateway: base URL does not parse") // the URL may hold credentials: not quoted
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("gateway: base URL %s: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return nil, fmt.Errorf("gateway: base URL %s: no host", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("gateway: base URL %s: must have no query or fragment", u.Redacted())
	case token == "":
		return nil, errors.New("gateway: empty token")
	}
	d := &Driver{
		base:    strings.TrimRight(baseURL, "/"),
		shown:   strings.TrimRight(u.Redacted(), "/"),
		token:   token,
		client:  &http.Client{},
		timeout: DefaultTimeout,
		retries: DefaultRetries,
		backoff: DefaultBackoff,
		sleep:   sleep,
		now:     time.Now,
	}
	for _, o := range opts {
		o(d)
	}
	switch {
	case d.client == nil:
		return nil, errors.New("gateway: nil HTTP client")
	case d.timeout <= 0:
		return nil, fmt.Errorf("gateway: timeout %s: must be positive", d.timeout)
	case d.retries < 0:
		return nil, fmt.Errorf("gateway: retries %d: must not be negative", d.retries)
	case d.backoff < 0:
		return nil, fmt.Errorf("gateway: backoff %s: must not be negative", d.backoff)
	}
	return d, nil
}

// kind is the kind of gateway resource an action changes.
type kind string

const (
	breaker   kind = "breaker"
	ratelimit kind = "ratelimit"
	route     kind = "route"
)

// collection is the resource's path segment in the API.
func (k kind) collection() string {
	switch k {
	case breaker:
		return "breakers"
	case ratelimit:
		return "ratelimits"
	}
	return "routes"
}

func (k kind) actionType() runbooks.ActionType {
	switch k {
	case breaker:
		return runbooks.CircuitBreaker
	case ratelimit:
		return runbooks.RateLimit
	}
	return runbooks.Failover
}

// noun names a resource in reports: "circuit breaker payments".
func (k kind) noun(name string) string {
	switch k {
	case breaker:
		return "circuit breaker " + name
	case ratelimit:
		return "rate limit of " + name
	}
	return "route " + name
}

// path is the resource's escaped path: the name is one escaped segment.
func path(k kind, name string) string {
	return "/v1/" + k.collection() + "/" + url.PathEscape(name)
}

// state is a resource as the gateway showed it: Found false is "none" (404).
// ETag is the version GET answered with: a write is conditional on it.
type state struct {
	Found bool
	Body  []byte
	ETag  string
}

// summary is the part of a state an action is about, in words: two states
// with the same summary are the same for the driver ("open", "100 requests
// per 60s", "upstream payments", "no override").
func (k kind) summary(s state) (string, error) {
	if !s.Found {
		switch k {
		case breaker:
			return "no override", nil
		case ratelimit:
			return "no limit", nil
		}
		return "no route", nil
	}
	switch k {
	case breaker:
		var b struct {
			State string `json:"state"`
		}
		if err := json.Unmarshal(s.Body, &b); err != nil || b.State == "" {
			return "", fmt.Errorf("unreadable breaker %.200q", s.Body)
		}
		return b.State, nil
	case ratelimit:
		var r struct {
			Limit   *float64 `json:"limit"`
			WindowS *float64 `json:"window_s"`
		}
		if err := json.Unmarshal(s.Body, &r); err != nil || r.Limit == nil || r.WindowS == nil {
			return "", fmt.Errorf("unreadable rate limit %.200q", s.Body)
		}
		return fmt.Sprintf("%g requests per %gs", *r.Limit, *r.WindowS), nil
	}
	var r struct {
		Upstream string `json:"upstream"`
	}
	if err := json.Unmarshal(s.Body, &r); err != nil || r.Upstream == "" {
		return "", fmt.Errorf("unreadable route %.200q", s.Body)
	}
	return "upstream " + r.Upstream, nil
}

// change is what one action asks for, read from the action alone.
type change struct {
	kind     kind
	name     string
	remove   bool   // DELETE instead of PUT
	body     []byte // the PUT body (breakers, rate limits)
	upstream string // FAILOVER: the route's new upstream, set into its GET body
	expires  bool   // the PUT carries a duration: the gateway removes it by itself
	text     string // for Describe and reports
}

// want is the state the change leads to from cur.
func (c *change) want(cur state) (state, error) {
	switch {
	case c.remove:
		return state{}, nil
	case c.kind != route:
		return state{Found: true, Body: c.body}, nil
	case !cur.Found:
		return state{}, fmt.Errorf("route %s does not exist on the gateway: nothing to fail over", c.name)
	}
	// Change only "upstream", so the route's other settings survive the PUT.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(cur.Body, &fields); err != nil {
		return state{}, fmt.Errorf("route %s: unreadable body %.200q", c.name, cur.Body)
	}
	fields["upstream"], _ = json.Marshal(c.upstream) // a string: cannot fail
	b, err := json.Marshal(fields)
	return state{Found: true, Body: b}, err
}

// parse reads an action into a change. It calls nothing.
func parse(a runbooks.Action) (*change, error) {
	switch a.Type {
	case runbooks.CircuitBreaker:
		return parseBreaker(a)
	case runbooks.RateLimit:
		return parseRateLimit(a)
	case runbooks.Failover:
		return parseFailover(a)
	}
	return nil, fmt.Errorf("action type %s: this driver does %s, %s and %s", a.Type,
		runbooks.CircuitBreaker, runbooks.RateLimit, runbooks.Failover)
}

func parseBreaker(a runbooks.Action) (*change, error) {
	name, err := nameParam(a, "service", true, serviceName)
	if err != nil {
		return nil, err
	}
	c := &change{kind: breaker, name: name}
	switch strings.ToUpper(a.Operation) {
	case "OPEN":
		dur, err := seconds(a, "duration", true)
		if err != nil {
			return nil, err
		}
		half, err := seconds(a, "halfOpenRequests", false)
		if err != nil {
			return nil, err
		}
		c.body, _ = json.Marshal(struct {
			State            string `json:"state"`
			DurationS        int64  `json:"duration_s,omitempty"`
			HalfOpenRequests int64  `json:"half_open_requests,omitempty"`
		}{"open", dur, half})
		c.expires = dur > 0
		c.text = "open the " + breaker.noun(name)
		if dur > 0 {
			c.text += fmt.Sprintf(" for %ds", dur)
		}
		if half > 0 {
			c.text += fmt.Sprintf(" (%d half-open trial requests)", half)
		}
	case "CLOSE":
		c.body = []byte(`{"state":"closed"}`)
		c.text = "close the " + breaker.noun(name)
	default:
		return nil, fmt.Errorf("operation %q: want OPEN or CLOSE", a.Operation)
	}
	return c, nil
}

func parseRateLimit(a runbooks.Action) (*change, error) {
	name, err := nameParam(a, "target", true, clientName)
	if err != nil {
		return nil, err
	}
	wide, err := allowWide(a)
	if err != nil {
		return nil, err
	}
	if err := checkPrefix(name, wide); err != nil {
		return nil, fmt.Errorf("parameters.target: %w", err)
	}
	c := &change{kind: ratelimit, name: name}
	switch strings.ToUpper(a.Operation) {
	case "", "SET":
		limit, err := seconds(a, "limit", false) // a whole number, like seconds
		if err != nil {
			return nil, err
		}
		window, err := seconds(a, "window", false)
		if err != nil {
			return nil, err
		}
		if limit < 1 || window < 1 {
			return nil, fmt.Errorf("parameters.limit (%d) and parameters.window (%d): both must be at least 1", limit, window)
		}
		dur, err := seconds(a, "duration", true)
		if err != nil {
			return nil, err
		}
		c.body, _ = json.Marshal(struct {
			Limit     int64 `json:"limit"`
			WindowS   int64 `json:"window_s"`
			DurationS int64 `json:"duration_s,omitempty"`
		}{limit, window, dur})
		c.expires = dur > 0
		c.text = fmt.Sprintf("limit %s to %d requests per %ds", name, limit, window)
		if dur > 0 {
			c.text += fmt.Sprintf(" for %ds", dur)
		}
	case "REMOVE":
		c.remove = true
		c.text = "remove the " + ratelimit.noun(name)
	default:
		return nil, fmt.Errorf("operation %q: want SET (or none) or REMOVE", a.Operation)
	}
	return c, nil
}

func parseFailover(a runbooks.Action) (*change, error) {
	from, err := nameParam(a, "from", false, serviceName)
	if err != nil {
		return nil, err
	}
	to, err := nameParam(a, "to", false, serviceName)
	if err != nil {
		return nil, err
	}
	if from == to {
		return nil, fmt.Errorf("parameters.from and parameters.to are both %q", from)
	}
	return &change{kind: route, name: from, upstream: to,
		text: fmt.Sprintf("fail route %s over to upstream %s", from, to)}, nil
}

// nameParam reads a resource name from parameters[key], or from
// target.service when orService and the parameter is absent, and checks it
// with rule.
func nameParam(a runbooks.Action, key string, orService bool, rule func(string) error) (string, error) {
	v, ok := a.Parameters[key]
	if !ok && orService && a.Target.Service != "" {
		v, ok = a.Target.Service, true
	}
	if !ok {
		return "", fmt.Errorf("parameters.%s: missing", key)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("parameters.%s: a %T, want a string", key, v)
	}
	if err := checkName(s); err != nil {
		return "", fmt.Errorf("parameters.%s: %w", key, err)
	}
	if err := rule(s); err != nil {
		return "", fmt.Errorf("parameters.%s: %w", key, err)
	}
	return s, nil
}

// checkName refuses what cannot be one path segment safely: escaping keeps
// "/" and "?" inside the segment, but "." and ".." are path steps to a server
// that cleans paths.
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("empty name")
	case s == "." || s == "..":
		return fmt.Errorf("name %q is a path step", s)
	case len(s) > 256:
		return fmt.Errorf("name is %d bytes, more than 256", len(s))
	case strings.ContainsFunc(s, unicode.IsControl):
		return fmt.Errorf("name %q holds a control character", s)
	}
	return nil
}

// seconds reads a whole, non-negative number from parameters[key] (absent:
// 0, or the action's duration when orDuration).
func seconds(a runbooks.Action, key string, orDuration bool) (int64, error) {
	v, ok := a.Parameters[key]
	if !ok {
		if orDuration {
			if a.Duration < 0 {
				return 0, fmt.Errorf("duration %d: must not be negative", a.Duration)
			}
			return int64(a.Duration), nil
		}
		return 0, nil
	}
	f, ok := v.(float64)
	if !ok {
		return 0, fmt.Errorf("parameters.%s: a %T, want a number", key, v)
	}
	if f < 0 || f != math.Trunc(f) || f > 1e9 {
		return 0, fmt.Errorf("parameters.%s: %v, want a whole number from 0 to 1e9", key, f)
	}
	return int64(f), nil
}

// Check validates a by the rules Apply acts by and returns the resource it
// touches: "breaker/<service>", "ratelimit/<target>" or "route/<from>". It
// needs no gateway: the rules are the same whether one is configured or not.
func Check(a runbooks.Action) (string, error) {
	c, err := parse(a)
	if err != nil {
		return "", err
	}
	return string(c.kind) + "/" + c.name, nil
}

// Check implements recovery.Checker (see the package function Check).
func (d *Driver) Check(a runbooks.Action) (string, error) { return Check(a) }

// Describe says what Apply would do. It makes no request.
func (d *Driver) Describe(a runbooks.Action) string {
	c, err := parse(a)
	if err != nil {
		return fmt.Sprintf("refuse %s on gateway %s: %v", a.Type, d.shown, err)
	}
	return fmt.Sprintf("%s on gateway %s", c.text, d.shown)
}

// record is the before state Apply returns and Undo reads.
type record struct {
	Kind  kind   `json:"kind"`
	Name  string `json:"name"`
	Found bool   `json:"found"` // false: none configured (404)
	// Body is the GET answer as received, PUT back unchanged by Undo.
	Body string `json:"body,omitempty"`
	// Applied is what Apply sent ("" for a DELETE); Expires says it carried a
	// duration, after which the gateway removes it by itself.
	Applied string `json:"applied,omitempty"`
	Expires bool   `json:"expires,omitempty"`
}

// Apply reads the current state, then changes it. It returns that state
// (nil when it changed nothing: invalid action, failed GET, already as asked,
// or a change the gateway refused with a 4xx). A PUT or DELETE that failed
// otherwise may have taken effect, so the state is returned with the error.
func (d *Driver) Apply(ctx context.Context, a runbooks.Action, report recovery.Reporter) (json.RawMessage, error) {
	c, err := parse(a)
	if err != nil {
		return nil, fmt.Errorf("%s refused: %w", a.Type, err)
	}
	noun := c.kind.noun(c.name)
	cur, err := d.get(ctx, report, c.kind, c.name)
	if err != nil {
		return nil, err
	}
	was, err := c.kind.summary(cur)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", noun, err)
	}
	want, err := c.want(cur)
	if err != nil {
		return nil, err
	}
	will, err := c.kind.summary(want)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", noun, err)
	}
	if will == was {
		report(fmt.Sprintf("%s is already %s: nothing to change", noun, was))
		return nil, nil
	}
	rec := record{Kind: c.kind, Name: c.name, Found: cur.Found, Body: string(cur.Body),
		Applied: string(want.Body), Expires: c.expires}
	before, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("%s: record before state: %w", noun, err)
	}
	report(fmt.Sprintf("%s was %s; %s", noun, was, c.text))
	if err := d.set(ctx, report, c.kind, c.name, cur, want); err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Code >= 400 && se.Code < 500 && se.Code != http.StatusTooManyRequests && se.Code != http.StatusRequestTimeout {
			return nil, err // refused: nothing changed
		}
		return before, err
	}
	report(fmt.Sprintf("%s is now %s", noun, will))
	return before, nil
}

// Undo restores the state Apply found, if the resource is still as Apply
// left it. It returns an error wrapping ErrChanged, changing nothing, when
// someone else changed it since.
func (d *Driver) Undo(ctx context.Context, a runbooks.Action, before json.RawMessage, report recovery.Reporter) error {
	if len(before) == 0 || string(before) == "null" {
		report("nothing to undo: the action changed nothing")
		return nil
	}
	var rec record
	if err := json.Unmarshal(before, &rec); err != nil {
		return fmt.Errorf("undo %s: unreadable before state: %w", a.Type, err)
	}
	if rec.Kind.actionType() != a.Type || (rec.Kind != breaker && rec.Kind != ratelimit && rec.Kind != route) {
		return fmt.Errorf("undo %s: the before state is of a %q", a.Type, rec.Kind)
	}
	if err := checkName(rec.Name); err != nil {
		return fmt.Errorf("undo %s: before state: %w", a.Type, err)
	}
	k, noun := rec.Kind, rec.Kind.noun(rec.Name)
	orig := state{Found: rec.Found, Body: []byte(rec.Body)}
	applied := state{Found: rec.Applied != "", Body: []byte(rec.Applied)}
	was, err := k.summary(orig)
	if err != nil {
		return fmt.Errorf("undo %s: before state: %w", noun, err)
	}
	set, err := k.summary(applied)
	if err != nil {
		return fmt.Errorf("undo %s: applied state: %w", noun, err)
	}

	cur, err := d.get(ctx, report, k, rec.Name)
	if err != nil {
		return fmt.Errorf("undo: %w", err)
	}
	now, err := k.summary(cur)
	if err != nil {
		return fmt.Errorf("undo %s: %w", noun, err)
	}
	switch {
	case now == was:
		report(fmt.Sprintf("%s is already back to %s: nothing to undo", noun, was))
		return nil
	case now == set, !cur.Found && rec.Expires: // ours, or ours has expired
	default:
		report(fmt.Sprintf("%s is now %s, not the %s recoverbot set: someone changed it since; leaving it (it was %s before)",
			noun, now, set, was))
		return fmt.Errorf("undo %s: it is now %s: %w", noun, now, ErrChanged)
	}
	report(fmt.Sprintf("%s is %s; restoring %s", noun, now, was))
	if err := d.set(ctx, report, k, rec.Name, cur, orig); err != nil {
		return fmt.Errorf("undo: %w", err)
	}
	report(fmt.Sprintf("%s is back to %s", noun, was))
	return nil
}
