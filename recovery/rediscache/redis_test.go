package rediscache

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The tests run against a real redis-server, found in this order:
//
//  1. RECOVERBOT_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0), as CI sets it;
//     tests then share that server and keep apart by a unique key prefix each;
//  2. else a private redis-server started from PATH for each test on a free
//     127.0.0.1 port, without persistence, in t.TempDir(), killed at cleanup;
//  3. else the test is skipped — unless RECOVERBOT_REQUIRE_INTEGRATION=1, when
//     a missing server is a failure.

const howToRun = "no Redis for the integration tests: install redis-server (apt-get install -y redis-server) " +
	"or set RECOVERBOT_TEST_REDIS_URL=redis://127.0.0.1:6379/0"

// redisURL returns the URL of a Redis server the test may write to.
func redisURL(tb testing.TB) string {
	tb.Helper()
	if u := os.Getenv("RECOVERBOT_TEST_REDIS_URL"); u != "" {
		return u
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("RECOVERBOT_REQUIRE_INTEGRATION") == "1" {
			tb.Fatalf("%s (RECOVERBOT_REQUIRE_INTEGRATION=1)", howToRun)
		}
		tb.Skip(howToRun)
	}
	var last error
	for range 3 { // the free port may be taken between picking and binding it
		u, err := startRedis(tb, bin)
		if err == nil {
			return u
		}
		last = err
	}
	tb.Fatalf("start redis-server: %v", last)
	return ""
}

// startRedis starts redis-server on a free port and waits until its log says
// it accepts connections.
func startRedis(tb testing.TB, bin string) (string, error) {
	tb.Helper()
	port := freePort(tb)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", tb.TempDir(), "--loglevel", "notice")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return "", err
	}
	ready := make(chan error, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if log.Len() < 8192 {
				log.WriteString(sc.Text() + "\n")
			}
			if strings.Contains(sc.Text(), "Ready to accept connections") {
				ready <- nil
				_, _ = io.Copy(io.Discard, out) // keep the pipe drained
				return
			}
		}
		ready <- fmt.Errorf("redis-server exited before it was ready:\n%s", log.String())
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	select {
	case err := <-ready:
		if err != nil {
			stop()
			return "", err
		}
	case <-time.After(10 * time.Second):
		stop()
		return "", fmt.Errorf("redis-server not ready after 10s")
	}
	tb.Cleanup(stop)
	return fmt.Sprintf("redis://127.0.0.1:%d/0", port), nil
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// setup returns the server's URL, a client, and a key prefix no other test
// (or run) uses; the prefix's keys are removed at cleanup, for a shared server.
func setup(tb testing.TB) (string, *redis.Client, string) {
	tb.Helper()
	u := redisURL(tb)
	c := testClient(tb, u)
	p := "rbtest:" + strings.ReplaceAll(tb.Name(), "/", ".") + ":" + rand.Text()[:8] + ":"
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, p+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			if keys = append(keys, iter.Val()); len(keys) == 1000 {
				c.Unlink(ctx, keys...)
				keys = keys[:0]
			}
		}
		if len(keys) > 0 {
			c.Unlink(ctx, keys...)
		}
	})
	return u, c, p
}

// testClient is a plain client on the same server, for seeding and checking.
func testClient(tb testing.TB, u string) *redis.Client {
	tb.Helper()
	o, err := redis.ParseURL(u)
	if err != nil {
		tb.Fatal(err)
	}
	c := redis.NewClient(o)
	tb.Cleanup(func() { c.Close() })
	return c
}

// seed writes n keys named base+i, 1,000 per MSET, pipelined.
func seed(tb testing.TB, c *redis.Client, base string, n int) {
	tb.Helper()
	ctx := context.Background()
	pipe := c.Pipeline()
	for i := 0; i < n; i += 1000 {
		var kv []any
		for j := i; j < min(i+1000, n); j++ {
			kv = append(kv, base+strconv.Itoa(j), "v")
		}
		pipe.MSet(ctx, kv...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		tb.Fatalf("seed %d keys %s*: %v", n, base, err)
	}
}

// count counts the keys matching pattern.
func count(tb testing.TB, c *redis.Client, pattern string) int {
	tb.Helper()
	seen := map[string]bool{} // SCAN may return a key twice
	iter := c.Scan(context.Background(), 0, pattern, 1000).Iterator()
	for iter.Next(context.Background()) {
		seen[iter.Val()] = true
	}
	if err := iter.Err(); err != nil {
		tb.Fatalf("count %s: %v", pattern, err)
	}
	return len(seen)
}

// recorder is a go-redis hook that counts dials and records every command the
// driver sends.
type recorder struct {
	dials atomic.Int64
	mu    sync.Mutex
	cmds  [][]any
	after func(cmd redis.Cmder) // called after each command, when set
}

func (r *recorder) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		r.dials.Add(1)
		return next(ctx, network, addr)
	}
}

func (r *recorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.mu.Lock()
		r.cmds = append(r.cmds, cmd.Args())
		r.mu.Unlock()
		err := next(ctx, cmd)
		if r.after != nil {
			r.after(cmd)
		}
		return err
	}
}

func (r *recorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.mu.Lock()
		for _, c := range cmds {
			r.cmds = append(r.cmds, c.Args())
		}
		r.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (r *recorder) commands() [][]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]any(nil), r.cmds...)
}

// countingDialer dials like net.Dialer and counts how often it was asked to.
func countingDialer(n *atomic.Int64) func(*redis.Options) {
	return func(o *redis.Options) {
		o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			n.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
}

// newDriver builds a driver whose commands r records.
func newDriver(tb testing.TB, u string, r *recorder, opts ...Option) *Driver {
	tb.Helper()
	d, err := New(u, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	if r != nil {
		d.client.AddHook(r)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// lines collects a driver's report.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) report(s string) { l.mu.Lock(); l.l = append(l.l, s); l.mu.Unlock() }
func (l *lines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.l...)
}

// pinger PINGs in a loop on its own connection until stopped (or, when limit
// is not 0, limit times), keeping every answer's latency.
type pinger struct {
	stop chan struct{}
	done chan struct{}
	lat  []time.Duration
	err  error
}

func startPinger(c *redis.Client, limit int) *pinger {
	p := &pinger{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		ctx := context.Background()
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			t := time.Now()
			if err := c.Ping(ctx).Err(); err != nil {
				p.err = err
				return
			}
			p.lat = append(p.lat, time.Since(t))
			if len(p.lat) == limit {
				return
			}
		}
	}()
	return p
}

// finish stops the loop; then n, max and p99 may be read.
func (p *pinger) finish() { close(p.stop); <-p.done; slices.Sort(p.lat) }

func (p *pinger) n() int { return len(p.lat) }

func (p *pinger) max() time.Duration {
	if len(p.lat) == 0 {
		return 0
	}
	return p.lat[len(p.lat)-1]
}

func (p *pinger) p99() time.Duration {
	if len(p.lat) == 0 {
		return 0
	}
	return p.lat[len(p.lat)*99/100]
}
