// Package rediscache is the CACHE_CLEAR driver: it removes the keys of a Redis
// cache that match a pattern, without blocking the server.
//
// Keys are found with SCAN (never KEYS, which walks the whole keyspace in one
// command) and removed with UNLINK in batches (never one DEL of a huge list:
// UNLINK frees memory in a background thread and a batch keeps each command
// short), so a concurrent client waits at most one short command. With the
// action parameter graceful: true the driver also pauses between batches.
//
// A cache clear cannot be undone: Apply's "before" state is a note of what was
// cleared, and Undo only reports that the cache refills on demand.
package rediscache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

var _ recovery.Driver = (*Driver)(nil)

// Defaults.
const (
	DefaultBatchSize = 1000
	DefaultPause     = 5 * time.Millisecond
	DefaultTimeout   = 5 * time.Second
	// maxPattern bounds a pattern's length: a real cache prefix is short, and
	// Redis' glob matcher is backtracking.
	maxPattern = 512
)

// Driver clears keys of one Redis database. It is safe for concurrent use.
type Driver struct {
	client  *redis.Client
	where   string // "host:port db N", no credentials: for messages
	batch   int
	pause   time.Duration
	timeout time.Duration
}

// Option configures a Driver.
type Option func(*config)

type config struct {
	batch   int
	pause   time.Duration
	timeout time.Duration
	redis   []func(*redis.Options)
}

// WithBatchSize sets the SCAN COUNT hint and the number of keys per UNLINK
// (default 1000). Smaller batches mean shorter commands and more round trips.
func WithBatchSize(n int) Option { return func(c *config) { c.batch = n } }

// WithPause sets the pause between two UNLINK batches of a graceful clear
// (default 5 ms). A clear without graceful: true does not pause.
func WithPause(d time.Duration) Option { return func(c *config) { c.pause = d } }

// WithTimeout sets the deadline of each Redis command (default 5 s).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithRedisOptions edits the go-redis options parsed from the URL before the
// client is built (TLS, pool size, a custom Dialer, …).
func WithRedisOptions(f func(*redis.Options)) Option {
	return func(c *config) { c.redis = append(c.redis, f) }
}

// New builds a driver for redisURL ("redis://[:password@]host:port/db",
// "rediss://…" for TLS, as go-redis' ParseURL reads it). It does not connect:
// the first Apply does.
func New(redisURL string, opts ...Option) (*Driver, error) {
	c := config{batch: DefaultBatchSize, pause: DefaultPause, timeout: DefaultTimeout}
	for _, o := range opts {
		o(&c)
	}
	switch {
	case c.batch < 1:
		return nil, fmt.Errorf("rediscache: batch size %d: must be at least 1", c.batch)
	case c.pause < 0:
		return nil, fmt.Errorf("rediscache: pause %s: must not be negative", c.pause)
	case c.timeout <= 0:
		return nil, fmt.Errorf("rediscache: timeout %s: must be positive", c.timeout)
	}
	o, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, &redactedError{
			msg: fmt.Sprintf("rediscache: redis URL %s: %s", redactURL(redisURL), scrub(err.Error(), redisURL)),
			err: err,
		}
	}
	// Without this go-redis ignores the context's deadline and uses its own
	// read/write timeouts: the per-command deadline below would not hold.
	o.ContextTimeoutEnabled = true
	for _, f := range c.redis {
		f(o)
	}
	return &Driver{
		client:  redis.NewClient(o),
		where:   fmt.Sprintf("%s db %d", o.Addr, o.DB),
		batch:   c.batch,
		pause:   c.pause,
		timeout: c.timeout,
	}, nil
}

// Close closes the connections to Redis.
func (d *Driver) Close() error { return d.client.Close() }

// Cleared is the "before" state of a cache clear: not a state that can be
// restored, a note of what was removed (kept in the execution's step).
type Cleared struct {
	Pattern  string `json:"pattern"`
	Cleared  int64  `json:"cleared"` // keys removed (UNLINK's count, so no double counting)
	Undoable bool   `json:"undoable"`
	Note     string `json:"note"`
}

const cannotUndo = "a cache clear cannot be undone: the cache refills on demand"

