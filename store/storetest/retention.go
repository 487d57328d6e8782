package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

// Sweeper is a store with the retention sweep (store.DB, etcdstore.Store).
type Sweeper interface {
	recovery.Store
	Sweep(ctx context.Context, cutoff time.Time, settingsOf []string) (int, error)
}

// RunRetention checks the sweep: finished records older than the cutoff go
// with their audit trail, event, repeats and settings; open, timed and recent
// ones stay, and so does everything they reference.
func RunRetention(t *testing.T, open func(t *testing.T) Sweeper) {
	s := open(t)
	old, cutoff, recent := T0, T0.Add(24*time.Hour), T0.Add(48*time.Hour)
	settingsOf := []string{"slack:ts:"}
	move := func(id string, from, to recovery.State, at time.Time) {
		t.Helper()
		if _, err := s.Transition(bg, recovery.Transition{ID: id, From: []recovery.State{from}, To: to, At: at, Actor: "U1"}); err != nil {
			t.Fatalf("Transition %s: %v", id, err)
		}
	}
	plan := func(id string, state recovery.State, at time.Time) {
		t.Helper()
		x := Execution(id, state, at)
		if id == "01C" {
			x.RollbackAt = recent // a pending timer: kept however old
		}
		mustAccept(t, s, Accepted("ev-"+id, x))
		if err := s.PutSetting(bg, "slack:ts:"+id, []byte("1.2")); err != nil {
			t.Fatal(err)
		}
	}
	plan("01A", recovery.PendingApproval, old) // rejected long ago: deleted
	move("01A", recovery.PendingApproval, recovery.Rejected, old)
	dup := Accepted("ev-dup", nil)
	dup.RepeatOf = "01A"
	mustAccept(t, s, dup)
	plan("01B", recovery.PendingApproval, old) // still open: kept
	plan("01C", recovery.Succeeded, old)       // timed rollback: kept
	plan("01E", recovery.PendingApproval, old) // a long trail: deleted
	for i := range 120 {
		move("01E", recovery.PendingApproval, recovery.PendingApproval, old.Add(time.Duration(i)*time.Second))
	}
	move("01E", recovery.PendingApproval, recovery.Expired, old.Add(time.Hour))
	mustAccept(t, s, recovery.Accepted{Event: recovery.EventRecord{Event: recovery.Event{ID: "ev-none-old"}, ReceivedAt: old, Decision: recovery.DecideNoRunbook}})
	mustAccept(t, s, recovery.Accepted{Event: recovery.EventRecord{Event: recovery.Event{ID: "ev-none-new"}, ReceivedAt: recent, Decision: recovery.DecideNoRunbook}})
	if err := s.Record(bg, []recovery.AuditRecord{
		{At: old, Actor: "U1", Reason: "paused"},                       // of no execution: deleted
		{At: old, ExecutionID: "01B", Actor: "U1", Reason: "a note"},   // of an open one: kept
		{At: old, ExecutionID: "01Z", Actor: "U1", Reason: "orphaned"}, // of none stored: deleted
	}, nil); err != nil {
		t.Fatal(err)
	}
	// The audit is appended in time order: the sweep stops at the first
	// record after the cutoff, so everything recent comes last.
	plan("01D", recovery.PendingApproval, old) // finished after the cutoff: kept
	move("01D", recovery.PendingApproval, recovery.Rejected, recent)
	if err := s.Record(bg, []recovery.AuditRecord{{At: recent, Actor: "U1", Reason: "resumed"}}, nil); err != nil {
		t.Fatal(err)
	}

	n, err := s.Sweep(bg, cutoff, settingsOf)
	// 01A: 2 audit + itself; 01E: 122 audit + itself; the plan-less events
	// ev-dup and ev-none-old; ev-dup's audit record, "paused" and "orphaned".
	if want := 3 + 123 + 2 + 3; err != nil || n != want {
		t.Fatalf("Sweep: deleted %d, %v; want %d", n, err, want)
	}
	for _, id := range []string{"01A", "01E"} {
		if _, err := s.Execution(bg, id); !errors.Is(err, recovery.ErrNotFound) {
			t.Errorf("Execution %s: got %v, want ErrNotFound", id, err)
		}
		if a, err := s.Audit(bg, id); err != nil || len(a) != 0 {
			t.Errorf("Audit %s: %d records, %v; want none", id, len(a), err)
		}
		if _, err := s.EventRecord(bg, "ev-"+id); !errors.Is(err, recovery.ErrNotFound) {
			t.Errorf("EventRecord ev-%s: got %v, want ErrNotFound", id, err)
		}
		if _, err := s.Setting(bg, "slack:ts:"+id); !errors.Is(err, recovery.ErrNotFound) {
			t.Errorf("Setting of %s: got %v, want ErrNotFound", id, err)
		}
	}
	for _, id := range []string{"01B", "01C", "01D"} {
		if _, err := s.Execution(bg, id); err != nil {
			t.Errorf("Execution %s: %v; want kept", id, err)
		}
		if _, err := s.Setting(bg, "slack:ts:"+id); err != nil {
			t.Errorf("Setting of %s: %v; want kept", id, err)
		}
	}
	if _, err := s.EventRecord(bg, "ev-none-old"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("old plan-less event: got %v, want ErrNotFound", err)
	}
	if _, err := s.EventRecord(bg, "ev-none-new"); err != nil {
		t.Errorf("recent plan-less event: %v; want kept", err)
	}
	all, err := s.AuditSince(bg, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, r := range all {
		if r.ExecutionID == "" || r.ExecutionID == "01Z" || r.ExecutionID == "01B" && r.Reason == "a note" {
			reasons = append(reasons, r.Reason)
		}
	}
	if got, want := fmt.Sprint(reasons), "[a note resumed]"; got != want {
		t.Errorf("loose audit records kept: %s, want %s", got, want)
	}
	if n, err := s.Sweep(bg, cutoff, settingsOf); err != nil || n != 0 {
		t.Errorf("second Sweep: deleted %d, %v; want 0", n, err)
	}
}
