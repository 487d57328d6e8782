package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
	bolt "go.etcd.io/bbolt"
)

// Months of steady load with retention: finished executions, their audit and
// events, plan-less events and orphan audit records older than the kept
// period are deleted, and bbolt reuses their pages, so the file stops growing
// once the kept period is full (issue #12 item 7: on main nothing was ever
// deleted). Open executions are kept however old. Time is the store's clock
// (a ManualClock), space is bbolt's high-water mark of pages.
func TestRetentionFileStopsGrowing(t *testing.T) {
	ctx := context.Background()
	clock := recovery.NewManualClock(t0)
	path := filepath.Join(t.TempDir(), "r.db")
	db, err := store.Open(path, store.WithClock(clock.Now), store.WithoutFsync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	const (
		days    = 60
		perDay  = 8
		keep    = 7 * 24 * time.Hour
		payload = 16 << 10
	)
	settingsOf := []string{"slack:ts:"}
	blob := strings.Repeat("x", payload)
	// One plan that stays open for the whole run: never deleted.
	mustAccept(t, db, accepted("ev-open", execution("000-open", recovery.PendingApproval, t0)))

	var highAt [days + 1]int64
	for day := 1; day <= days; day++ {
		now := clock.Now()
		for i := range perDay {
			id := fmt.Sprintf("%03d-%02d", day, i)
			x := execution(id, recovery.PendingApproval, now)
			x.Event.Data = map[string]any{"dump": blob}
			a := accepted("ev-"+id, x)
			a.Event.Event.Data = x.Event.Data
			mustAccept(t, db, a)
			mustMove(t, db, recovery.Transition{ID: id, From: []recovery.State{recovery.PendingApproval},
				To: recovery.Rejected, At: now.Add(time.Minute), Actor: "U1", Reason: "no",
				Outbox: []recovery.Notification{{Kind: "state", Text: "rejected"}}})
			if err := db.PutSetting(ctx, "slack:ts:"+id, []byte(`{"ts":"1.2"}`)); err != nil {
				t.Fatal(err)
			}
		}
		// An event that made no plan, and an audit record of no execution.
		mustAccept(t, db, recovery.Accepted{Event: recovery.EventRecord{
			Event:      recovery.Event{ID: fmt.Sprintf("ev-none-%03d", day), Data: map[string]any{"dump": blob}},
			ReceivedAt: now, Decision: recovery.DecideNoRunbook}})
		if err := db.Record(ctx, []recovery.AuditRecord{{At: now, Actor: "U1", Reason: "paused " + blob[:1024]}}, nil); err != nil {
			t.Fatal(err)
		}
		page, err := db.Outbox(ctx, 0, store.MaxOutboxLimit)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range page {
			if err := db.AckOutbox(ctx, n.Seq); err != nil {
				t.Fatal(err)
			}
		}
		clock.Advance(24 * time.Hour)
		if _, err := db.Sweep(ctx, clock.Now().Add(-keep), settingsOf); err != nil {
			t.Fatal(err)
		}
		highAt[day] = db.HighWater()
	}

	// Steady state: the kept period filled at day 8; from day 20 on the
	// pages in use must not grow (what is freed each day is reused).
	steady, end := highAt[20], highAt[days]
	t.Logf("high-water: day 10 %d KiB, day 20 %d KiB, day %d %d KiB; written %d KiB",
		highAt[10]>>10, steady>>10, days, end>>10, int64(days*perDay*4*payload)>>10)
	if end > steady+steady/10 {
		t.Errorf("high-water grew from %d KiB at day 20 to %d KiB at day %d: retention does not free space", steady>>10, end>>10, days)
	}

	xs, err := db.Executions(ctx, recovery.ExecutionFilter{Limit: store.MaxExecutionLimit})
	if err != nil {
		t.Fatal(err)
	}
	if want := 7*perDay + 1; len(xs) != want {
		t.Errorf("%d executions kept, want %d (7 days and the open one)", len(xs), want)
	}
	if _, err := db.Execution(ctx, "000-open"); err != nil {
		t.Errorf("the open execution from day 0: %v, want it kept", err)
	}
	old := "001-00"
	if _, err := db.Execution(ctx, old); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("Execution(%s) = %v, want ErrNotFound", old, err)
	}
	if _, err := db.EventRecord(ctx, "ev-"+old); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("EventRecord(ev-%s) = %v, want ErrNotFound", old, err)
	}
	if _, err := db.EventRecord(ctx, "ev-none-001"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("plan-less EventRecord(ev-none-001) = %v, want ErrNotFound", err)
	}
	if _, err := db.Setting(ctx, "slack:ts:"+old); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("Setting(slack:ts:%s) = %v, want ErrNotFound", old, err)
	}
	if recs, err := db.Audit(ctx, old); err != nil || len(recs) != 0 {
		t.Errorf("Audit(%s) = %d records, %v; want none", old, len(recs), err)
	}
	recs, err := db.AuditSince(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// Per kept day: 2 per execution and the orphan; the open one's record.
	if want := 7*(2*perDay+1) + 1; len(recs) != want {
		t.Errorf("%d audit records kept, want %d", len(recs), want)
	}
}

