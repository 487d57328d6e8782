package store_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

// openDB opens a store in a fresh temp dir (in a directory Open must create).
func openDB(t testing.TB) (*store.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", "recoverbot.db")
	db, err := store.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

// reopen closes db cleanly (Close drains the writer and bbolt syncs) and opens
// its file again: what a clean shutdown and restart keeps. It proves nothing
// about a crash: test/long's kill -9 loop does, and test/durability checks
// against the system calls that an answered write was fsynced first.
func reopen(t testing.TB, db *store.DB) *store.DB {
	t.Helper()
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	db2, err := store.Open(db.Path())
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { db2.Close() })
	return db2
}

func execution(id string, state recovery.State, created time.Time) *recovery.Execution {
	return &recovery.Execution{
		Plan: recovery.Plan{
			ID:      id,
			EventID: "ev-" + id,
			Event: recovery.Event{ID: "ev-" + id, Type: "LATENCY_ANOMALY", Severity: "WARNING",
				Confidence: 0.9, Data: map[string]any{"cause": "DATABASE", "p99": 1.5}},
			Runbook:   "scale-database-connections",
			Decision:  recovery.DecideApproval,
			Reasons:   []string{"requires approval"},
			TargetKey: "prod/api-gateway",
		},
		State:     state,
		Version:   1,
		CreatedAt: created,
		UpdatedAt: created,
	}
}

// accepted is a typical intake decision: a new plan, one audit record, one
// outbox message.
func accepted(eventID string, x *recovery.Execution) recovery.Accepted {
	at := t0
	if x != nil {
		at = x.CreatedAt
	}
	return recovery.Accepted{
		Event: recovery.EventRecord{
			Event:      recovery.Event{ID: eventID, Type: "LATENCY_ANOMALY", Severity: "WARNING", Confidence: 0.9},
			ReceivedAt: at,
			Decision:   recovery.DecideApproval,
			PlanID:     planID(x),
		},
		Execution: x,
		Audit:     []recovery.AuditRecord{{At: at, Actor: "recoverbot", To: recovery.PendingApproval, Reason: "needs approval"}},
		Outbox:    []recovery.Notification{{At: at, Kind: "plan", Text: "plan " + planID(x)}},
	}
}

func planID(x *recovery.Execution) string {
	if x == nil {
		return ""
	}
	return x.ID
}

func mustAccept(t testing.TB, db *store.DB, a recovery.Accepted) {
	t.Helper()
	if err := db.Accept(context.Background(), a); err != nil {
		t.Fatalf("Accept %s: %v", a.Event.Event.ID, err)
	}
}

func approve(id string) recovery.Transition {
	return recovery.Transition{ID: id, From: []recovery.State{recovery.PendingApproval}, To: recovery.Approved,
		At: t0.Add(time.Minute), Actor: "U123", Reason: "approved in Slack"}
}

func mustMove(t testing.TB, db *store.DB, tr recovery.Transition) recovery.Execution {
	t.Helper()
	x, err := db.Transition(context.Background(), tr)
	if err != nil {
		t.Fatalf("Transition %s → %s: %v", tr.ID, tr.To, err)
	}
	return x
}

func outboxLen(t testing.TB, db *store.DB) int {
	t.Helper()
	n, err := db.Outbox(context.Background(), 0, store.MaxOutboxLimit)
	if err != nil {
		t.Fatalf("Outbox: %v", err)
	}
	return len(n)
}

func auditLen(t testing.TB, db *store.DB) int {
	t.Helper()
	a, err := db.AuditSince(context.Background(), time.Time{})
	if err != nil {
		t.Fatalf("AuditSince: %v", err)
	}
	return len(a)
}

