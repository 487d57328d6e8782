package recovery_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
	"github.com/recoverbot/recoverbot/store/storetest"
)

// TestCourierAcksAPageInOneWrite: the courier takes the notifications it
// delivered out of the outbox in one write per page, in order, and on a
// failure acknowledges those before the failed one, which stays at the head
// of the outbox and is delivered again; nothing is delivered twice.
func TestCourierAcksAPageInOneWrite(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	const total = 7
	for n := range uint64(total) {
		if err := db.Accept(ctx, storetest.Intake(n+1)); err != nil {
			t.Fatal(err)
		}
	}
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	acks := &ackLog{Store: db, want: total, done: stop}
	note := &flakyNotifier{failOn: 4}
	(&recovery.Courier{Store: acks, Notifier: note}).Run(cctx)

	if want := []uint64{1, 2, 3, 4, 5, 6, 7}; !slices.Equal(note.delivered, want) {
		t.Errorf("delivered %v, want %v (in order, each once)", note.delivered, want)
	}
	// The failure on seq 4 acknowledged 1-3; the retry's page, 4-7.
	if want := [][]uint64{{1, 2, 3}, {4, 5, 6, 7}}; !slices.EqualFunc(acks.writes, want, slices.Equal) {
		t.Errorf("acknowledgements %v, want %v", acks.writes, want)
	}
	if left, err := db.Outbox(ctx, 0, 10); err != nil || len(left) != 0 {
		t.Errorf("outbox after delivery: %v, %v; want it empty", left, err)
	}
}

// ackLog records each AckOutbox call's seqs, and ends the courier's run once
// want notifications were acknowledged.
type ackLog struct {
	recovery.Store
	writes [][]uint64
	acked  int
	want   int
	done   func()
}

func (a *ackLog) AckOutbox(ctx context.Context, seqs ...uint64) error {
	if err := a.Store.AckOutbox(ctx, seqs...); err != nil {
		return err
	}
	a.writes = append(a.writes, seqs)
	if a.acked += len(seqs); a.acked >= a.want {
		a.done()
	}
	return nil
}

// flakyNotifier fails the first delivery of seq failOn.
type flakyNotifier struct {
	failOn    uint64
	failed    bool
	delivered []uint64
}

func (f *flakyNotifier) Notify(_ context.Context, n recovery.Notification, _ *recovery.Execution) error {
	if n.Seq == f.failOn && !f.failed {
		f.failed = true
		return errors.New("slack said no")
	}
	f.delivered = append(f.delivered, n.Seq)
	return nil
}
