package storetest

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

// Intake is what one intake decision writes: an event, a new PENDING_APPROVAL
// execution, one audit record with its snapshot, one outbox message and the
// dedup entry.
func Intake(n uint64) recovery.Accepted {
	id := fmt.Sprintf("01BENCH%012d", n)
	x := Execution(id, recovery.PendingApproval, T0)
	a := Accepted("ev-"+id, x)
	a.Audit[0].Plan = x
	a.Dedup = &recovery.DedupEntry{Key: "prod/api-gateway/" + id, PlanID: id}
	return a
}

// BenchAcceptParallel: about 64 concurrent writers, each Accept durable on
// return; reports events/s.
func BenchAcceptParallel(b *testing.B, s recovery.Store) {
	var seq atomic.Uint64
	b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Accept(bg, Intake(seq.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchAcceptLatency1k offers 1,000 Accepts/s open loop for at least 2 s:
// Accept i is due at start + i ms whether or not earlier ones returned, and its
// latency runs from when it was due, so a store that falls behind is counted.
// It reports p50, p99, max and the rate achieved. first numbers the Accepts,
// so a store can be measured twice without duplicates.
func BenchAcceptLatency1k(b *testing.B, s recovery.Store, first uint64) {
	const rate = 1000
	n := max(b.N, 2*rate)
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * time.Second / rate)
		if d := time.Until(due); d > 0 {
			time.Sleep(d) // pacing the sender, not waiting for the store
		}
		wg.Go(func() {
			if err := s.Accept(bg, Intake(first+uint64(i))); err != nil {
				b.Error(err)
			}
			lat[i] = time.Since(due)
		})
	}
	wg.Wait()
	busy := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[n/2]), "p50_ms")
	b.ReportMetric(ms(lat[n*99/100]), "p99_ms")
	b.ReportMetric(ms(lat[n-1]), "max_ms")
	b.ReportMetric(float64(n)/busy.Seconds(), "achieved_per_s")
}