// TestAcceptSurvivesCleanReopen: everything a commit wrote is read back the
// same after a clean Close and Open (the encoding round-trips, the indexes are
// rebuilt); not a crash test (see reopen).
func TestAcceptSurvivesCleanReopen(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	x := execution("01A", recovery.PendingApproval, t0)
	a := accepted("ev-1", x)
	a.Dedup = &recovery.DedupEntry{Key: "prod/api-gateway", PlanID: "01A"}
	a.Event.Reasons = []string{"confidence 0.90 below auto threshold"}
	mustAccept(t, db, a)
	mustMove(t, db, recovery.Transition{ID: "01A", From: []recovery.State{recovery.PendingApproval},
		To: recovery.Approved, At: t0.Add(time.Minute), Actor: "U1", Reason: "ok"})
	mustMove(t, db, recovery.Transition{ID: "01A", From: []recovery.State{recovery.Approved},
		To: recovery.Executing, At: t0.Add(2 * time.Minute), Actor: "recoverbot", Reason: "start",
		Rate: &recovery.RateStamp{}})
	if err := db.PutSetting(ctx, "paused", []byte("true")); err != nil {
		t.Fatal(err)
	}

	db = reopen(t, db)

	rec, err := db.EventRecord(ctx, "ev-1")
	if err != nil {
		t.Fatalf("EventRecord: %v", err)
	}
	if !reflect.DeepEqual(rec, a.Event) {
		t.Errorf("event record: got %+v, want %+v", rec, a.Event)
	}
	got, err := db.Execution(ctx, "01A")
	if err != nil {
		t.Fatalf("Execution: %v", err)
	}
	want := *x
	want.State, want.Version, want.UpdatedAt = recovery.Executing, 3, t0.Add(2*time.Minute)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("execution: got %+v, want %+v", got, want)
	}
	audit, err := db.Audit(ctx, "01A")
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != 3 {
		t.Fatalf("audit: got %d records, want 3", len(audit))
	}
	first := audit[0]
	if first.Seq != 1 || first.ExecutionID != "01A" || first.EventID != "ev-1" || first.Reason != "needs approval" || !first.At.Equal(t0) {
		t.Errorf("accept audit: got %+v, want seq 1 defaulted to execution 01A, event ev-1", first)
	}
	for i, wantTo := range []recovery.State{recovery.PendingApproval, recovery.Approved, recovery.Executing} {
		if audit[i].To != wantTo || audit[i].Seq != uint64(i+1) {
			t.Errorf("audit[%d]: got seq %d to %s, want seq %d to %s", i, audit[i].Seq, audit[i].To, i+1, wantTo)
		}
	}
	out, err := db.Outbox(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Seq != 1 || out[0].ExecutionID != "01A" || out[0].Text != "plan 01A" {
		t.Errorf("outbox: got %+v, want one plan message for 01A with seq 1", out)
	}
	dedup, err := db.DedupEntries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []recovery.DedupEntry{*a.Dedup}; !reflect.DeepEqual(dedup, want) {
		t.Errorf("dedup: got %+v, want %+v", dedup, want)
	}
	stamps, err := db.RateStamps(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	wantStamps := []recovery.RateStamp{{Runbook: "scale-database-connections", At: t0.Add(2 * time.Minute), ExecutionID: "01A"}}
	if !reflect.DeepEqual(stamps, wantStamps) {
		t.Errorf("rate stamps (defaults from the transition): got %+v, want %+v", stamps, wantStamps)
	}
	if v, err := db.Setting(ctx, "paused"); err != nil || string(v) != "true" {
		t.Errorf("setting paused: got %q, %v; want true", v, err)
	}
	open, err := db.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 || open[0].ID != "01A" {
		t.Errorf("open: got %v, want [01A]", ids(open))
	}
}

func TestAcceptDuplicate(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	mustAccept(t, db, accepted("ev-1", execution("01A", recovery.PendingApproval, t0)))
	outbox, audit := outboxLen(t, db), auditLen(t, db)

	t.Run("same event id writes nothing", func(t *testing.T) {
		a := accepted("ev-1", execution("01B", recovery.PendingApproval, t0))
		a.Dedup = &recovery.DedupEntry{Key: "other", PlanID: "01B"}
		a.RepeatOf = "01A"
		err := db.Accept(ctx, a)
		if !errors.Is(err, recovery.ErrDuplicate) {
			t.Fatalf("got %v, want ErrDuplicate", err)
		}
		if _, err := db.Execution(ctx, "01B"); !errors.Is(err, recovery.ErrNotFound) {
			t.Errorf("execution of the duplicate: got %v, want ErrNotFound", err)
		}
		if got := outboxLen(t, db); got != outbox {
			t.Errorf("outbox: got %d, want %d", got, outbox)
		}
		if got := auditLen(t, db); got != audit {
			t.Errorf("audit: got %d, want %d", got, audit)
		}
		if d, _ := db.DedupEntries(ctx); len(d) != 0 {
			t.Errorf("dedup: got %+v, want none", d)
		}
		if x, _ := db.Execution(ctx, "01A"); x.Repeats != 0 {
			t.Errorf("repeats of 01A: got %d, want 0", x.Repeats)
		}
	})
	t.Run("existing execution id is a duplicate", func(t *testing.T) {
		err := db.Accept(ctx, accepted("ev-2", execution("01A", recovery.Approved, t0)))
		if !errors.Is(err, recovery.ErrDuplicate) {
			t.Fatalf("got %v, want ErrDuplicate", err)
		}
		if _, err := db.EventRecord(ctx, "ev-2"); !errors.Is(err, recovery.ErrNotFound) {
			t.Errorf("event ev-2: got %v, want ErrNotFound", err)
		}
		if x, _ := db.Execution(ctx, "01A"); x.State != recovery.PendingApproval {
			t.Errorf("01A: got %s, want it untouched in PENDING_APPROVAL", x.State)
		}
	})
	t.Run("concurrent same id: one wins", func(t *testing.T) {
		const n = 16
		errs := make(chan error, n)
		start := make(chan struct{})
		for i := range n {
			go func() {
				<-start
				errs <- db.Accept(ctx, accepted("ev-race", execution(fmt.Sprintf("01R%02d", i), recovery.PendingApproval, t0)))
			}()
		}
		close(start)
		won := 0
		for range n {
			switch err := <-errs; {
			case err == nil:
				won++
			case !errors.Is(err, recovery.ErrDuplicate):
				t.Errorf("got %v, want nil or ErrDuplicate", err)
			}
		}
		if won != 1 {
			t.Errorf("winners: got %d, want 1", won)
		}
		xs, _ := db.Executions(ctx, recovery.ExecutionFilter{})
		if len(xs) != 2 {
			t.Errorf("executions: got %v, want 01A and one 01R..", ids(xs))
		}
	})
	t.Run("no event id is refused", func(t *testing.T) {
		if err := db.Accept(ctx, accepted("", nil)); err == nil {
			t.Fatal("got nil, want an error")
		}
	})
}

func TestAcceptWithoutExecution(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	a := accepted("ev-none", nil)
	a.Event.Decision = recovery.DecideNoRunbook
	a.Audit[0] = recovery.AuditRecord{Actor: "recoverbot", Reason: "no runbook matched"}
	a.Outbox[0].At = time.Time{}
	mustAccept(t, db, a)
	db = reopen(t, db)

	all, err := db.AuditSince(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := []recovery.AuditRecord{{Seq: 1, At: t0, EventID: "ev-none", Actor: "recoverbot", Reason: "no runbook matched"}}
	if !reflect.DeepEqual(all, want) {
		t.Errorf("audit: got %+v, want %+v (event id and At defaulted)", all, want)
	}
	if got, _ := db.Audit(ctx, ""); len(got) != 0 {
		t.Errorf("Audit(\"\"): got %+v, want none indexed without an execution", got)
	}
	out, _ := db.Outbox(ctx, 0, 0)
	if len(out) != 1 || out[0].ExecutionID != "" || !out[0].At.Equal(t0) {
		t.Errorf("outbox: got %+v, want one message without execution, At = received", out)
	}
}

func TestAcceptRepeatOf(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	mustAccept(t, db, accepted("ev-1", execution("01A", recovery.PendingApproval, t0)))
	before := auditLen(t, db)
	for i := range 2 {
		a := accepted(fmt.Sprintf("ev-dup-%d", i), nil)
		a.Event.Decision, a.Event.DuplicateOf = recovery.DecideDuplicate, "01A"
		a.RepeatOf = "01A"
		mustAccept(t, db, a)
	}
	a := accepted("ev-dup-early", nil)
	a.RepeatOf = "01ZZ"
	mustAccept(t, db, a) // a duplicate that commits before its plan still counts

	db = reopen(t, db)
	x, err := db.Execution(ctx, "01A")
	if err != nil {
		t.Fatal(err)
	}
	if x.Repeats != 2 || x.Version != 1 {
		t.Errorf("01A: got repeats %d version %d, want 2 and 1 (no version bump)", x.Repeats, x.Version)
	}
	if _, err := db.Execution(ctx, "01ZZ"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("01ZZ: got %v, want ErrNotFound (not created by RepeatOf)", err)
	}
	mustAccept(t, db, accepted("ev-late-plan", execution("01ZZ", recovery.PendingApproval, t0)))
	if x, err := db.Execution(ctx, "01ZZ"); err != nil || x.Repeats != 1 {
		t.Errorf("01ZZ after its plan committed: repeats %d (%v), want the early duplicate counted", x.Repeats, err)
	}
	audit, _ := db.Audit(ctx, "01A")
	if len(audit) != 1 {
		t.Errorf("01A audit: got %d records, want 1 (repeats are not audited against it)", len(audit))
	}
	if got := auditLen(t, db); got != before+4 {
		t.Errorf("all audit: got %d, want %d (the duplicates' own records and 01ZZ's)", got, before+4)
	}
}

func TestTransitionCAS(t *testing.T) {
	for _, n := range []int{2, 4, 8, 16} {
		t.Run(fmt.Sprintf("%d racers one wins", n), func(t *testing.T) {
			ctx := context.Background()
			db, _ := openDB(t)
			mustAccept(t, db, accepted("ev-1", execution("01A", recovery.PendingApproval, t0)))
			start := make(chan struct{})
			type result struct {
				x   recovery.Execution
				err error
			}
			results := make(chan result, n)
			for i := range n {
				go func() {
					<-start
					tr := approve("01A")
					tr.Actor = fmt.Sprintf("U%d", i)
					tr.Outbox = []recovery.Notification{{Kind: "state", Text: "approved"}}
					x, err := db.Transition(ctx, tr)
					results <- result{x, err}
				}()
			}
			close(start)
			var winner recovery.Execution
			won := 0
			for range n {
				r := <-results
				var me *recovery.MoveError
				switch {
				case r.err == nil:
					won++
					winner = r.x
				case errors.As(r.err, &me):
					want := recovery.MoveError{ID: "01A", From: recovery.PendingApproval, To: recovery.Approved, Actual: recovery.Approved}
					if *me != want {
						t.Errorf("MoveError: got %+v, want %+v", *me, want)
					}
				default:
					t.Errorf("got %v, want nil or *MoveError", r.err)
				}
			}
			if won != 1 {
				t.Fatalf("winners: got %d, want 1", won)
			}
			if winner.State != recovery.Approved || winner.Version != 2 {
				t.Errorf("winner: got %s v%d, want APPROVED v2", winner.State, winner.Version)
			}
			db = reopen(t, db)
			audit, _ := db.Audit(ctx, "01A")
			approved := 0
			for _, r := range audit {
				if r.To == recovery.Approved {
					approved++
					if r.Plan == nil || r.Plan.State != recovery.Approved || r.Plan.Version != 2 {
						t.Errorf("audit snapshot: got %+v, want the APPROVED v2 execution", r.Plan)
					}
				}
			}
			if approved != 1 {
				t.Errorf("APPROVED audit records: got %d, want 1", approved)
			}
			if got := outboxLen(t, db); got != 2 {
				t.Errorf("outbox: got %d, want 2 (plan + one approval)", got)
			}
		})
	}
}

func TestTransitionRefused(t *testing.T) {
	errMutate := errors.New("step record too large")
	tests := []struct {
		name  string
		state recovery.State
		tr    recovery.Transition
		check func(t *testing.T, err error)
	}{
		{
			name:  "missing execution is not found",
			state: recovery.PendingApproval,
			tr:    recovery.Transition{ID: "01NOPE", From: []recovery.State{recovery.PendingApproval}, To: recovery.Approved},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, recovery.ErrNotFound) {
					t.Errorf("got %v, want ErrNotFound", err)
				}
			},
		},
		{
			name:  "wrong current state is a MoveError",
			state: recovery.Rejected,
			tr:    recovery.Transition{ID: "01A", From: []recovery.State{recovery.PendingApproval, recovery.Approved}, To: recovery.Expired},
			check: func(t *testing.T, err error) {
				var me *recovery.MoveError
				if !errors.As(err, &me) {
					t.Fatalf("got %v, want *MoveError", err)
				}
				want := recovery.MoveError{ID: "01A", From: recovery.PendingApproval, To: recovery.Expired, Actual: recovery.Rejected}
				if *me != want {
					t.Errorf("got %+v, want %+v", *me, want)
				}
			},
		},
		{
			name:  "disallowed move is refused",
			state: recovery.Rejected,
			tr:    recovery.Transition{ID: "01A", From: []recovery.State{recovery.Rejected}, To: recovery.Approved},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, store.ErrNotAllowed) || !strings.Contains(err.Error(), "REJECTED → APPROVED") {
					t.Errorf("got %v, want ErrNotAllowed naming REJECTED → APPROVED", err)
				}
			},
		},
		{
			name:  "mutate error aborts",
			state: recovery.PendingApproval,
			tr: recovery.Transition{ID: "01A", From: []recovery.State{recovery.PendingApproval}, To: recovery.Approved,
				Mutate: func(x *recovery.Execution) error { x.ApprovedBy = "U1"; return errMutate }},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, errMutate) {
					t.Errorf("got %v, want the Mutate error", err)
				}
			},
		},
		{
			name:  "mutate panic aborts",
			state: recovery.PendingApproval,
			tr: recovery.Transition{ID: "01A", From: []recovery.State{recovery.PendingApproval}, To: recovery.Approved,
				Mutate: func(x *recovery.Execution) error { panic("boom") }},
			check: func(t *testing.T, err error) {
				if err == nil || !strings.Contains(err.Error(), "boom") {
					t.Errorf("got %v, want the panic as an error", err)
				}
			},
		},
		{
			name:  "no From is refused",
			state: recovery.PendingApproval,
			tr:    recovery.Transition{ID: "01A", To: recovery.Approved},
			check: func(t *testing.T, err error) {
				if err == nil {
					t.Error("got nil, want an error")
				}
			},
		},
		{
			name:  "unknown To is refused",
			state: recovery.PendingApproval,
			tr:    recovery.Transition{ID: "01A", From: []recovery.State{recovery.PendingApproval}, To: "DONE"},
			check: func(t *testing.T, err error) {
				if err == nil {
					t.Error("got nil, want an error")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			db, _ := openDB(t)
			mustAccept(t, db, accepted("ev-1", execution("01A", tt.state, t0)))
			tr := tt.tr
			tr.At = t0.Add(time.Hour)
			tr.Outbox = []recovery.Notification{{Kind: "state", Text: "moved"}}
			tr.Rate = &recovery.RateStamp{}
			tr.Dedup = &recovery.DedupEntry{Key: "k", PlanID: "01A", Until: t0.Add(2 * time.Hour)}
			x, err := db.Transition(ctx, tr)
			tt.check(t, err)
			if x.ID != "" {
				t.Errorf("returned execution: got %+v, want zero on error", x)
			}
			db = reopen(t, db)
			got, _ := db.Execution(ctx, "01A")
			if got.State != tt.state || got.Version != 1 || got.ApprovedBy != "" {
				t.Errorf("execution: got %s v%d by %q, want untouched %s v1", got.State, got.Version, got.ApprovedBy, tt.state)
			}
			if n := auditLen(t, db); n != 1 {
				t.Errorf("audit: got %d, want 1", n)
			}
			if n := outboxLen(t, db); n != 1 {
				t.Errorf("outbox: got %d, want 1", n)
			}
			if s, _ := db.RateStamps(ctx, time.Time{}); len(s) != 0 {
				t.Errorf("rate stamps: got %+v, want none", s)
			}
			if d, _ := db.DedupEntries(ctx); len(d) != 0 {
				t.Errorf("dedup: got %+v, want none", d)
			}
		})
	}
}