// Retention 0 keeps everything: Retain returns at once and deletes nothing.
// A Retain that swept anyway would delete the execution (finished, older than
// now) and run on; the bound below makes that a failure, not a hang.
func TestRetainZeroKeepsEverything(t *testing.T) {
	db, _ := openDB(t)
	mustAccept(t, db, accepted("ev-1", execution("01A", recovery.Rejected, t0)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); db.Retain(ctx, store.Retention{Keep: 0}) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("Retain with Keep 0 still runs after 10s, want it to return at once")
		cancel()
		<-done
	}
	if _, err := db.Execution(context.Background(), "01A"); err != nil {
		t.Errorf("Execution after Retain with Keep 0: %v, want kept", err)
	}
}

// AuditPage reads the trail page by page, resuming after the last Seq: the
// pages together are exactly AuditSince, for any page size.
func TestAuditPagesMatchAuditSince(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	for i := range 7 {
		at := t0.Add(time.Duration(i) * time.Hour)
		if err := db.Record(ctx, []recovery.AuditRecord{{At: at, Actor: "U1", Reason: fmt.Sprint(i)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	since := t0.Add(2 * time.Hour)
	want, err := db.AuditSince(ctx, since)
	if err != nil || len(want) != 5 {
		t.Fatalf("AuditSince = %d, %v; want 5", len(want), err)
	}
	for _, size := range []int{1, 2, 5, 100} {
		var got []recovery.AuditRecord
		after := uint64(0)
		for {
			page, err := db.AuditPage(ctx, since, after, size)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > size {
				t.Fatalf("page of %d records, want at most %d", len(page), size)
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1].Seq
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("pages of %d = %v\nwant %v", size, got, want)
		}
	}
}

// Finished executions whose parts retention does not read no longer decode in
// full (here their actions are not a list): more of them than a batch are
// still deleted, and Sweep returns (the #12 review: the write transaction
// decoded them in full, deleted none of them, and every round found the same
// 256 again, forever).
func TestSweepEndsOnRecordsItCannotDecodeInFull(t *testing.T) {
	db, path := openDB(t)
	// A recent event, kept: the event scan has somewhere to resume from.
	recent := accepted("ev-recent", nil)
	recent.Event.ReceivedAt = t0.Add(48 * time.Hour)
	recent.Audit[0].At = recent.Event.ReceivedAt
	mustAccept(t, db, recent)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	const n = store.SweepBatch + 44
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := t0.Format(time.RFC3339Nano)
	err = b.Update(func(tx *bolt.Tx) error {
		for i := range n {
			v := fmt.Sprintf(`{"id":"01X%04d","state":"SUCCEEDED","created_at":%q,"updated_at":%q,"actions":"not a list"}`, i, at, at)
			if err := tx.Bucket([]byte("executions")).Put(fmt.Appendf(nil, "01X%04d", i), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := b.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	db, err = store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	// A deadline only so that a regression fails instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := db.Sweep(ctx, t0.Add(24*time.Hour), nil)
	if err != nil || got != n {
		t.Fatalf("Sweep = %d, %v; want all %d deleted", got, err, n)
	}
	if _, err := db.Execution(context.Background(), "01X0000"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("Execution 01X0000 after the sweep: %v, want ErrNotFound", err)
	}
}
