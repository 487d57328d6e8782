// Package storetest is the conformance suite of recovery.Store: one set of
// tests that every backend (store.DB on bbolt, etcdstore.Store on etcd) runs,
// so the contract in recovery/types.go holds the same on each.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

// T0 is the suite's base time.
var T0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

// Run runs every clause of the contract as a subtest; open returns a new,
// empty store ready for writes (the test's cleanup closes it).
func Run(t *testing.T, open func(t *testing.T) recovery.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s recovery.Store)
	}{
		{"AcceptWritesAllOrNothing", acceptWritesAll},
		{"AcceptDuplicateWritesNothing", acceptDuplicate},
		{"ConcurrentDuplicatesOneWins", concurrentDuplicates},
		{"AcceptRepeatOfCounts", acceptRepeatOf},
		{"TransitionCASWithAuditAndOutbox", transitionCAS},
		{"FailedTransitionWritesNothing", failedTransition},
		{"TransitionRateAndDedup", transitionRateAndDedup},
		{"OutboxSeqFollowsCommitOrder", outboxConcurrent},
		{"OutboxAckAndDeadLetter", outboxAckDeadLetter},
		{"RecordAppendsAuditAndOutboxOnly", record},
		{"OpenIsNonTerminalAndPendingTimers", openTimers},
		{"AuditPagesWithoutGapsOrRepeats", auditPaging},
		{"ExecutionsFilterNewestFirst", executionsFilter},
		{"SettingsRoundTrip", settings},
		{"CancelledContextWritesNothing", cancelledCtx},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// Execution is a PENDING_APPROVAL-like plan in state, created at created.
func Execution(id string, state recovery.State, created time.Time) *recovery.Execution {
	return &recovery.Execution{
		Plan: recovery.Plan{
			ID:      id,
			EventID: "ev-" + id,
			Event: recovery.Event{ID: "ev-" + id, Type: "LATENCY_ANOMALY", Severity: "WARNING",
				Confidence: 0.9, Data: map[string]any{"cause": "DATABASE"}},
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

// Accepted is a typical intake decision: a new plan (or none when x is nil),
// one audit record, one outbox message.
func Accepted(eventID string, x *recovery.Execution) recovery.Accepted {
	at, planID := T0, ""
	if x != nil {
		at, planID = x.CreatedAt, x.ID
	}
	return recovery.Accepted{
		Event: recovery.EventRecord{
			Event:      recovery.Event{ID: eventID, Type: "LATENCY_ANOMALY", Severity: "WARNING", Confidence: 0.9},
			ReceivedAt: at,
			Decision:   recovery.DecideApproval,
			PlanID:     planID,
		},
		Execution: x,
		Audit:     []recovery.AuditRecord{{Actor: "recoverbot", To: recovery.PendingApproval, Reason: "needs approval"}},
		Outbox:    []recovery.Notification{{Kind: "plan", Text: "plan " + planID}},
	}
}

var bg = context.Background()

func mustAccept(t *testing.T, s recovery.Store, a recovery.Accepted) {
	t.Helper()
	if err := s.Accept(bg, a); err != nil {
		t.Fatalf("Accept %s: %v", a.Event.Event.ID, err)
	}
}

func approve(id string) recovery.Transition {
	return recovery.Transition{ID: id, From: []recovery.State{recovery.PendingApproval}, To: recovery.Approved,
		At: T0.Add(time.Minute), Actor: "U123", Reason: "approved in Slack",
		Outbox: []recovery.Notification{{Kind: "approved", Text: "approved"}}}
}

// counts is how many audit records and outbox messages the store holds.
func counts(t *testing.T, s recovery.Store) (audit, outbox int) {
	t.Helper()
	a, err := s.AuditSince(bg, time.Time{})
	if err != nil {
		t.Fatalf("AuditSince: %v", err)
	}
	o, err := s.Outbox(bg, 0, 1000)
	if err != nil {
		t.Fatalf("Outbox: %v", err)
	}
	return len(a), len(o)
}

func acceptWritesAll(t *testing.T, s recovery.Store) {
	x := Execution("01A", recovery.PendingApproval, T0)
	a := Accepted("ev-1", x)
	a.Dedup = &recovery.DedupEntry{Key: "prod/api-gateway", PlanID: "01A"}
	mustAccept(t, s, a)

	got, err := s.Execution(bg, "01A")
	if err != nil || got.State != recovery.PendingApproval || got.Runbook != x.Runbook {
		t.Fatalf("Execution: got %+v, %v; want the accepted plan", got.State, err)
	}
	ev, err := s.EventRecord(bg, "ev-1")
	if err != nil || ev.PlanID != "01A" {
		t.Fatalf("EventRecord: got plan %q, %v; want 01A", ev.PlanID, err)
	}
	audit, err := s.Audit(bg, "01A")
	if err != nil || len(audit) != 1 {
		t.Fatalf("Audit: got %d records, %v; want 1", len(audit), err)
	}
	if r := audit[0]; r.Seq == 0 || r.ExecutionID != "01A" || r.EventID != "ev-1" || !r.At.Equal(T0) {
		t.Errorf("audit defaults: got seq %d exec %q event %q at %v; want a seq, 01A, ev-1, %v", r.Seq, r.ExecutionID, r.EventID, r.At, T0)
	}
	out, err := s.Outbox(bg, 0, 10)
	if err != nil || len(out) != 1 || out[0].ExecutionID != "01A" || out[0].Seq == 0 {
		t.Fatalf("Outbox: got %+v, %v; want one message for 01A with a seq", out, err)
	}
	dedup, err := s.DedupEntries(bg)
	if err != nil || len(dedup) != 1 || dedup[0].PlanID != "01A" {
		t.Fatalf("DedupEntries: got %+v, %v; want the plan's entry", dedup, err)
	}
	if _, err := s.Execution(bg, "nope"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("Execution(nope): got %v, want ErrNotFound", err)
	}
	if _, err := s.EventRecord(bg, "nope"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("EventRecord(nope): got %v, want ErrNotFound", err)
	}
}

func acceptDuplicate(t *testing.T, s recovery.Store) {
	mustAccept(t, s, Accepted("ev-1", Execution("01A", recovery.PendingApproval, T0)))
	audit, outbox := counts(t, s)

	// The same event again, with another plan: nothing of it is written.
	again := Accepted("ev-1", Execution("01B", recovery.PendingApproval, T0))
	if err := s.Accept(bg, again); !errors.Is(err, recovery.ErrDuplicate) {
		t.Fatalf("same event: got %v, want ErrDuplicate", err)
	}
	if _, err := s.Execution(bg, "01B"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("the duplicate's plan: got %v, want ErrNotFound", err)
	}
	// Another event naming an existing plan id: its event is not written.
	other := Accepted("ev-2", Execution("01A", recovery.PendingApproval, T0))
	if err := s.Accept(bg, other); !errors.Is(err, recovery.ErrDuplicate) {
		t.Fatalf("same plan id: got %v, want ErrDuplicate", err)
	}
	if _, err := s.EventRecord(bg, "ev-2"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("the refused event: got %v, want ErrNotFound", err)
	}
	if a, o := counts(t, s); a != audit || o != outbox {
		t.Errorf("after duplicates: %d audit, %d outbox; want %d, %d", a, o, audit, outbox)
	}
}

// concurrentDuplicates: the same event sent by many writers at once (as a
// retrying sender does) is accepted exactly once, and the same execution once.
func concurrentDuplicates(t *testing.T, s recovery.Store) {
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Accept(bg, Accepted("ev-same", Execution("01A", recovery.PendingApproval, T0)))
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, recovery.ErrDuplicate):
			t.Errorf("Accept: got %v, want nil or ErrDuplicate", err)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d concurrent Accepts of one event succeeded, want 1", won, n)
	}
	if a, o := counts(t, s); a != 1 || o != 1 {
		t.Errorf("after concurrent duplicates: %d audit, %d outbox; want 1, 1", a, o)
	}
}

func acceptRepeatOf(t *testing.T, s recovery.Store) {
	mustAccept(t, s, Accepted("ev-1", Execution("01A", recovery.PendingApproval, T0)))
	for i := range 3 {
		dup := Accepted(fmt.Sprintf("ev-dup-%d", i), nil)
		dup.Event.Decision = recovery.DecideDuplicate
		dup.Event.DuplicateOf = "01A"
		dup.RepeatOf = "01A"
		mustAccept(t, s, dup)
	}
	x, err := s.Execution(bg, "01A")
	if err != nil || x.Repeats != 3 {
		t.Fatalf("Repeats: got %d, %v; want 3", x.Repeats, err)
	}
	open, err := s.Open(bg)
	if err != nil || len(open) != 1 || open[0].Repeats != 3 {
		t.Fatalf("Open: got %+v, %v; want 01A with 3 repeats", open, err)
	}
}

func transitionCAS(t *testing.T, s recovery.Store) {
	mustAccept(t, s, Accepted("ev-1", Execution("01A", recovery.PendingApproval, T0)))
	tr := approve("01A")
	tr.Mutate = func(e *recovery.Execution) error { e.ApprovedBy = "U123"; return nil }
	x, err := s.Transition(bg, tr)
	if err != nil {
		t.Fatalf("Transition: %v", err)
	}
	if x.State != recovery.Approved || x.Version != 2 || x.ApprovedBy != "U123" || !x.UpdatedAt.Equal(tr.At) {
		t.Errorf("returned: state %s version %d by %q at %v; want APPROVED 2 U123 %v", x.State, x.Version, x.ApprovedBy, x.UpdatedAt, tr.At)
	}
	stored, err := s.Execution(bg, "01A")
	if err != nil || stored.State != recovery.Approved || stored.Version != 2 || stored.ApprovedBy != "U123" {
		t.Errorf("stored: %s v%d %q, %v; want APPROVED v2 U123", stored.State, stored.Version, stored.ApprovedBy, err)
	}
	audit, err := s.Audit(bg, "01A")
	if err != nil || len(audit) != 2 {
		t.Fatalf("Audit: %d records, %v; want 2", len(audit), err)
	}
	last := audit[1]
	if last.From != recovery.PendingApproval || last.To != recovery.Approved || last.Actor != "U123" ||
		last.Plan == nil || last.Plan.Version != 2 || last.Seq <= audit[0].Seq {
		t.Errorf("transition audit: %+v; want PENDING_APPROVAL → APPROVED by U123 with the v2 snapshot after seq %d", last, audit[0].Seq)
	}
	out, err := s.Outbox(bg, 0, 10)
	if err != nil || len(out) != 2 || out[1].Kind != "approved" || out[1].ExecutionID != "01A" || !out[1].At.Equal(tr.At) {
		t.Fatalf("Outbox: %+v, %v; want the plan then the approval for 01A at %v", out, err, tr.At)
	}

	// The same move again: the state is no longer PENDING_APPROVAL.
	_, err = s.Transition(bg, approve("01A"))
	var me *recovery.MoveError
	if !errors.As(err, &me) || me.Actual != recovery.Approved {
		t.Fatalf("repeated move: got %v, want *MoveError with Actual APPROVED", err)
	}
	if _, err := s.Transition(bg, approve("nope")); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("unknown execution: got %v, want ErrNotFound", err)
	}
}

func failedTransition(t *testing.T, s recovery.Store) {
	mustAccept(t, s, Accepted("ev-1", Execution("01A", recovery.PendingApproval, T0)))
	audit, outbox := counts(t, s)
	boom := errors.New("boom")
	cases := []struct {
		name string
		tr   recovery.Transition
		ok   func(error) bool
	}{
		{"wrong from", recovery.Transition{ID: "01A", From: []recovery.State{recovery.Executing}, To: recovery.Succeeded,
			At: T0, Outbox: []recovery.Notification{{Kind: "x", Text: "x"}}},
			func(err error) bool { var me *recovery.MoveError; return errors.As(err, &me) }},
		{"no such move", recovery.Transition{ID: "01A", From: []recovery.State{recovery.PendingApproval}, To: recovery.Succeeded,
			At: T0, Outbox: []recovery.Notification{{Kind: "x", Text: "x"}}},
			func(err error) bool { return err != nil }},
		{"mutate fails", recovery.Transition{ID: "01A", From: []recovery.State{recovery.PendingApproval}, To: recovery.Approved,
			At: T0, Outbox: []recovery.Notification{{Kind: "x", Text: "x"}},
			Rate:   &recovery.RateStamp{},
			Mutate: func(*recovery.Execution) error { return boom }},
			func(err error) bool { return errors.Is(err, boom) }},
		{"unknown execution", recovery.Transition{ID: "01Z", From: []recovery.State{recovery.PendingApproval}, To: recovery.Approved,
			At: T0, Outbox: []recovery.Notification{{Kind: "x", Text: "x"}}},
			func(err error) bool { return errors.Is(err, recovery.ErrNotFound) }},
	}
	for _, c := range cases {
		if _, err := s.Transition(bg, c.tr); !c.ok(err) {
			t.Errorf("%s: got %v", c.name, err)
		}
	}
	if a, o := counts(t, s); a != audit || o != outbox {
		t.Errorf("after failed moves: %d audit, %d outbox; want %d, %d", a, o, audit, outbox)
	}
	if x, err := s.Execution(bg, "01A"); err != nil || x.State != recovery.PendingApproval || x.Version != 1 {
		t.Errorf("execution after failed moves: %s v%d, %v; want PENDING_APPROVAL v1", x.State, x.Version, err)
	}
	if r, err := s.RateStamps(bg, time.Time{}); err != nil || len(r) != 0 {
		t.Errorf("rate stamps after a failed move: %+v, %v; want none", r, err)
	}
}

func transitionRateAndDedup(t *testing.T, s recovery.Store) {
	a := Accepted("ev-1", Execution("01A", recovery.PendingApproval, T0))
	a.Dedup = &recovery.DedupEntry{Key: "k", PlanID: "01A"}
	mustAccept(t, s, a)
	tr := approve("01A")
	tr.Rate = &recovery.RateStamp{}
	tr.Dedup = &recovery.DedupEntry{Key: "k", PlanID: "01A", Until: T0.Add(time.Hour)}
	if _, err := s.Transition(bg, tr); err != nil {
		t.Fatalf("Transition: %v", err)
	}
	rates, err := s.RateStamps(bg, T0)
	if err != nil || len(rates) != 1 || rates[0].Runbook != "scale-database-connections" || rates[0].ExecutionID != "01A" || !rates[0].At.Equal(tr.At) {
		t.Fatalf("RateStamps: %+v, %v; want the runbook's stamp for 01A at %v", rates, err, tr.At)
	}
	if r, _ := s.RateStamps(bg, tr.At.Add(time.Second)); len(r) != 0 {
		t.Errorf("RateStamps after the stamp: %+v; want none", r)
	}
	dedup, err := s.DedupEntries(bg)
	if err != nil || len(dedup) != 1 || !dedup[0].Until.Equal(T0.Add(time.Hour)) {
		t.Fatalf("DedupEntries: %+v, %v; want the cooldown", dedup, err)
	}
	// An entry with no PlanID deletes its key.
	rej := recovery.Transition{ID: "01A", From: []recovery.State{recovery.Approved}, To: recovery.Suppressed,
		At: T0.Add(2 * time.Minute), Dedup: &recovery.DedupEntry{Key: "k"}}
	if _, err := s.Transition(bg, rej); err != nil {
		t.Fatalf("Transition: %v", err)
	}
	if dedup, err := s.DedupEntries(bg); err != nil || len(dedup) != 0 {
		t.Errorf("DedupEntries after delete: %+v, %v; want none", dedup, err)
	}
}

// outboxConcurrent: concurrent writers; each writer's messages get strictly
// increasing Seqs in the order its writes returned, no two share a Seq, and
// Outbox lists them all ascending.
func outboxConcurrent(t *testing.T, s recovery.Store) {
	const writers, each = 8, 15
	seqs := make([][]uint64, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				text := fmt.Sprintf("w%d-%d", w, i)
				if err := s.Record(bg, nil, []recovery.Notification{{Kind: "notice", Text: text}}); err != nil {
					t.Errorf("Record: %v", err)
					return
				}
				// The message just written is the one with the highest Seq
				// of this writer: find its Seq by text.
				out, err := s.Outbox(bg, 0, 1000)
				if err != nil {
					t.Errorf("Outbox: %v", err)
					return
				}
				for _, n := range out {
					if n.Text == text {
						seqs[w] = append(seqs[w], n.Seq)
					}
				}
			}
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for w, ss := range seqs {
		if len(ss) != each {
			t.Fatalf("writer %d: found %d of its messages, want %d", w, len(ss), each)
		}
		for i, q := range ss {
			if i > 0 && q <= ss[i-1] {
				t.Errorf("writer %d: seq %d after %d: want strictly increasing in commit order", w, q, ss[i-1])
			}
			if seen[q] {
				t.Errorf("seq %d given twice", q)
			}
			seen[q] = true
		}
	}
	out, err := s.Outbox(bg, 0, 1000)
	if err != nil || len(out) != writers*each {
		t.Fatalf("Outbox: %d messages, %v; want %d", len(out), err, writers*each)
	}
	if !slices.IsSortedFunc(out, func(a, b recovery.Notification) int { return int(a.Seq) - int(b.Seq) }) {
		t.Errorf("Outbox not in Seq order")
	}
	// Paging by after and limit gives the same list.
	var paged []uint64
	for after := uint64(0); ; {
		page, err := s.Outbox(bg, after, 7)
		if err != nil {
			t.Fatalf("Outbox page: %v", err)
		}
		if len(page) == 0 {
			break
		}
		for _, n := range page {
			paged = append(paged, n.Seq)
		}
		after = page[len(page)-1].Seq
	}
	if len(paged) != len(out) {
		t.Errorf("paged outbox: %d messages, want %d", len(paged), len(out))
	}
}

func outboxAckDeadLetter(t *testing.T, s recovery.Store) {
	if err := s.Record(bg, nil, []recovery.Notification{{Kind: "notice", Text: "1"}, {Kind: "notice", Text: "2"}, {Kind: "notice", Text: "3"}}); err != nil {
		t.Fatalf("Record: %v", err)
	}
	out, err := s.Outbox(bg, 0, 10)
	if err != nil || len(out) != 3 {
		t.Fatalf("Outbox: %d, %v; want 3", len(out), err)
	}
	if err := s.DeadLetter(bg, out[1].Seq, "channel_not_found"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	if err := s.DeadLetter(bg, out[1].Seq, "again"); err != nil {
		t.Errorf("DeadLetter of a seq gone: got %v, want nil", err)
	}
	if err := s.AckOutbox(bg, out[0].Seq, out[0].Seq); err != nil {
		t.Fatalf("AckOutbox: %v", err)
	}
	if err := s.AckOutbox(bg, out[0].Seq); err != nil {
		t.Errorf("AckOutbox twice: got %v, want nil", err)
	}
	left, err := s.Outbox(bg, 0, 10)
	if err != nil || len(left) != 1 || left[0].Text != "3" || left[0].Seq != out[2].Seq {
		t.Fatalf("Outbox after ack and dead letter: %+v, %v; want only 3", left, err)
	}
	if left, _ := s.Outbox(bg, out[2].Seq, 10); len(left) != 0 {
		t.Errorf("Outbox after the last seq: %+v; want none", left)
	}
}

func record(t *testing.T, s recovery.Store) {
	mustAccept(t, s, Accepted("ev-1", Execution("01A", recovery.PendingApproval, T0)))
	if err := s.Record(bg,
		[]recovery.AuditRecord{{ExecutionID: "01A", Actor: "U9", Reason: "refused click"}, {Actor: "recoverbot", Reason: "paused"}},
		[]recovery.Notification{{Kind: "notice", Text: "paused"}}); err != nil {
		t.Fatalf("Record: %v", err)
	}
	if a, o := counts(t, s); a != 3 || o != 2 {
		t.Errorf("after Record: %d audit, %d outbox; want 3, 2", a, o)
	}
	audit, err := s.Audit(bg, "01A")
	if err != nil || len(audit) != 2 || audit[1].Reason != "refused click" || audit[1].At.IsZero() {
		t.Errorf("Audit(01A): %+v, %v; want the plan's record then the refused click, stamped", audit, err)
	}
	if x, err := s.Execution(bg, "01A"); err != nil || x.Version != 1 {
		t.Errorf("execution after Record: v%d, %v; want untouched v1", x.Version, err)
	}
}

func openTimers(t *testing.T, s recovery.Store) {
	for _, st := range []struct {
		id    string
		state recovery.State
		timer bool
	}{
		{"01A", recovery.PendingApproval, false},
		{"01B", recovery.Succeeded, true},  // a scheduled rollback
		{"01C", recovery.Succeeded, false}, // done
		{"01D", recovery.Rejected, false},
		{"01E", recovery.Executing, false},
	} {
		x := Execution(st.id, st.state, T0)
		if st.timer {
			x.RollbackAt = T0.Add(time.Hour)
		}
		mustAccept(t, s, Accepted("ev-"+st.id, x))
	}
	ids := func() []string {
		open, err := s.Open(bg)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		var out []string
		for _, x := range open {
			out = append(out, x.ID)
		}
		return out
	}
	if got, want := ids(), []string{"01A", "01B", "01E"}; !slices.Equal(got, want) {
		t.Fatalf("Open: got %v, want %v", got, want)
	}
	// Closing a plan takes it out; so does a rollback of the timed one.
	if _, err := s.Transition(bg, recovery.Transition{ID: "01A", From: []recovery.State{recovery.PendingApproval},
		To: recovery.Rejected, At: T0}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transition(bg, recovery.Transition{ID: "01B", From: []recovery.State{recovery.Succeeded},
		To: recovery.RollingBack, At: T0}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transition(bg, recovery.Transition{ID: "01B", From: []recovery.State{recovery.RollingBack},
		To: recovery.RolledBack, At: T0}); err != nil {
		t.Fatal(err)
	}
	if got, want := ids(), []string{"01E"}; !slices.Equal(got, want) {
		t.Errorf("Open after closing: got %v, want %v", got, want)
	}
}

func auditPaging(t *testing.T, s recovery.Store) {
	const n = 40
	for i := range n {
		if err := s.Record(bg, []recovery.AuditRecord{{At: T0.Add(time.Duration(i) * time.Second), Actor: "a", Reason: fmt.Sprint(i)}}, nil); err != nil {
			t.Fatalf("Record: %v", err)
		}
	}
	all, err := s.AuditSince(bg, time.Time{})
	if err != nil || len(all) != n {
		t.Fatalf("AuditSince: %d, %v; want %d", len(all), err, n)
	}
	var paged []recovery.AuditRecord
	for after := uint64(0); ; {
		page, err := s.AuditPage(bg, time.Time{}, after, 7)
		if err != nil {
			t.Fatalf("AuditPage: %v", err)
		}
		if len(page) > 7 {
			t.Fatalf("page of %d, limit 7", len(page))
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[len(page)-1].Seq
	}
	if len(paged) != n {
		t.Fatalf("paged: %d records, want %d", len(paged), n)
	}
	for i := range paged {
		if paged[i].Seq != all[i].Seq || paged[i].Reason != fmt.Sprint(i) {
			t.Fatalf("record %d: seq %d reason %q; want seq %d reason %d (no gap, no repeat)", i, paged[i].Seq, paged[i].Reason, all[i].Seq, i)
		}
	}
	since := T0.Add(30 * time.Second)
	tail, err := s.AuditPage(bg, since, 0, 100)
	if err != nil || len(tail) != 10 || !tail[0].At.Equal(since) {
		t.Errorf("AuditPage since %v: %d records, %v; want the last 10 from it", since, len(tail), err)
	}
}

func executionsFilter(t *testing.T, s recovery.Store) {
	for i, st := range []recovery.State{recovery.PendingApproval, recovery.Rejected, recovery.PendingApproval, recovery.Succeeded} {
		x := Execution(fmt.Sprintf("01%c", 'A'+i), st, T0.Add(time.Duration(i)*time.Minute))
		if i == 3 {
			x.Runbook = "restart-pod"
		}
		mustAccept(t, s, Accepted(fmt.Sprint("ev-", i), x))
	}
	cases := []struct {
		f    recovery.ExecutionFilter
		want []string
	}{
		{recovery.ExecutionFilter{}, []string{"01D", "01C", "01B", "01A"}},
		{recovery.ExecutionFilter{State: recovery.PendingApproval}, []string{"01C", "01A"}},
		{recovery.ExecutionFilter{Runbook: "restart-pod"}, []string{"01D"}},
		{recovery.ExecutionFilter{Since: T0.Add(time.Minute)}, []string{"01D", "01C", "01B"}},
		{recovery.ExecutionFilter{Limit: 2}, []string{"01D", "01C"}},
		{recovery.ExecutionFilter{State: recovery.PendingApproval, Limit: 1}, []string{"01C"}},
	}
	for _, c := range cases {
		xs, err := s.Executions(bg, c.f)
		var got []string
		for _, x := range xs {
			got = append(got, x.ID)
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Executions(%+v): got %v, %v; want %v", c.f, got, err, c.want)
		}
	}
}

func settings(t *testing.T, s recovery.Store) {
	if _, err := s.Setting(bg, "paused"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("unset: got %v, want ErrNotFound", err)
	}
	for _, v := range [][]byte{[]byte("true"), []byte("false"), {}} {
		if err := s.PutSetting(bg, "paused", v); err != nil {
			t.Fatalf("PutSetting: %v", err)
		}
		got, err := s.Setting(bg, "paused")
		if err != nil || string(got) != string(v) {
			t.Errorf("Setting: got %q, %v; want %q", got, err, v)
		}
	}
	if _, err := s.Setting(bg, "pause"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("a prefix of a set key: got %v, want ErrNotFound", err)
	}
}

func cancelledCtx(t *testing.T, s recovery.Store) {
	mustAccept(t, s, Accepted("ev-1", Execution("01A", recovery.PendingApproval, T0)))
	ctx, cancel := context.WithCancel(bg)
	cancel()
	audit, outbox := counts(t, s)
	writes := map[string]error{
		"Accept": s.Accept(ctx, Accepted("ev-2", Execution("01B", recovery.PendingApproval, T0))),
		"Transition": func() error {
			_, err := s.Transition(ctx, approve("01A"))
			return err
		}(),
		"Record":     s.Record(ctx, []recovery.AuditRecord{{Actor: "a"}}, []recovery.Notification{{Kind: "notice", Text: "x"}}),
		"AckOutbox":  s.AckOutbox(ctx, 1),
		"DeadLetter": s.DeadLetter(ctx, 1, "x"),
		"PutSetting": s.PutSetting(ctx, "k", []byte("v")),
	}
	for name, err := range writes {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: got %v, want context.Canceled", name, err)
		}
	}
	if a, o := counts(t, s); a != audit || o != outbox {
		t.Errorf("after cancelled writes: %d audit, %d outbox; want %d, %d", a, o, audit, outbox)
	}
	if _, err := s.EventRecord(bg, "ev-2"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("cancelled Accept's event: got %v, want ErrNotFound", err)
	}
	if x, err := s.Execution(bg, "01A"); err != nil || x.State != recovery.PendingApproval {
		t.Errorf("cancelled Transition: %s, %v; want PENDING_APPROVAL", x.State, err)
	}
	if _, err := s.Setting(bg, "k"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("cancelled PutSetting: got %v, want ErrNotFound", err)
	}
}