func TestTransitionWrites(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	a := accepted("ev-1", execution("01A", recovery.PendingApproval, t0))
	a.Dedup = &recovery.DedupEntry{Key: "prod/api-gateway", PlanID: "01A"}
	mustAccept(t, db, a)
	at := t0.Add(time.Minute)
	x := mustMove(t, db, recovery.Transition{
		ID: "01A", From: []recovery.State{recovery.Expired, recovery.PendingApproval}, To: recovery.Approved,
		At: at, Actor: "U42", Reason: "approved by <@U42>",
		Mutate: func(x *recovery.Execution) error {
			x.ApprovedBy = "U42"
			x.ID, x.State, x.Version = "hijack", recovery.Failed, 99 // the store owns these
			return nil
		},
		Outbox: []recovery.Notification{{Kind: "state", Text: "✅ approved", State: recovery.Approved}},
	})
	want := *a.Execution
	// Mutate's edits are kept except id, state and version, which are the store's.
	want.State, want.Version, want.UpdatedAt, want.ApprovedBy = recovery.Approved, 2, at, "U42"
	if !reflect.DeepEqual(x, want) {
		t.Errorf("returned: got %+v, want %+v", x, want)
	}

	mustMove(t, db, recovery.Transition{ID: "01A", From: []recovery.State{recovery.Approved}, To: recovery.Executing,
		At: at, Actor: "recoverbot", Reason: "closing", Dedup: &recovery.DedupEntry{Key: "prod/api-gateway", PlanID: "01A", Until: at.Add(time.Hour)}})
	db = reopen(t, db)

	audit, _ := db.Audit(ctx, "01A")
	if len(audit) != 3 {
		t.Fatalf("audit: got %d records, want 3", len(audit))
	}
	r := audit[1]
	wantRec := recovery.AuditRecord{Seq: 2, At: at, ExecutionID: "01A", Actor: "U42", From: recovery.PendingApproval,
		To: recovery.Approved, Reason: "approved by <@U42>", Plan: &want}
	if !reflect.DeepEqual(r, wantRec) {
		t.Errorf("audit record: got %+v, want %+v", r, wantRec)
	}
	out, _ := db.Outbox(ctx, 0, 0)
	if len(out) != 2 {
		t.Fatalf("outbox: got %d, want 2", len(out))
	}
	wantN := recovery.Notification{Seq: 2, At: at, ExecutionID: "01A", Kind: "state", Text: "✅ approved", State: recovery.Approved}
	if out[1] != wantN {
		t.Errorf("outbox[1]: got %+v, want %+v (execution id and At defaulted)", out[1], wantN)
	}
	dedup, _ := db.DedupEntries(ctx)
	if wantD := []recovery.DedupEntry{{Key: "prod/api-gateway", PlanID: "01A", Until: at.Add(time.Hour)}}; !reflect.DeepEqual(dedup, wantD) {
		t.Errorf("dedup: got %+v, want %+v (Until replaces)", dedup, wantD)
	}

	mustMove(t, db, recovery.Transition{ID: "01A", From: []recovery.State{recovery.Executing}, To: recovery.Executing,
		At: at, Dedup: &recovery.DedupEntry{Key: "prod/api-gateway"}})
	if dedup, _ := db.DedupEntries(ctx); len(dedup) != 0 {
		t.Errorf("dedup after empty PlanID: got %+v, want deleted", dedup)
	}
}

