package long

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/test/harness"
)

// TestSustainedLoad posts events to the real binary over loopback at a fixed
// rate (open loop: each request has a scheduled time and its latency counts
// from then, so a slow server cannot slow the load down and hide its own
// queueing) through many connections, then checks:
//
//   - no error: every answer is a 2xx;
//   - no loss: a random sample of at least 1,000 accepted events reads back
//     with the same plan, every sampled plan exists, and the bot's own
//     counters (/metrics) hold exactly the events and decisions answered;
//   - memory flat: the process's anonymous resident memory (heap, stacks) at
//     the end is at most 3x what it was after the warm-up. VmRSS is printed
//     too, but it also counts the pages of the bbolt file the bot maps, which
//     grow with the data and are not a leak.
//
// Speed is reported, never asserted: the achieved rate and the p50/p99
// latency are information. RECOVERBOT_LOAD_RATE (2000) and
// RECOVERBOT_LOAD_SECONDS (60) change the load.
func TestSustainedLoad(t *testing.T) {
	requireLong(t)
	rate := harness.EnvInt(t, "RECOVERBOT_LOAD_RATE", 2000)
	seconds := harness.EnvInt(t, "RECOVERBOT_LOAD_SECONDS", 60)
	const warmup = 5 * time.Second
	dir := t.TempDir()
	addr := harness.FreeAddr(t)
	b := &harness.Bot{Bin: harness.Binary(t), Addr: addr, LogPath: filepath.Join(dir, "bot.log"), Env: map[string]string{
		"RECOVERBOT_LISTEN":  addr,
		"RECOVERBOT_DATA":    filepath.Join(dir, "bot.db"),
		"RECOVERBOT_MODE":    "full",
		"RECOVERBOT_DRIVERS": "log",
	}}
	t.Cleanup(b.Kill9)
	b.Start(t)
	pid := b.Pid()
	a := harness.NewAPI(b.Addr, conns)
	l := &load{api: a, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)), decisions: map[string]int{}}

	l.run(t, "warmup", rate, warmup)
	m0, err := readMemory(pid)
	if err != nil {
		t.Fatal(err)
	}
	res := l.run(t, "load", rate, time.Duration(seconds)*time.Second)
	m1, err := readMemory(pid)
	if err != nil {
		t.Fatal(err)
	}
	dbSize := harness.FileSize(b.Env["RECOVERBOT_DATA"])

	l.verify(t)
	if code := b.Stop(t); code != 0 {
		t.Errorf("SIGTERM after the load: exit code %d, want 0; log tail:\n%s", code, harness.Tail(b.LogPath, 20))
	}

	harness.Report(t, "load: %d events in %.1fs = %.0f/s (target %d/s), %d connections, latency p50 %s p99 %s max %s, non-2xx %d, transport errors %d",
		res.sent, res.elapsed.Seconds(), float64(res.sent)/res.elapsed.Seconds(), rate, conns,
		res.pct(50), res.pct(99), res.pct(100), res.non2xx, res.transport)
	harness.Report(t, "load: memory after warm-up %s; at the end %s; bbolt file %.1f MiB; decisions %v",
		m0, m1, float64(dbSize)/(1<<20), l.decisions)
	if m1.anon > 3*m0.anon {
		t.Errorf("anonymous RSS grew from %.1f MiB to %.1f MiB (more than 3x) in %ds: a leak", float64(m0.anon)/1024, float64(m1.anon)/1024, seconds)
	}
}

// conns is how many requests are in flight at most, each on its own
// keep-alive connection.
const conns = 512

// load generates the events and keeps what was answered.
type load struct {
	api *harness.API
	rng *rand.Rand

	mu        sync.Mutex
	accepted  []harness.Answer
	decisions map[string]int
	total     int64 // events sent in every phase, each with a unique id
}

type loadResult struct {
	sent, non2xx, transport int
	elapsed                 time.Duration
	lat                     []time.Duration // sorted
}