// Check validates a by the rules Apply acts by and returns what it touches,
// "cache/<pattern>". It needs no Redis.
func Check(a runbooks.Action) (string, error) {
	pattern, _, err := parse(a)
	if err != nil {
		return "", err
	}
	return "cache/" + pattern, nil
}

// Check implements recovery.Checker (see the package function Check).
func (d *Driver) Check(a runbooks.Action) (string, error) { return Check(a) }

// Describe says what Apply would do. It calls nothing.
func (d *Driver) Describe(a runbooks.Action) string {
	pattern, graceful, err := parse(a)
	if err != nil {
		return fmt.Sprintf("refuse to clear the cache on redis %s: %v", d.where, err)
	}
	pacing := ""
	if graceful && d.pause > 0 {
		pacing = fmt.Sprintf(", pausing %s between batches", d.pause)
	}
	return fmt.Sprintf("clear the keys matching %s on redis %s (SCAN + UNLINK in batches of %d%s; cannot be undone)",
		pattern, d.where, d.batch, pacing)
}

// Apply removes the keys matching parameters.pattern. It returns a Cleared
// note (nil when no key matched), also when it stops part way, with the count
// removed so far.
func (d *Driver) Apply(ctx context.Context, a runbooks.Action, report recovery.Reporter) (json.RawMessage, error) {
	pattern, graceful, err := parse(a)
	if err != nil {
		return nil, fmt.Errorf("cache clear refused: %w", err)
	}
	start := time.Now()
	n, err := d.clear(ctx, pattern, graceful)
	var note json.RawMessage
	if n > 0 {
		note, _ = json.Marshal(Cleared{Pattern: pattern, Cleared: n, Note: cannotUndo}) // cannot fail
	}
	if err != nil {
		if n > 0 {
			report(fmt.Sprintf("stopped after clearing %s keys matching %s: %v", thousands(n), pattern, err))
		}
		return note, fmt.Errorf("clear %s on redis %s: %w", pattern, d.where, err)
	}
	if n == 0 {
		report(fmt.Sprintf("no key matches %s: nothing cleared", pattern))
		return nil, nil
	}
	report(fmt.Sprintf("cleared %s keys matching %s in %s", thousands(n), pattern, time.Since(start).Round(time.Millisecond)))
	return note, nil
}

// Undo cannot bring cleared keys back; it reports so and succeeds, because
// there is nothing left to restore: the application refills the cache.
func (d *Driver) Undo(_ context.Context, _ runbooks.Action, before json.RawMessage, report recovery.Reporter) error {
	var c Cleared
	if len(before) > 0 && json.Unmarshal(before, &c) == nil && c.Pattern != "" {
		report(fmt.Sprintf("%s (%s keys matching %s were cleared)", cannotUndo, thousands(c.Cleared), c.Pattern))
		return nil
	}
	report(cannotUndo)
	return nil
}

// clear scans and unlinks; it returns the number of keys removed, also on error.
func (d *Driver) clear(ctx context.Context, pattern string, graceful bool) (int64, error) {
	var (
		cursor  uint64
		pending []string
		cleared int64
		batches int
	)
	unlink := func(keys []string) error {
		// Pause between batches, not before the first: the pause lets other
		// clients' commands through while a long clear runs.
		if graceful && batches > 0 && d.pause > 0 {
			t := time.NewTimer(d.pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return context.Cause(ctx)
			case <-t.C:
			}
		}
		batches++
		return d.call(ctx, "UNLINK", func(ctx context.Context) error {
			n, err := d.client.Unlink(ctx, keys...).Result()
			cleared += n
			return err
		})
	}
	for {
		var keys []string
		err := d.call(ctx, "SCAN", func(ctx context.Context) error {
			var err error
			keys, cursor, err = d.client.Scan(ctx, cursor, pattern, int64(d.batch)).Result()
			return err
		})
		if err != nil {
			return cleared, err
		}
		pending = append(pending, keys...)
		for len(pending) >= d.batch {
			if err := unlink(pending[:d.batch]); err != nil {
				return cleared, err
			}
			pending = pending[d.batch:]
		}
		if cursor == 0 {
			break
		}
	}
	if len(pending) > 0 {
		if err := unlink(pending); err != nil {
			return cleared, err
		}
	}
	return cleared, nil
}

