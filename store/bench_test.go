package store_test

import (
	"testing"

	"github.com/recoverbot/recoverbot/store/storetest"
)

// BenchmarkAcceptParallel: ~64 concurrent writers, each Accept durable on return.
// Target: ≥ 10,000 events/s on 2 cores.
func BenchmarkAcceptParallel(b *testing.B) {
	db, _ := openDB(b)
	storetest.BenchAcceptParallel(b, db)
}

// BenchmarkAcceptLatency1k offers 1,000 Accepts/s open loop for at least 2 s
// (storetest.BenchAcceptLatency1k). Target: p99 ≤ 25 ms.
func BenchmarkAcceptLatency1k(b *testing.B) {
	db, _ := openDB(b)
	storetest.BenchAcceptLatency1k(b, db, 0)
}