func (r *loadResult) pct(p int) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := min(len(r.lat)-1, len(r.lat)*p/100)
	return r.lat[i].Round(10 * time.Microsecond)
}

// storm events: the six reference failures over a bounded set of targets (an
// alert storm repeats the same few hundred things), plus events no runbook
// matches. Every id is unique, so every answer is a new acceptance.
func (l *load) event(i int64, rng *rand.Rand) []byte {
	target := strconv.Itoa(rng.IntN(300))
	var ev map[string]any
	switch rng.IntN(7) {
	case 0:
		ev = map[string]any{"type": "LATENCY_ANOMALY", "severity": "WARNING", "data": map[string]any{"current_value": 2500}, "context": map[string]any{"cause": "DATABASE"}}
	case 1:
		ev = map[string]any{"type": "CIRCUIT_BREAKER_CANDIDATE", "severity": "WARNING", "data": map[string]any{"errorRate": 75}, "context": map[string]any{"upstream": "svc-" + target}}
	case 2:
		ev = map[string]any{"type": "ERROR_RATE_SPIKE", "severity": "WARNING", "data": map[string]any{"errorCategory": "5xx"}, "context": map[string]any{"route": "/api/r" + target}}
	case 3:
		ev = map[string]any{"type": "CAPACITY_WARNING", "severity": "WARNING", "data": map[string]any{"resourceType": "MEMORY", "utilization": 95}, "context": map[string]any{}}
	case 4:
		ev = map[string]any{"type": "RATE_LIMIT_BREACH", "severity": "WARNING", "data": map[string]any{"trafficType": "ABUSE"}, "context": map[string]any{"client": "10.0.1." + target}}
	case 5:
		ev = map[string]any{"type": "UPSTREAM_DEGRADATION", "severity": "CRITICAL", "data": map[string]any{}, "context": map[string]any{"upstream": "svc-" + target, "backup_service": "svc-" + target + "-dr"}}
	default:
		ev = map[string]any{"type": "LATENCY_ANOMALY", "severity": "INFO", "data": map[string]any{"current_value": 90}, "context": map[string]any{}}
	}
	ev["id"] = fmt.Sprintf("load-%07d", i)
	ev["confidence"] = 0.9
	ev["summary"] = "sustained load"
	body, _ := json.Marshal(ev)
	return body
}

// run sends rate events per second for d: a dispatcher releases each request
// at its scheduled time to a pool of workers, one connection each.
func (l *load) run(t *testing.T, phase string, rate int, d time.Duration) *loadResult {
	t.Helper()
	n := int(float64(rate) * d.Seconds())
	type job struct {
		at   time.Time
		id   int64
		body []byte
	}
	base := l.total
	jobs := make(chan job, n)
	res := &loadResult{}
	lat := make([]time.Duration, n)
	var non2xx, transport atomic.Int64
	var wg sync.WaitGroup
	ctx := context.Background()
	for range conns {
		wg.Go(func() {
			for j := range jobs {
				code, body, err := l.api.Do(ctx, "POST", "/v1/events", j.body)
				lat[j.id-base] = time.Since(j.at)
				if err != nil {
					if transport.Add(1) <= 5 {
						t.Errorf("%s: event %d: %v", phase, j.id, err)
					}
					continue
				}
				var ans harness.Answer
				if code/100 != 2 || json.Unmarshal(body, &ans) != nil || ans.EventID == "" {
					if non2xx.Add(1) <= 5 {
						t.Errorf("%s: event %d: %d %s, want 2xx with an answer", phase, j.id, code, body)
					}
					continue
				}
				l.mu.Lock()
				l.accepted = append(l.accepted, ans)
				l.decisions[ans.Decision]++
				l.mu.Unlock()
			}
		})
	}
	// Bodies are built ahead, so the dispatcher only keeps time.
	rng := rand.New(rand.NewPCG(l.rng.Uint64(), 1))
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = l.event(base+int64(i), rng)
	}
	every := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; i < n; {
		now := time.Now()
		for ; i < n && !start.Add(time.Duration(i)*every).After(now); i++ {
			jobs <- job{at: start.Add(time.Duration(i) * every), id: base + int64(i), body: bodies[i]}
		}
		time.Sleep(time.Millisecond)
	}
	close(jobs)
	wg.Wait()
	res.elapsed = time.Since(start)
	l.total += int64(n)
	res.sent, res.non2xx, res.transport = n, int(non2xx.Load()), int(transport.Load())
	slices.Sort(lat)
	res.lat = lat
	return res
}