// call runs one Redis command under its own deadline.
func (d *Driver) call(ctx context.Context, what string, f func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis %s: %w", what, context.Cause(ctx))
	}
	cctx, cancel := context.WithTimeoutCause(ctx, d.timeout,
		fmt.Errorf("redis %s: no answer within %s", what, d.timeout))
	defer cancel()
	err := f(cctx)
	if err == nil {
		return nil
	}
	// go-redis turns the context's deadline into the socket's, and the socket's
	// timeout can fire a moment before the context's timer: a net timeout is
	// one of the two deadlines too.
	var ne net.Error
	timedOut := errors.As(err, &ne) && ne.Timeout()
	if ctx.Err() != nil || timedOut && passed(ctx) { // the caller gave up (cancelled, or its own deadline)
		if ctx.Err() == nil {
			return fmt.Errorf("redis %s: %w", what, context.DeadlineExceeded)
		}
		return fmt.Errorf("redis %s: %w", what, context.Cause(ctx))
	}
	if cctx.Err() != nil || timedOut { // our per-command deadline
		return fmt.Errorf("redis %s: no answer within %s: %w", what, d.timeout, context.DeadlineExceeded)
	}
	return fmt.Errorf("redis %s: %w", what, err)
}

// passed reports whether ctx's deadline, if any, has come.
func passed(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// parse reads and checks the action: the one set of rules for CACHE_CLEAR,
// applied at start-up to literal patterns and at plan time to rendered ones
// (Check), and again before Redis (Apply). A template like "{{route}}:*"
// rendered from an empty or "*" value is refused here.
func parse(a runbooks.Action) (pattern string, graceful bool, err error) {
	if a.Type != runbooks.CacheClear {
		return "", false, fmt.Errorf("action type %s: this driver does %s", a.Type, runbooks.CacheClear)
	}
	v, ok := a.Parameters["pattern"]
	if !ok {
		return "", false, errors.New("parameters.pattern: missing")
	}
	pattern, ok = v.(string)
	if !ok {
		return "", false, fmt.Errorf("parameters.pattern: a %T, want a string", v)
	}
	if err := CheckPattern(pattern); err != nil {
		return "", false, fmt.Errorf("parameters.pattern: %w", err)
	}
	if v, ok := a.Parameters["graceful"]; ok {
		if graceful, ok = v.(bool); !ok {
			return "", false, fmt.Errorf("parameters.graceful: a %T, want true or false", v)
		}
	}
	return pattern, graceful, nil
}

// CheckPattern refuses a pattern that could clear more than one prefix's keys:
// an empty one, or one whose literal part before the first glob character
// (* ? [ or the escape \) holds no letter or digit — "*", "*:*", ":*", "?x*".
// It also refuses anything but printable ASCII without spaces, and patterns
// over 512 bytes.
func CheckPattern(p string) error {
	if p == "" {
		return errors.New("empty pattern")
	}
	if len(p) > maxPattern {
		return fmt.Errorf("pattern is %d bytes, more than %d", len(p), maxPattern)
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x21 || p[i] > 0x7e {
			return fmt.Errorf("pattern %q must be printable ASCII without spaces (look-alike letters are refused)", p)
		}
	}
	prefix := p
	if i := strings.IndexAny(p, `*?[\`); i >= 0 {
		prefix = p[:i]
	}
	if !strings.ContainsFunc(prefix, func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' }) {
		return fmt.Errorf("pattern %q has no literal prefix before its first wildcard: it would match keys of every prefix", p)
	}
	return nil
}

// thousands writes n with comma separators: 1234567 → "1,234,567".
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// redactedError carries a message with credentials removed; Unwrap gives the
// original for errors.Is/As (its text may hold the URL: do not log it).
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactURL hides the password of a Redis URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// scrub removes the raw URL and its password from an error text.
func scrub(text, raw string) string {
	text = strings.ReplaceAll(text, raw, redactURL(raw))
	if u, err := url.Parse(raw); err == nil {
		if p, ok := u.User.Password(); ok && p != "" {
			text = strings.ReplaceAll(text, p, "xxxxx")
		}
	}
	return text
}
