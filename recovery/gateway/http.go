package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

const (
	// maxBody bounds an answer the driver reads (docs/gateway-api.md).
	maxBody = 1 << 20
	// maxQuoted is how much of an error answer goes into the error and the
	// step's report: enough to say why, short enough for a Slack thread reply.
	maxQuoted = 512
	// maxRetryAfter caps a gateway's Retry-After: past it the action fails
	// rather than hold an execution.
	maxRetryAfter = 30 * time.Second
	// maxBackoff caps the doubling backoff.
	maxBackoff = 5 * time.Second
)

// errNoETag refuses a GET answer that cannot make a write conditional.
var errNoETag = errors.New("200 without an ETag: recoverbot writes only with a precondition (docs/gateway-api.md)")

// StatusError is a non-2xx answer from the gateway.
type StatusError struct {
	Method   string
	Path     string // escaped, no host
	Code     int
	Body     string // the first 512 bytes of the answer, token removed
	Attempts int
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("gateway %s %s: %d %s", e.Method, e.Path, e.Code, http.StatusText(e.Code))
	if e.Attempts > 1 {
		s += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// get reads a resource; a 404 is a valid state: none configured. A resource
// that exists must come with its ETag: every write is conditional on it.
func (d *Driver) get(ctx context.Context, report recovery.Reporter, k kind, name string) (state, error) {
	code, body, header, err := d.call(ctx, report, http.MethodGet, path(k, name), nil, nil)
	switch {
	case err != nil:
		return state{}, err
	case code == http.StatusNotFound:
		return state{}, nil
	case len(bytes.TrimSpace(body)) == 0:
		return state{}, fmt.Errorf("gateway GET %s: %d with an empty body", path(k, name), code)
	case header.Get("ETag") == "":
		return state{}, fmt.Errorf("gateway GET %s: %w", path(k, name), errNoETag)
	}
	return state{Found: true, Body: body, ETag: header.Get("ETag")}, nil
}

// set makes the resource s (PUT, or DELETE when s is none) on condition that
// it is still cur, as read: If-Match with cur's ETag, or If-None-Match: * when
// there was none. A change someone made since the read is refused by the
// gateway (412 Precondition Failed), never overwritten: set then reads the
// resource again, and if it is s after all (a retried write whose first
// attempt landed) the write is done; otherwise it returns an error wrapping
// ErrChanged.
func (d *Driver) set(ctx context.Context, report recovery.Reporter, k kind, name string, cur, s state) error {
	cond := http.Header{}
	if cur.Found {
		cond.Set("If-Match", cur.ETag)
	} else {
		cond.Set("If-None-Match", "*")
	}
	var err error
	if !s.Found {
		// A 404 on DELETE is "already gone": the state asked for.
		_, _, _, err = d.call(ctx, report, http.MethodDelete, path(k, name), nil, cond)
	} else {
		var code int
		var answer []byte
		code, answer, _, err = d.call(ctx, report, http.MethodPut, path(k, name), s.Body, cond)
		if err == nil && code == http.StatusNotFound {
			return d.statusError(http.MethodPut, path(k, name), code, answer, 1)
		}
	}
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusPreconditionFailed {
		return err
	}
	now, gerr := d.get(ctx, report, k, name)
	if gerr == nil && same(k, now, s) {
		return nil
	}
	msg := fmt.Sprintf("%s was changed by someone else between recoverbot's read and its write: not overwritten", k.noun(name))
	if gerr == nil {
		if sum, serr := k.summary(now); serr == nil {
			msg += " (it is now " + sum + ")"
		}
	}
	report(msg)
	return fmt.Errorf("%s: %w: %w", msg, err, ErrChanged)
}

// same reports whether a and b are the same for the driver (see summary).
func same(k kind, a, b state) bool {
	sa, err1 := k.summary(a)
	sb, err2 := k.summary(b)
	return err1 == nil && err2 == nil && sa == sb
}

// call makes one API call, retrying it when it may: only idempotent methods
// (the driver uses no other; a POST is never retried), only after a network
// error, a timeout, or a 429, 502, 503 or 504. It returns a 2xx or 404 answer;
// any other is a *StatusError. cond holds the request's precondition headers.
func (d *Driver) call(ctx context.Context, report recovery.Reporter, method, p string, body []byte, cond http.Header) (int, []byte, http.Header, error) {
	idempotent := method == http.MethodGet || method == http.MethodPut || method == http.MethodDelete
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return 0, nil, nil, fmt.Errorf("gateway %s %s: %w", method, p, context.Cause(ctx))
		}
		code, answer, header, err := d.once(ctx, method, p, body, cond)
		var why string
		switch {
		case err != nil && ctx.Err() != nil: // the caller gave up: not the gateway's fault
			return 0, nil, nil, fmt.Errorf("gateway %s %s: %w", method, p, context.Cause(ctx))
		case err != nil:
			why = err.Error()
		case code == http.StatusTooManyRequests, code == http.StatusBadGateway,
			code == http.StatusServiceUnavailable, code == http.StatusGatewayTimeout:
			why = fmt.Sprintf("%d %s", code, http.StatusText(code))
		case code/100 == 2 || code == http.StatusNotFound:
			return code, answer, header, nil
		default:
			return 0, nil, nil, d.statusError(method, p, code, answer, attempt)
		}
		if !idempotent || attempt > d.retries {
			if err != nil {
				if attempt > 1 {
					return 0, nil, nil, fmt.Errorf("gateway %s %s (after %d attempts): %w", method, p, attempt, err)
				}
				return 0, nil, nil, fmt.Errorf("gateway %s %s: %w", method, p, err)
			}
			return 0, nil, nil, d.statusError(method, p, code, answer, attempt)
		}
		wait := min(d.backoff<<(attempt-1), maxBackoff)
		if ra, ok := retryAfter(header, d.now()); ok {
			if ra > maxRetryAfter {
				return 0, nil, nil, fmt.Errorf("%w; the gateway asks to retry after %s, more than %s",
					d.statusError(method, p, code, answer, attempt), ra, maxRetryAfter)
			}
			wait = ra
		}
		if dl, ok := ctx.Deadline(); ok && d.now().Add(wait).After(dl) {
			if err != nil {
				return 0, nil, nil, fmt.Errorf("gateway %s %s: %w; no time left to retry", method, p, err)
			}
			return 0, nil, nil, fmt.Errorf("%w; no time left to retry", d.statusError(method, p, code, answer, attempt))
		}
		report(fmt.Sprintf("%s %s: %s; retrying in %s (attempt %d of %d)", method, p, why, wait, attempt+1, d.retries+1))
		if err := d.sleep(ctx, wait); err != nil {
			return 0, nil, nil, fmt.Errorf("gateway %s %s: gave up retrying: %w", method, p, err)
		}
	}
}

