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
	"path/filepath"
	"runtime/debug"
	"sort"
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

func benchEngine(b *testing.B, mode recovery.Mode) (*recovery.Engine, *store.DB) {
	b.Helper()
	// The bot's own GC setting (TuneGC), restored after the benchmark.
	old := debug.SetGCPercent(GCPercent)
	b.Cleanup(func() { debug.SetGCPercent(old) })
	books, err := runbooks.LoadDefaults()
	if err != nil {
		b.Fatal(err)
	}
	db, err := store.Open(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	cfg := recovery.DefaultConfig()
	cfg.Mode = mode
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

// BenchmarkDecide is the reference engine's loop (parse an event from JSON,
// match, build the plan) plus our guardrails, on both cores. Compare its
// decisions/s with `node bench.js 1000000` run right before or after.
func BenchmarkDecide(b *testing.B) {
	eng, _ := benchEngine(b, recovery.ModeFull)
	var planned atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			var ej eventJSON
			if err := decodeEvent(referenceJSON[i%len(referenceJSON)], &ej); err != nil {
				b.Error(err)
				return
			}
			ev, err := ej.event("api")
			if err != nil {
				b.Error(err)
				return
			}
			p, err := eng.Evaluate(&ev)
			if err != nil || len(p.Actions) == 0 {
				b.Errorf("no plan for event %d: %v %v", i%len(referenceJSON), p.Decision, err)
				return
			}
			planned.Add(1)
			i++
		}
	})
	b.ReportMetric(float64(planned.Load())/b.Elapsed().Seconds(), "decisions/s")
}

// stormEvent returns event i of a varied stream: the six reference events with
// distinct targets, so most events make a new plan (the expensive path).
func stormEvent(i int) []byte {
	var ev map[string]any
	_ = json.Unmarshal(referenceJSON[i%len(referenceJSON)], &ev)
	ctx := ev["context"].(map[string]any)
	ev["id"] = fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i)
	ctx["upstream"] = fmt.Sprintf("svc-%d", i)
	ctx["backup_service"] = fmt.Sprintf("svc-%d-dr", i)
	ctx["route"] = fmt.Sprintf("/api/r%d", i)
	ctx["client"] = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	b, _ := json.Marshal(ev)
	return b
}

func benchServer(b *testing.B) (*httptest.Server, *http.Client) {
	eng, _ := benchEngine(b, recovery.ModeDryRun)
	api := &API{Engine: eng, AlertmanagerConfidence: 0.5, Log: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(api.Handler())
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}
	return srv, client
}

func post(client *http.Client, url string, body []byte) error {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// BenchmarkIntakeHTTP posts events over loopback HTTP from 64 concurrent
// clients; every answer comes after the decision is fsynced (group commit).
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
			i := n.Add(1)
			body := bytes.Replace(bodies[i%int64(len(bodies))], []byte(`"bench-`), fmt.Appendf(nil, `"b%d-`, i), 1)
			if err := post(client, srv.URL+"/v1/events", body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "durable_events/s")
}

// BenchmarkIntakeLatency1k sends 1,000 events/s (open loop: one every ms,
// whatever the previous one is doing) for 3 s and reports p50 and p99.
func BenchmarkIntakeLatency1k(b *testing.B) {
	srv, client := benchServer(b)
	const rate, seconds = 1000, 3
	for r := 0; r < b.N; r++ {
		total := rate * seconds
		lat := make([]time.Duration, total)
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / rate)
		for i := 0; i < total; i++ {
			<-tick.C
			body := stormEvent(r*total + i)
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				if err := post(client, srv.URL+"/v1/events", body); err != nil {
					b.Error(err)
				}
				lat[i] = time.Since(start)
			}()
		}
		tick.Stop()
		wg.Wait()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[total/2].Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(lat[total*99/100].Microseconds())/1000, "p99_ms")
	}
}

// BenchmarkStormDedup is the cost of one repeat of an open plan's failure,
// decided and durably recorded (event record + repeat counter, group-committed),
// from 64 concurrent senders.
func BenchmarkStormDedup(b *testing.B) {
	eng, _ := benchEngine(b, recovery.ModeFull)
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
// failure reported again and again (distinct event ids) over loopback HTTP.
func BenchmarkIntakeStormHTTP(b *testing.B) {
	srv, client := benchServer(b)
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := fmt.Appendf(nil, `{"id":"storm-%d","type":"CAPACITY_WARNING","severity":"WARNING","confidence":0.85,"data":{"resourceType":"MEMORY","utilization":95},"context":{}}`, i)
			if err := post(client, srv.URL+"/v1/events", body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "durable_events/s")
}
