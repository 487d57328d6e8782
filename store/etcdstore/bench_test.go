package etcdstore_test

import (
	"path/filepath"
	"testing"

	"github.com/recoverbot/recoverbot/internal/etcdtest"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
	"github.com/recoverbot/recoverbot/store/storetest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkEtcdIntake is durable intake (storetest.Intake: event, plan, audit,
// outbox, dedup in one Accept) on a 3-member etcd cluster on loopback (each
// member fsyncing, as deployed), beside the same on bbolt: events/s from 64
// writers, and latency at 1,000/s offered open loop.
func BenchmarkEtcdIntake(b *testing.B) {
	var cli *clientv3.Client
	open := map[string]func(b *testing.B) recovery.Store{
		"bbolt": func(b *testing.B) recovery.Store {
			db, err := store.Open(filepath.Join(b.TempDir(), "recoverbot.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			return db
		},
		"etcd3": func(sub *testing.B) recovery.Store {
			if cli == nil {
				cli = etcdtest.Start(b, 3).Client(b) // once, for every run
			}
			s, _ := newStore(sub, cli)
			return s
		},
	}
	for _, backend := range []string{"bbolt", "etcd3"} {
		b.Run(backend+"/parallel", func(b *testing.B) { storetest.BenchAcceptParallel(b, open[backend](b)) })
		b.Run(backend+"/paced1k", func(b *testing.B) { storetest.BenchAcceptLatency1k(b, open[backend](b), 0) })
	}
}
