package etcdstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/internal/etcdtest"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store/storetest"
)

// BenchmarkEtcdCourier is the courier draining an outbox of b.N plan
// notifications (one per plan, so up to 8 lanes at once) on a 3-member etcd cluster (each member fsyncing), with a
// notifier that does what the Slack notifier does besides the Web API call:
// it reads the plan's audit and records the delivery in a setting. It reports
// notifications/s: what bounds how late a plan's message reaches Slack when
// plans are announced faster than that.
func BenchmarkEtcdCourier(b *testing.B) {
	s, _ := newStore(b, etcdtest.Start(b, 3).Client(b))
	ctx := context.Background()
	var seq atomic.Uint64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for n := seq.Add(1); n <= uint64(b.N); n = seq.Add(1) {
				if err := s.Accept(ctx, storetest.Intake(n)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	cctx, stop := context.WithCancel(ctx)
	acks := &countingAcks{Store: s, want: b.N, done: stop}
	n := &recordingNotifier{store: s}
	c := &recovery.Courier{Store: acks, Notifier: n, Poll: 10 * time.Millisecond}
	b.ResetTimer()
	c.Run(cctx)
	b.StopTimer()
	if got := n.delivered.Load(); got != int64(b.N) {
		b.Fatalf("%d notifications delivered, want %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notes/s")
	if left, err := s.Outbox(ctx, 0, 1); err != nil || len(left) > 0 {
		b.Fatalf("outbox after the drain: %v, %v", left, err)
	}
}

// countingAcks ends the run once want notifications were acknowledged.
type countingAcks struct {
	recovery.Store
	want, acked int
	done        func()
}

func (c *countingAcks) AckOutbox(ctx context.Context, seqs ...uint64) error {
	if err := c.Store.AckOutbox(ctx, seqs...); err != nil {
		return err
	}
	if c.acked += len(seqs); c.acked >= c.want {
		c.done()
	}
	return nil
}

// recordingNotifier reads each plan's audit and saves a delivery record, as
// bot.SlackNotifier does around its Slack call.
type recordingNotifier struct {
	store     recovery.Store
	delivered atomic.Int64 // the courier delivers several plans at once
}

func (r *recordingNotifier) Notify(ctx context.Context, n recovery.Notification, _ *recovery.Execution) error {
	if _, err := r.store.Audit(ctx, n.ExecutionID); err != nil {
		return err
	}
	rec, _ := json.Marshal(map[string]uint64{"seq": n.Seq})
	if err := r.store.PutSetting(ctx, fmt.Sprintf("bench:msg:%s", n.ExecutionID), rec); err != nil {
		return err
	}
	r.delivered.Add(1)
	return nil
}