// once makes one HTTP request under its own deadline. Its errors hold no URL
// (a base URL may carry credentials): the caller names method and path.
func (d *Driver) once(ctx context.Context, method, p string, body []byte, cond http.Header) (int, []byte, http.Header, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, d.timeout,
		fmt.Errorf("no answer within %s: %w", d.timeout, context.DeadlineExceeded))
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+p, rd)
	if err != nil {
		return 0, nil, nil, errors.New("cannot build the request") // its text would quote the URL
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "recoverbot")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range cond {
		req.Header[k] = v
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, nil, nil, d.netError(ctx, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("reading the answer: %w", d.netError(ctx, err))
	}
	if len(answer) > maxBody {
		return 0, nil, nil, fmt.Errorf("answer larger than %d bytes", maxBody)
	}
	return resp.StatusCode, answer, resp.Header, nil
}

// netError names a failed request's cause without its URL: the per-call
// deadline's cause, or the transport's error.
func (d *Driver) netError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &redacted{msg: d.redact(err.Error()), err: err}
}

// statusError builds the error for a non-2xx answer, quoting its body.
func (d *Driver) statusError(method, p string, code int, answer []byte, attempts int) *StatusError {
	return &StatusError{Method: method, Path: p, Code: code, Body: d.redact(quote(answer)), Attempts: attempts}
}

// redact removes the token from a text (a gateway may echo headers back).
func (d *Driver) redact(s string) string {
	return strings.ReplaceAll(s, d.token, "[REDACTED]")
}

// quote returns the first maxQuoted bytes of an answer, cut on a character
// boundary, marking the cut.
func quote(b []byte) string {
	cut := len(b) > maxQuoted
	if cut {
		b = b[:maxQuoted]
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), ""))
	if cut {
		s += " …(truncated)"
	}
	return s
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// redacted is an error whose text had the token removed; Unwrap gives the
// original for errors.Is/As.
type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }
