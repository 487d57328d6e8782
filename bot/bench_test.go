package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
)

// referenceJSON are the six events of ../shared/reference/engine-bench/bench.js.
var referenceJSON = [][]byte{
	[]byte(`{"type":"LATENCY_ANOMALY","severity":"WARNING","confidence":0.9,"summary":"pool exhausted","data":{"metric":"latency_ms","current_value":2500},"context":{"cause":"DATABASE"}}`),
	[]byte(`{"type":"CIRCUIT_BREAKER_CANDIDATE","severity":"WARNING","confidence":0.9,"data":{"errorRate":75},"context":{"upstream":"payments"}}`),
	[]byte(`{"type":"ERROR_RATE_SPIKE","severity":"WARNING","confidence":0.8,"data":{"errorCategory":"5xx"},"context":{"route":"/api/users"}}`),
	[]byte(`{"type":"CAPACITY_WARNING","severity":"WARNING","confidence":0.85,"data":{"resourceType":"MEMORY","utilization":95},"context":{}}`),
	[]byte(`{"type":"RATE_LIMIT_BREACH","severity":"WARNING","confidence":0.8,"data":{"trafficType":"ABUSE"},"context":{"client":"10.1.2.3"}}`),
	[]byte(`{"type":"UPSTREAM_DEGRADATION","severity":"CRITICAL","confidence":0.9,"data":{},"context":{"upstream":"payments","backup_service":"payments-dr"}}`),
}

// benchEngine is an engine on a real bbolt file in b.TempDir, with the log
// driver and the given runbooks and mode.
func benchEngine(b *testing.B, mode recovery.Mode, books *runbooks.Set, tune func(*recovery.Config)) (*recovery.Engine, *store.DB) {
	b.Helper()
	// The bot's own GC setting (TuneGC), restored after the benchmark.
	old := debug.SetGCPercent(GCPercent)
	b.Cleanup(func() { debug.SetGCPercent(old) })
	db, err := store.Open(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	cfg := recovery.DefaultConfig()
	cfg.Mode = mode
	cfg.Log = slog.New(slog.DiscardHandler)
	if tune != nil {
		tune(&cfg)
	}
	eng := recovery.New(cfg, db, books, logdriver.New(nil).All())
	if err := eng.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = eng.Close(context.Background())
		_ = db.Close()
	})
	return eng, db
}

func defaultBooks(b *testing.B) *runbooks.Set {
	b.Helper()
	books, err := runbooks.LoadDefaults()
	if err != nil {
		b.Fatal(err)
	}
	return books
}

// stormBooks are the default runbooks with two changes, so that a stream of
// distinct failures makes a new plan for every event, as a storm across many
// services would: the hourly limits are lifted (the defaults allow 2-10 an
// hour, after which events are SUPPRESSED, a cheaper path), and the two
// runbooks whose target is the fixed deployment api-gateway take it from the
// event. Guards, approvals and risks are unchanged.
func stormBooks(b *testing.B) *runbooks.Set {
	b.Helper()
	src := filepath.Join("..", "runbooks", "defaults")
	files, err := filepath.Glob(filepath.Join(src, "*.yaml"))
	if err != nil || len(files) != len(referenceJSON) {
		b.Fatalf("default runbooks in %s: %v %v", src, files, err)
	}
	dir := b.TempDir()
	limit := regexp.MustCompile(`maxExecutionsPerHour: [0-9]+`)
	for _, f := range files {
		y, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		y = limit.ReplaceAll(y, []byte("maxExecutionsPerHour: 100000000"))
		y = bytes.ReplaceAll(y, []byte("deployment: api-gateway"), []byte("deployment: '{{context.deployment}}'"))
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), y, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	books, err := runbooks.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	return books
}

// liftBlastRadius lets every auto plan through the blast-radius breaker (10
// auto-executions an hour by default), so the decisions stay what each
// runbook asks for and can be checked.
func liftBlastRadius(c *recovery.Config) { c.BlastMaxAuto, c.BlastMaxTargets = 1<<30, 1<<30 }

// wantDecision is what full mode decides for each reference event with no
// other plan open: the four low-risk runbooks run, the two high-risk ones
// (RESTART_POD, FAILOVER) wait for approval.
var wantDecision = []recovery.Decision{recovery.DecideAuto, recovery.DecideAuto, recovery.DecideAuto,
	recovery.DecideApproval, recovery.DecideAuto, recovery.DecideApproval}

// BenchmarkDecide is the reference engine's loop (parse an event from JSON,
// match, build the plan) with our whole decision in full mode: validation,
// match, render, every guard of the chain, the plan id, the rollback plan, the
// rendered verify query and each action's description; each decision is
// checked. Nothing is committed, so the six reference events repeat as in
// bench.js and never become duplicates of each other.
//
// Evaluate is Submit's planner stopped before the commit (validate, match,
// render, each driver's Check, the verify query, every guard, the rollback
// plan); the bench adds the plan id and each action's description, as Submit
// does. Not included: the in-memory reservations Submit makes under its lock
// (open target, rate slot, blast-radius count) and building the records it
// commits.
//
// Per core: `make bench-decide` (-cpu 1, i.e. GOMAXPROCS=1, then all cores),
// beside `node bench.js 1000000`, which runs on one core.
func BenchmarkDecide(b *testing.B) {
	eng, _ := benchEngine(b, recovery.ModeFull, defaultBooks(b), nil)
	var ids recovery.IDs
	var planned atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k := i % len(referenceJSON)
			i++
			var ej eventJSON
			if err := decodeEvent(referenceJSON[k], &ej); err != nil {
				b.Error(err)
				return
			}
			ev, err := ej.event("api")
			if err != nil {
				b.Error(err)
				return
			}
			p, err := eng.Evaluate(&ev)
			if err != nil || p.Decision != wantDecision[k] || len(p.Actions) == 0 {
				b.Errorf("event %d: decision %q (%v), %d actions, want %q", k, p.Decision, err, len(p.Actions), wantDecision[k])
				return
			}
			// Evaluate is Submit's planner without the commit: it renders the
			// verify query and the rollback plan; the id is the one Submit mints.
			if rb := eng.Runbooks().Get(p.Runbook); rb.Verify != nil && p.VerifyQuery == "" {
				b.Errorf("event %d: no verify query rendered", k)
				return
			}
			if len(p.Rollback) == 0 && p.Actions[0].Type != runbooks.CacheClear {
				b.Errorf("event %d: no rollback plan", k)
				return
			}
			p.ID = ids.New(time.Now())
			if d := eng.Describe(p.Actions); len(d) != len(p.Actions) || p.ID == "" {
				b.Errorf("event %d: %d descriptions for %d actions, id %q", k, len(d), len(p.Actions), p.ID)
				return
			}
			planned.Add(1)
		}
	})
	b.ReportMetric(float64(planned.Load())/b.Elapsed().Seconds(), "decisions/s")
}

// stormEvent returns event i of a varied stream: the six reference events,
// each with a target of its own (upstream, route, client, deployment), so
// every event makes a new plan (the expensive path). Its id is "bench-<i>".
func stormEvent(i int) []byte {
	var ev map[string]any
	_ = json.Unmarshal(referenceJSON[i%len(referenceJSON)], &ev)
	ctx := ev["context"].(map[string]any)
	ev["id"] = fmt.Sprintf("bench-%d", i)
	ctx["upstream"] = fmt.Sprintf("svc-%d", i)
	ctx["backup_service"] = fmt.Sprintf("svc-%d-dr", i)
	ctx["route"] = fmt.Sprintf("/api/r%d", i)
	ctx["client"] = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	ctx["deployment"] = fmt.Sprintf("app-%d", i)
	b, _ := json.Marshal(ev)
	return b
}

// benchServer is the intake over loopback HTTP on an engine in full mode with
// the log driver (auto plans run, as in the bot), the storm runbooks and the
// blast radius lifted.
func benchServer(b *testing.B) (*httptest.Server, *http.Client) {
	eng, _ := benchEngine(b, recovery.ModeFull, stormBooks(b), liftBlastRadius)
	api := &API{Engine: eng, AlertmanagerConfidence: 0.5, Log: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(api.Handler())
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}
	b.Cleanup(client.CloseIdleConnections)
	return srv, client
}

// post sends one event and returns the decision of a 2xx answer.
func post(client *http.Client, url string, body []byte) (recovery.Answer, error) {
	var a recovery.Answer
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return a, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return a, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("answer %s: %v", b, err)
	}
	return a, nil
}

// postNew sends stream event i and checks that it made a new plan with the
// decision its runbook asks for.
func postNew(client *http.Client, url string, i int, body []byte) error {
	a, err := post(client, url, body)
	if err != nil {
		return err
	}
	if want := wantDecision[i%len(wantDecision)]; a.Decision != want || a.PlanID == "" || a.Replayed {
		return fmt.Errorf("event %d: decision %q, plan %q, replayed %t; want a new plan, %q", i, a.Decision, a.PlanID, a.Replayed, want)
	}
	return nil
}

// BenchmarkIntakeHTTP posts events over loopback HTTP from 256 concurrent
// clients, in full mode with the log driver: every event a new plan (checked:
// each answer's decision and plan id), answered after the decision is fsynced
// (group commit); the auto plans run meanwhile, as in the bot.
func BenchmarkIntakeHTTP(b *testing.B) {
	srv, client := benchServer(b)
	bodies := make([][]byte, 4096)
	for i := range bodies {
		bodies[i] = stormEvent(i)
	}
	var n atomic.Int64
	b.SetParallelism(128) // 256 clients on 2 cores: the group commit batches what they send
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(n.Add(1)) - 1
			body := bodies[i%len(bodies)]
			if i >= len(bodies) {
				body = stormEvent(i) // distinct targets beyond the prepared ones
			}
			if err := postNew(client, srv.URL+"/v1/events", i, body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "durable_events/s")
}

// BenchmarkIntakeLatency1k is open loop: event i is due at start + i ms,
// whatever the earlier ones are doing, for 3 s; its latency runs from when it
// was due, not from when it was sent, so a sender that falls behind counts
// against the bot. It reports p50, p99, max and the rate achieved (events
// answered per second from the first due time to the last answer). Same
// server as BenchmarkIntakeHTTP; each answer's decision is checked.
func BenchmarkIntakeLatency1k(b *testing.B) {
	srv, client := benchServer(b)
	const rate, seconds = 1000, 3
	const total = rate * seconds
	bodies := make([][]byte, total*b.N)
	for i := range bodies {
		bodies[i] = stormEvent(i)
	}
	b.ResetTimer()
	var lat []time.Duration
	var busy time.Duration
	for r := 0; r < b.N; r++ {
		l := make([]time.Duration, total)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range total {
			due := start.Add(time.Duration(i) * time.Second / rate)
			if d := time.Until(due); d > 0 {
				time.Sleep(d) // pacing the sender, not waiting for the bot
			}
			n := r*total + i
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := postNew(client, srv.URL+"/v1/events", n, bodies[n]); err != nil {
					b.Error(err)
				}
				l[i] = time.Since(due)
			}()
		}
		wg.Wait()
		busy += time.Since(start)
		lat = append(lat, l...)
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50_ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99_ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max_ms")
	b.ReportMetric(float64(len(lat))/busy.Seconds(), "achieved_per_s")
}

// BenchmarkStormDedup is the cost of one repeat of an open plan's failure,
// decided and durably recorded (event record + repeat counter, group-committed),
// from 64 concurrent senders.
func BenchmarkStormDedup(b *testing.B) {
	eng, _ := benchEngine(b, recovery.ModeFull, defaultBooks(b), nil)
	var first eventJSON
	_ = decodeEvent(referenceJSON[3], &first) // CAPACITY_WARNING: waits for approval, stays open
	ev, _ := first.event("api")
	if a, err := eng.Submit(context.Background(), ev); err != nil || a.Decision != recovery.DecideApproval {
		b.Fatalf("%+v %v", a, err)
	}
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var ej eventJSON
			if err := decodeEvent(referenceJSON[3], &ej); err != nil {
				b.Error(err)
				return
			}
			e, _ := ej.event("api")
			a, err := eng.Submit(context.Background(), e)
			if err != nil || a.Decision != recovery.DecideDuplicate {
				b.Errorf("%+v %v", a, err)
				return
			}
			n.Add(1)
		}
	})
	b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "durable_dups/s")
}

// BenchmarkIntakeStormHTTP is durable intake throughput during a storm: one
// failure reported again and again (distinct event ids) over loopback HTTP, in
// full mode: the first makes a plan that waits for approval, every other one is
// checked to be folded into it as a duplicate.
func BenchmarkIntakeStormHTTP(b *testing.B) {
	srv, client := benchServer(b)
	first := []byte(`{"id":"storm-0","type":"CAPACITY_WARNING","severity":"WARNING","confidence":0.85,"data":{"resourceType":"MEMORY","utilization":95},"context":{"deployment":"storm"}}`)
	plan, err := post(client, srv.URL+"/v1/events", first)
	if err != nil || plan.Decision != recovery.DecideApproval {
		b.Fatalf("first event: %+v %v, want a plan waiting for approval", plan, err)
	}
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := fmt.Appendf(nil, `{"id":"storm-%d","type":"CAPACITY_WARNING","severity":"WARNING","confidence":0.85,"data":{"resourceType":"MEMORY","utilization":95},"context":{"deployment":"storm"}}`, i)
			a, err := post(client, srv.URL+"/v1/events", body)
			if err != nil || a.Decision != recovery.DecideDuplicate || a.DuplicateOf != plan.PlanID {
				b.Errorf("repeat %d: %+v %v, want a duplicate of %s", i, a, err, plan.PlanID)
				return
			}
		}
	})
	b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "durable_events/s")
}