// verify reads back a random sample of the accepted events and their plans,
// and compares the bot's own counters with what it answered.
func (l *load) verify(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	l.mu.Lock()
	accepted := slices.Clone(l.accepted)
	decisions := l.decisions
	l.mu.Unlock()
	if int64(len(accepted)) != l.total {
		t.Errorf("%d events sent, %d accepted", l.total, len(accepted))
	}
	sample := make([]harness.Answer, 0, 1500)
	for range min(1500, len(accepted)) {
		sample = append(sample, accepted[l.rng.IntN(len(accepted))])
	}
	var lost, vanished atomic.Int64
	var wg sync.WaitGroup
	ch := make(chan harness.Answer)
	for range 16 {
		wg.Go(func() {
			for ans := range ch {
				var rec struct {
					PlanID string `json:"plan_id"`
				}
				if err := l.api.GetJSON(ctx, "/v1/events/"+url.PathEscape(ans.EventID), &rec); err != nil || rec.PlanID != ans.PlanID {
					if lost.Add(1) <= 5 {
						t.Errorf("event %s: %v (plan %q, answered %q)", ans.EventID, err, rec.PlanID, ans.PlanID)
					}
					continue
				}
				if ans.PlanID == "" {
					continue
				}
				var ex harness.Execution
				if err := l.api.GetJSON(ctx, "/v1/executions/"+url.PathEscape(ans.PlanID), &ex); err != nil {
					if vanished.Add(1) <= 5 {
						t.Errorf("plan %s of event %s: %v", ans.PlanID, ans.EventID, err)
					}
				}
			}
		})
	}
	for _, a := range sample {
		ch <- a
	}
	close(ch)
	wg.Wait()

	// The counters count each event once, when it is first accepted.
	got, err := l.metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.events != int64(len(accepted)) {
		t.Errorf("recoverbot_events_received_total is %d, %d events were accepted", got.events, len(accepted))
	}
	for d, n := range decisions {
		if got.decisions[d] != int64(n) {
			t.Errorf("recoverbot_decisions_total{decision=%q} is %d, %d answers said so", d, got.decisions[d], n)
		}
	}
	harness.Report(t, "load: read back %d sampled events (%d lost, %d plans vanished); /metrics counts %d events, decisions %v",
		len(sample), lost.Load(), vanished.Load(), got.events, got.decisions)
}

type counters struct {
	events    int64
	decisions map[string]int64
}

// metrics sums recoverbot_events_received_total and reads
// recoverbot_decisions_total per decision from /metrics.
func (l *load) metrics(ctx context.Context) (counters, error) {
	c := counters{decisions: map[string]int64{}}
	samples, err := l.api.Metrics(ctx)
	if err != nil {
		return c, err
	}
	for name, v := range samples {
		switch {
		case strings.HasPrefix(name, "recoverbot_events_received_total"):
			c.events += int64(v)
		case strings.HasPrefix(name, "recoverbot_decisions_total{"):
			if _, d, ok := strings.Cut(name, `decision="`); ok {
				d, _, _ = strings.Cut(d, `"`)
				c.decisions[d] += int64(v)
			}
		}
	}
	return c, nil
}
