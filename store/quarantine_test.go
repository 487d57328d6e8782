package store_test

import (
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
	bolt "go.etcd.io/bbolt"
)

// deepJSON is valid JSON nested deeper than encoding/json reads back (10,000):
// what a 10,000-deep event's data becomes once wrapped in an execution.
func deepJSON() []byte {
	const n = 10_050
	return []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
}

// poke closes db, writes to its file with bbolt directly, and reopens it.
func poke(t *testing.T, db *store.DB, fn func(tx *bolt.Tx) error) *store.DB {
	t.Helper()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := bolt.Open(db.Path(), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	db2, err := store.Open(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db2.Close() })
	return db2
}

func seq(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// A record that cannot be decoded, in any bucket, never fails a read: every
// scan returns the good records, the bad one is moved to the quarantine with
// its key, and later reads do not meet it again (issue #12 item 1: on main
// each of these reads failed, for good).
func TestUndecodableRecordsAreSetAside(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	// An undecodable outbox message before the good ones would block them.
	db = poke(t, db, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("outbox"))
		if err := b.Put(seq(1), deepJSON()); err != nil {
			return err
		}
		return b.SetSequence(1)
	})
	good := execution("01GOOD", recovery.PendingApproval, t0)
	a := accepted("ev-good", good)
	a.Dedup = &recovery.DedupEntry{Key: "prod/good", PlanID: good.ID}
	mustAccept(t, db, a)
	mustAccept(t, db, accepted("ev-rated", execution("01RATED", recovery.Approved, t0)))
	mustMove(t, db, recovery.Transition{ID: "01RATED", From: []recovery.State{recovery.Approved}, To: recovery.Executing,
		At: t0, Rate: &recovery.RateStamp{Runbook: "rb"}})

	garbage := []byte("\x00not json at all")
	db = poke(t, db, func(tx *bolt.Tx) error {
		put := func(bucket string, k, v []byte) {
			if err := tx.Bucket([]byte(bucket)).Put(k, v); err != nil {
				t.Fatal(err)
			}
		}
		// An open execution whose plan is nested too deep, indexed with its audit.
		put("executions", []byte("01DEEP"), deepJSON())
		put("open", []byte("01DEEP"), nil)
		put("executions", []byte("00GARBAGE"), garbage)
		put("audit", seq(1000), deepJSON())
		put("auditidx", append([]byte("01DEEP"), seq(1000)...), nil)
		put("audit", seq(1001), garbage)
		put("events", []byte("ev-deep"), deepJSON())
		put("rate", []byte("rb\x00zzzzzzzz"), garbage)
		put("dedup", []byte("prod/deep"), deepJSON())
		return nil
	})

	check := func(round string) {
		t.Helper()
		xs, err := db.Executions(ctx, recovery.ExecutionFilter{})
		if err != nil || !reflect.DeepEqual(ids(xs), []string{"01RATED", "01GOOD"}) {
			t.Errorf("%s: Executions = %v, %v; want [01RATED 01GOOD], nil", round, ids(xs), err)
		}
		if got := openIDs(t, db); !reflect.DeepEqual(got, []string{"01GOOD", "01RATED"}) {
			t.Errorf("%s: Open = %v, want [01GOOD 01RATED]", round, got)
		}
		if _, err := db.Execution(ctx, "01DEEP"); !errors.Is(err, recovery.ErrNotFound) {
			t.Errorf("%s: Execution(01DEEP) = %v, want ErrNotFound", round, err)
		}
		if _, err := db.EventRecord(ctx, "ev-deep"); !errors.Is(err, recovery.ErrNotFound) {
			t.Errorf("%s: EventRecord(ev-deep) = %v, want ErrNotFound", round, err)
		}
		if recs, err := db.AuditSince(ctx, time.Time{}); err != nil || len(recs) != 3 {
			t.Errorf("%s: AuditSince = %d records, %v; want 3, nil", round, len(recs), err)
		}
		if recs, err := db.Audit(ctx, "01DEEP"); err != nil || len(recs) != 0 {
			t.Errorf("%s: Audit(01DEEP) = %d records, %v; want 0, nil", round, len(recs), err)
		}
		if ns, err := db.Outbox(ctx, 0, 10); err != nil || len(ns) != 2 || ns[0].Kind != "plan" {
			t.Errorf("%s: Outbox = %+v, %v; want the 2 good messages", round, ns, err)
		}
		if rs, err := db.RateStamps(ctx, time.Time{}); err != nil || len(rs) != 1 || rs[0].ExecutionID != "01RATED" {
			t.Errorf("%s: RateStamps = %+v, %v; want 01RATED's", round, rs, err)
		}
		if ds, err := db.DedupEntries(ctx); err != nil || len(ds) != 1 || ds[0].Key != "prod/good" {
			t.Errorf("%s: DedupEntries = %+v, %v; want prod/good", round, ds, err)
		}
	}
	check("first read")

	q, err := db.Quarantine(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range q {
		if r.Err == "" || r.Size == 0 || r.At.IsZero() {
			t.Errorf("quarantined %s/%s = %+v, want its error, size and time", r.Bucket, r.Key, r)
		}
		got = append(got, r.Bucket+"/"+r.Key)
	}
	sort.Strings(got)
	want := []string{"audit/1000", "audit/1001", "dedup/prod/deep", "events/ev-deep",
		"executions/00GARBAGE", "executions/01DEEP", "outbox/1", `rate/rb\x00zzzzzzzz`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("quarantine = %q\nwant %q", got, want)
	}

	// Durable, and set aside once: after a restart the reads are as clean
	// and the quarantine is unchanged.
	db = reopen(t, db)
	check("after reopen")
	if n, _, err := db.Counts(ctx); err != nil || n != len(want) {
		t.Errorf("Counts = %d, %v; want %d quarantined", n, err, len(want))
	}
}

// A transition of an execution that cannot be decoded is ErrNotFound, writes
// nothing, and sets the record aside like a read would.
func TestTransitionOfUndecodableExecution(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	db = poke(t, db, func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte("executions")).Put([]byte("01DEEP"), deepJSON()); err != nil {
			return err
		}
		return tx.Bucket([]byte("open")).Put([]byte("01DEEP"), nil)
	})
	_, err := db.Transition(ctx, approve("01DEEP"))
	if !errors.Is(err, recovery.ErrNotFound) {
		t.Fatalf("Transition = %v, want ErrNotFound", err)
	}
	if q, err := db.Quarantine(ctx); err != nil || len(q) != 1 || q[0].Key != "01DEEP" {
		t.Errorf("Quarantine = %+v, %v; want 01DEEP", q, err)
	}
	if n := auditLen(t, db); n != 0 {
		t.Errorf("%d audit records, want none", n)
	}
}