func TestRateStampsPruned(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	for i, id := range []string{"01A", "01B", "01C", "01D"} {
		mustAccept(t, db, accepted("ev-"+id, execution(id, recovery.Approved, t0)))
		rb := "rb-1"
		if id == "01D" {
			rb = "rb-2"
		}
		// 01A at t0, 01B at t0+1h, 01C at t0+2h30 (prunes 01A, keeps 01B), 01D another runbook.
		at := []time.Time{t0, t0.Add(time.Hour), t0.Add(150 * time.Minute), t0}[i]
		mustMove(t, db, recovery.Transition{ID: id, From: []recovery.State{recovery.Approved}, To: recovery.Executing,
			At: at, Rate: &recovery.RateStamp{Runbook: rb}})
	}
	db = reopen(t, db)
	stamps, err := db.RateStamps(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := []recovery.RateStamp{
		{Runbook: "rb-1", At: t0.Add(time.Hour), ExecutionID: "01B"},
		{Runbook: "rb-1", At: t0.Add(150 * time.Minute), ExecutionID: "01C"},
		{Runbook: "rb-2", At: t0, ExecutionID: "01D"},
	}
	if !reflect.DeepEqual(stamps, want) {
		t.Errorf("got %+v, want %+v", stamps, want)
	}
	since, _ := db.RateStamps(ctx, t0.Add(time.Hour))
	if !reflect.DeepEqual(since, want[:2]) {
		t.Errorf("since t0+1h: got %+v, want %+v", since, want[:2])
	}
}

// TestConcurrentMixedOps drives many writers at once, a third of them bound to
// fail, so failing ops share group-commit transactions with good ones (the
// internal TestCommitIsolation forces that); every good op must land exactly.
func TestConcurrentMixedOps(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	const n = 150
	for i := range n {
		mustAccept(t, db, accepted(fmt.Sprintf("ev-%03d", i), execution(fmt.Sprintf("01X%03d", i), recovery.PendingApproval, t0)))
	}
	errMutate := errors.New("refused")
	var wg sync.WaitGroup
	var mu sync.Mutex
	okAccepts, okMoves := 0, 0
	start := make(chan struct{})
	for i := range n {
		id := fmt.Sprintf("01X%03d", i)
		wg.Go(func() { // good: approve
			<-start
			tr := approve(id)
			tr.Outbox = []recovery.Notification{{Kind: "state", Text: "approved " + id}}
			if _, err := db.Transition(ctx, tr); err != nil {
				t.Errorf("approve %s: %v", id, err)
				return
			}
			mu.Lock()
			okMoves++
			mu.Unlock()
		})
		wg.Go(func() { // bad: duplicate event
			<-start
			if err := db.Accept(ctx, accepted(fmt.Sprintf("ev-%03d", i), nil)); !errors.Is(err, recovery.ErrDuplicate) {
				t.Errorf("duplicate accept: got %v, want ErrDuplicate", err)
			}
		})
		wg.Go(func() { // bad: mutate error on a valid move target
			<-start
			tr := recovery.Transition{ID: id, From: []recovery.State{recovery.PendingApproval, recovery.Approved},
				To: recovery.Interrupted, Mutate: func(*recovery.Execution) error { return errMutate },
				Outbox: []recovery.Notification{{Kind: "state", Text: "never"}}}
			if _, err := db.Transition(ctx, tr); !errors.Is(err, errMutate) && !errors.As(err, new(*recovery.MoveError)) && !errors.Is(err, store.ErrNotAllowed) {
				t.Errorf("mutate-error transition: got %v", err)
			}
		})
		wg.Go(func() { // good: a new event without plan
			<-start
			if err := db.Accept(ctx, accepted(fmt.Sprintf("ev-new-%03d", i), nil)); err != nil {
				t.Errorf("accept: %v", err)
				return
			}
			mu.Lock()
			okAccepts++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	db = reopen(t, db)
	xs, err := db.Executions(ctx, recovery.ExecutionFilter{Limit: store.MaxExecutionLimit})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range xs {
		if x.State != recovery.Approved || x.Version != 2 {
			t.Errorf("%s: got %s v%d, want APPROVED v2", x.ID, x.State, x.Version)
		}
	}
	if okMoves != n || okAccepts != n {
		t.Errorf("successes: got %d moves %d accepts, want %d each", okMoves, okAccepts, n)
	}
	// n plan messages + n approvals + n plain accepts; nothing from failures.
	if got, want := outboxLen(t, db), 3*n; got != want {
		t.Errorf("outbox: got %d, want %d", got, want)
	}
	if got, want := auditLen(t, db), 3*n; got != want {
		t.Errorf("audit: got %d, want %d", got, want)
	}
}

func TestOpenIndex(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	rollbackAt := t0.Add(30 * time.Minute)
	mustAccept(t, db, accepted("ev-a", execution("01A", recovery.PendingApproval, t0)))
	mustAccept(t, db, accepted("ev-b", execution("01B", recovery.Executing, t0)))
	mustAccept(t, db, accepted("ev-c", execution("01C", recovery.Executing, t0)))
	mustAccept(t, db, accepted("ev-d", execution("01D", recovery.DryRun, t0)))
	// 01B succeeds with a scheduled rollback: open. 01C succeeds without: closed.
	mustMove(t, db, recovery.Transition{ID: "01B", From: []recovery.State{recovery.Executing}, To: recovery.Succeeded, At: t0,
		Mutate: func(x *recovery.Execution) error { x.RollbackAt = rollbackAt; return nil }})
	mustMove(t, db, recovery.Transition{ID: "01C", From: []recovery.State{recovery.Executing}, To: recovery.Succeeded, At: t0})
	mustMove(t, db, recovery.Transition{ID: "01A", From: []recovery.State{recovery.PendingApproval}, To: recovery.Rejected, At: t0})

	db = reopen(t, db)
	open, err := db.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(open); !reflect.DeepEqual(got, []string{"01B"}) {
		t.Fatalf("open: got %v, want [01B]", got)
	}
	if !open[0].RollbackAt.Equal(rollbackAt) {
		t.Errorf("01B RollbackAt: got %v, want %v", open[0].RollbackAt, rollbackAt)
	}

	mustMove(t, db, recovery.Transition{ID: "01B", From: []recovery.State{recovery.Succeeded}, To: recovery.RollingBack, At: t0,
		Mutate: func(x *recovery.Execution) error { x.RollbackAt = time.Time{}; return nil }})
	if got := openIDs(t, db); !reflect.DeepEqual(got, []string{"01B"}) {
		t.Errorf("rolling back: got %v, want [01B]", got)
	}
	mustMove(t, db, recovery.Transition{ID: "01B", From: []recovery.State{recovery.RollingBack}, To: recovery.RolledBack, At: t0})
	db = reopen(t, db)
	if got := openIDs(t, db); len(got) != 0 {
		t.Errorf("after ROLLED_BACK: got %v, want none", got)
	}
}

func openIDs(t *testing.T, db *store.DB) []string {
	t.Helper()
	open, err := db.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ids(open)
}

func ids(xs []recovery.Execution) []string {
	var out []string
	for _, x := range xs {
		out = append(out, x.ID)
	}
	return out
}

func TestExecutionsFilter(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	fixtures := []struct {
		id      string
		state   recovery.State
		runbook string
		created time.Time
	}{
		{"01A", recovery.Rejected, "rb-1", t0},
		{"01B", recovery.PendingApproval, "rb-2", t0.Add(time.Minute)},
		{"01C", recovery.PendingApproval, "rb-1", t0.Add(2 * time.Minute)},
		{"01D", recovery.DryRun, "rb-1", t0.Add(3 * time.Minute)},
		{"01E", recovery.PendingApproval, "rb-1", t0.Add(4 * time.Minute)},
	}
	// Written out of order: the order read is the ids', not the writes'.
	for _, i := range []int{3, 0, 4, 2, 1} {
		f := fixtures[i]
		x := execution(f.id, f.state, f.created)
		x.Runbook = f.runbook
		mustAccept(t, db, accepted("ev-"+f.id, x))
	}
	db = reopen(t, db)
	tests := []struct {
		name string
		f    recovery.ExecutionFilter
		want []string
	}{
		{"all newest first", recovery.ExecutionFilter{}, []string{"01E", "01D", "01C", "01B", "01A"}},
		{"by state", recovery.ExecutionFilter{State: recovery.PendingApproval}, []string{"01E", "01C", "01B"}},
		{"by runbook", recovery.ExecutionFilter{Runbook: "rb-1"}, []string{"01E", "01D", "01C", "01A"}},
		{"state and runbook", recovery.ExecutionFilter{State: recovery.PendingApproval, Runbook: "rb-1"}, []string{"01E", "01C"}},
		{"since is inclusive", recovery.ExecutionFilter{Since: t0.Add(2 * time.Minute)}, []string{"01E", "01D", "01C"}},
		{"limit keeps the newest", recovery.ExecutionFilter{Runbook: "rb-1", Limit: 2}, []string{"01E", "01D"}},
		{"no match", recovery.ExecutionFilter{Runbook: "nope"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.Executions(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ids(got), tt.want) {
				t.Errorf("got %v, want %v", ids(got), tt.want)
			}
		})
	}
}

func TestExecutionsDefaultLimit(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	var wg sync.WaitGroup
	for i := range store.DefaultExecutionLimit + 10 {
		wg.Go(func() {
			mustAccept(t, db, accepted(fmt.Sprintf("ev-%03d", i), execution(fmt.Sprintf("01%03d", i), recovery.PendingApproval, t0)))
		})
	}
	wg.Wait()
	got, err := db.Executions(ctx, recovery.ExecutionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != store.DefaultExecutionLimit || got[0].ID != "01059" || got[len(got)-1].ID != "01010" {
		t.Errorf("got %d from %s to %s, want %d from 01059 to 01010", len(got), got[0].ID, got[len(got)-1].ID, store.DefaultExecutionLimit)
	}
}

func TestAuditSinceBoundaries(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	x := execution("01A", recovery.Executing, t0)
	mustAccept(t, db, accepted("ev-1", x)) // audit at t0
	for i := 1; i <= 2; i++ {
		mustMove(t, db, recovery.Transition{ID: "01A", From: []recovery.State{recovery.Executing}, To: recovery.Executing,
			At: t0.Add(time.Duration(i) * time.Second), Reason: fmt.Sprint("step ", i)})
	}
	db = reopen(t, db)
	tests := []struct {
		since time.Time
		want  []uint64
	}{
		{time.Time{}, []uint64{1, 2, 3}},
		{t0, []uint64{1, 2, 3}},
		{t0.Add(time.Nanosecond), []uint64{2, 3}},
		{t0.Add(time.Second), []uint64{2, 3}},
		{t0.Add(2 * time.Second), []uint64{3}},
		{t0.Add(2*time.Second + time.Nanosecond), nil},
	}
	for _, tt := range tests {
		t.Run(tt.since.Format(time.RFC3339Nano), func(t *testing.T) {
			recs, err := db.AuditSince(ctx, tt.since)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, r := range recs {
				got = append(got, r.Seq)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got seqs %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAuditPerExecution(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	// "01A" is a prefix of "01AB": the index must not mix them.
	mustAccept(t, db, accepted("ev-1", execution("01A", recovery.PendingApproval, t0)))
	mustAccept(t, db, accepted("ev-2", execution("01AB", recovery.PendingApproval, t0)))
	mustMove(t, db, approve("01AB"))
	mustMove(t, db, approve("01A"))
	for id, want := range map[string][]uint64{"01A": {1, 4}, "01AB": {2, 3}, "01": nil, "unknown": nil} {
		recs, err := db.Audit(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, r := range recs {
			if r.ExecutionID != id {
				t.Errorf("Audit(%s) returned a record of %s", id, r.ExecutionID)
			}
			got = append(got, r.Seq)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Audit(%s): got seqs %v, want %v", id, got, want)
		}
	}
}

func TestOutboxOrderAndAck(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	a := accepted("ev-1", execution("01A", recovery.PendingApproval, t0))
	a.Outbox = nil
	for i := range 5 {
		a.Outbox = append(a.Outbox, recovery.Notification{Seq: 999, Kind: "step", Text: fmt.Sprint("m", i+1)})
	}
	mustAccept(t, db, a)
	texts := func(ns []recovery.Notification) (seqs []uint64, texts []string) {
		for _, n := range ns {
			seqs = append(seqs, n.Seq)
			texts = append(texts, n.Text)
		}
		return
	}
	all, _ := db.Outbox(ctx, 0, 0)
	if seqs, tx := texts(all); !reflect.DeepEqual(seqs, []uint64{1, 2, 3, 4, 5}) || !reflect.DeepEqual(tx, []string{"m1", "m2", "m3", "m4", "m5"}) {
		t.Fatalf("outbox: got %v %v, want seqs 1..5 (caller's seq ignored) in order", seqs, tx)
	}
	page, _ := db.Outbox(ctx, 2, 2)
	if seqs, _ := texts(page); !reflect.DeepEqual(seqs, []uint64{3, 4}) {
		t.Errorf("after 2 limit 2: got %v, want [3 4]", seqs)
	}
	if err := db.AckOutbox(ctx, 1, 3, 42); err != nil { // 42 never existed
		t.Fatalf("AckOutbox: %v", err)
	}
	if err := db.AckOutbox(ctx, 1); err != nil { // acked twice
		t.Fatalf("AckOutbox again: %v", err)
	}
	db = reopen(t, db)
	left, _ := db.Outbox(ctx, 0, 0)
	if seqs, _ := texts(left); !reflect.DeepEqual(seqs, []uint64{2, 4, 5}) {
		t.Errorf("after ack: got %v, want [2 4 5]", seqs)
	}
	// Seqs are not reused after acks or a reopen.
	mustAccept(t, db, accepted("ev-2", nil))
	if left, _ := db.Outbox(ctx, 5, 0); len(left) != 1 || left[0].Seq != 6 {
		t.Errorf("next seq: got %+v, want 6", left)
	}
}

func TestSettings(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	if _, err := db.Setting(ctx, "paused"); !errors.Is(err, recovery.ErrNotFound) {
		t.Fatalf("unset: got %v, want ErrNotFound", err)
	}
	v := []byte("true")
	if err := db.PutSetting(ctx, "paused", v); err != nil {
		t.Fatal(err)
	}
	v[0] = 'X' // the store kept its own copy
	if err := db.PutSetting(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	db = reopen(t, db)
	if got, err := db.Setting(ctx, "paused"); err != nil || string(got) != "true" {
		t.Errorf("paused: got %q, %v; want true", got, err)
	}
	if got, err := db.Setting(ctx, "empty"); err != nil || len(got) != 0 {
		t.Errorf("empty: got %q, %v; want set and empty", got, err)
	}
	if err := db.PutSetting(ctx, "", v); err == nil {
		t.Error("empty key: got nil, want an error")
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	db, path := openDB(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint32(nil, 99))
	})
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.Open(path)
	if !errors.Is(err, store.ErrNewerSchema) {
		t.Fatalf("got %v, want ErrNewerSchema", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "99") || !strings.Contains(msg, "1") {
		t.Errorf("message %q should name both versions", msg)
	}
}

func TestOpenLocked(t *testing.T) {
	_, path := openDB(t)
	start := time.Now()
	db2, err := store.Open(path)
	if err == nil {
		db2.Close()
		t.Fatal("second Open: got nil, want locked")
	}
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), path+" is locked by another process") {
		t.Errorf("got %v, want %q", err, "store: "+path+" is locked by another process")
	}
	// The lock timeout is about 1s; the bound only tells "Open gave up" from
	// "Open waited for the lock forever", which a loaded machine always meets.
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %v, want about 1s", d)
	}
}

func TestCloseDrainsWrites(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	const n = 200
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = db.Accept(ctx, accepted(fmt.Sprintf("ev-%03d", i), nil)) })
	}
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	wg.Wait()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := db.Accept(ctx, accepted("ev-late", nil)); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Accept after Close: got %v, want ErrClosed", err)
	}
	if _, err := db.Execution(ctx, "x"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("read after Close: got %v, want ErrClosed", err)
	}
	db2, err := store.Open(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	// Every write that was answered nil is on disk; every one refused is not.
	for i, err := range errs {
		_, got := db2.EventRecord(ctx, fmt.Sprintf("ev-%03d", i))
		switch {
		case err == nil && got != nil:
			t.Errorf("ev-%03d: acknowledged but lost: %v", i, got)
		case errors.Is(err, store.ErrClosed) && got == nil:
			t.Errorf("ev-%03d: refused but written", i)
		case err != nil && !errors.Is(err, store.ErrClosed):
			t.Errorf("ev-%03d: got %v, want nil or ErrClosed", i, err)
		}
	}
}

func TestCancelledContextWritesNothing(t *testing.T) {
	db, _ := openDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := db.Accept(ctx, accepted("ev-1", nil)); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, err := db.EventRecord(context.Background(), "ev-1"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("event: got %v, want ErrNotFound", err)
	}
	if _, err := db.Execution(ctx, "01A"); !errors.Is(err, context.Canceled) {
		t.Errorf("read with cancelled ctx: got %v, want context.Canceled", err)
	}
}

func TestRecordAppendsAuditAndOutboxOnly(t *testing.T) {
	ctx := context.Background()
	db, _ := openDB(t)
	before, outbox := auditLen(t, db), outboxLen(t, db)
	err := db.Record(ctx, []recovery.AuditRecord{{Actor: "alice", ExecutionID: "01A", Reason: "refused: not an approver"}},
		[]recovery.Notification{{Kind: "notice", Text: "paused by alice"}})
	if err != nil {
		t.Fatal(err)
	}
	db = reopen(t, db)
	if got := auditLen(t, db); got != before+1 {
		t.Errorf("audit: got %d, want %d", got, before+1)
	}
	if got := outboxLen(t, db); got != outbox+1 {
		t.Errorf("outbox: got %d, want %d", got, outbox+1)
	}
	recs, _ := db.Audit(ctx, "01A")
	if len(recs) != 1 || recs[0].At.IsZero() || recs[0].Reason != "refused: not an approver" {
		t.Errorf("the record is not in 01A's trail: %+v", recs)
	}
	if _, err := db.Execution(ctx, "01A"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("Record created an execution: %v", err)
	}
}
