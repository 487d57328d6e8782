package recovery_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
	"github.com/recoverbot/recoverbot/store/storetest"
)

// TestCourierAcksAPageInOneWrite: the courier takes the notifications it
// delivered out of the outbox in one write per page, and on a failure
// acknowledges every other one it delivered; the failed one stays in the
// outbox and is delivered again; nothing is delivered twice.
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

	if got := slices.Sorted(slices.Values(note.delivered)); !slices.Equal(got, []uint64{1, 2, 3, 4, 5, 6, 7}) {
		t.Errorf("delivered %v, want each of 1-7 once", note.delivered)
	}
	// Seven plans, seven lanes: the failure on seq 4 holds back only seq 4.
	if want := [][]uint64{{1, 2, 3, 5, 6, 7}, {4}}; !slices.EqualFunc(acks.writes, want, slices.Equal) {
		t.Errorf("acknowledgements %v, want %v", acks.writes, want)
	}
	if left, err := db.Outbox(ctx, 0, 10); err != nil || len(left) != 0 {
		t.Errorf("outbox after delivery: %v, %v; want it empty", left, err)
	}
}

// ackLog records each AckOutbox call's seqs (sorted), and ends the courier's
// run once want notifications were acknowledged.
type ackLog struct {
	recovery.Store
	mu     sync.Mutex
	writes [][]uint64
	acked  int
	want   int
	done   func()
}

func (a *ackLog) AckOutbox(ctx context.Context, seqs ...uint64) error {
	if err := a.Store.AckOutbox(ctx, seqs...); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(seqs) > 0 {
		a.writes = append(a.writes, slices.Sorted(slices.Values(seqs)))
	}
	if a.acked += len(seqs); a.acked >= a.want {
		a.done()
	}
	return nil
}

// flakyNotifier fails the first delivery of seq failOn.
type flakyNotifier struct {
	mu        sync.Mutex
	failOn    uint64
	failed    bool
	delivered []uint64
}

func (f *flakyNotifier) Notify(_ context.Context, n recovery.Notification, _ *recovery.Execution) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n.Seq == f.failOn && !f.failed {
		f.failed = true
		return errors.New("slack said no")
	}
	f.delivered = append(f.delivered, n.Seq)
	return nil
}

// memOutbox is an outbox in memory: what the courier reads and acknowledges.
type memOutbox struct {
	recovery.Store
	mu       sync.Mutex
	notes    []recovery.Notification
	acks     [][]uint64
	empty    func()         // called when the last one is acknowledged
	failExec map[string]int // reads of these executions fail so many times
}

func (m *memOutbox) Outbox(_ context.Context, after uint64, limit int) ([]recovery.Notification, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []recovery.Notification
	for _, n := range m.notes {
		if n.Seq > after && len(out) < limit {
			out = append(out, n)
		}
	}
	return out, nil
}

func (m *memOutbox) Execution(_ context.Context, id string) (recovery.Execution, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failExec[id] > 0 {
		m.failExec[id]--
		return recovery.Execution{}, errors.New("store unavailable")
	}
	return recovery.Execution{}, recovery.ErrNotFound
}

func (m *memOutbox) AckOutbox(_ context.Context, seqs ...uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notes = slices.DeleteFunc(m.notes, func(n recovery.Notification) bool { return slices.Contains(seqs, n.Seq) })
	if len(seqs) > 0 {
		m.acks = append(m.acks, slices.Sorted(slices.Values(seqs)))
	}
	if len(m.notes) == 0 {
		m.empty()
	}
	return nil
}

// orderNotifier checks, as each notification is delivered, the courier's
// promises: new plans first (announced), a plan's notifications in outbox
// order, a notice alone (everything before it and the announcements
// delivered, nothing after it started). Plan A's first notification waits
// until plan D's has been delivered: were plans delivered one after the
// other, it would wait in vain (and fail after 10 s).
type orderNotifier struct {
	mu           sync.Mutex
	failOn       uint64 // fails its first delivery
	failed       bool
	inFlight     int
	delivered    []recovery.Notification
	beforeNotice []uint64 // what must be delivered when the notice is
	announced    []uint64 // delivered before anything else
	dDone        chan struct{}
	problems     []string
}

func (o *orderNotifier) Notify(_ context.Context, n recovery.Notification, _ *recovery.Execution) error {
	o.mu.Lock()
	o.inFlight++
	var before []uint64
	for _, d := range o.delivered {
		before = append(before, d.Seq)
	}
	slices.Sort(before)
	if n.IsNotice() && (o.inFlight != 1 || !slices.Equal(before, o.beforeNotice)) {
		o.problems = append(o.problems, fmt.Sprintf("notice %d delivered with %d in flight after %v, want alone after %v", n.Seq, o.inFlight, before, o.beforeNotice))
	}
	if len(o.delivered) < len(o.announced) && !slices.Contains(o.announced, n.Seq) && !o.failed {
		o.problems = append(o.problems, fmt.Sprintf("%d delivered after only %v, before the new plans %v", n.Seq, before, o.announced))
	}
	o.mu.Unlock()
	if n.ExecutionID == "A" && n.Seq == 1 {
		select {
		case <-o.dDone:
		case <-time.After(10 * time.Second):
			o.mu.Lock()
			o.problems = append(o.problems, "plan A's first notification waited 10 s for plan D's: plans are not delivered side by side")
			o.mu.Unlock()
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inFlight--
	if n.Seq == o.failOn && !o.failed {
		o.failed = true
		return errors.New("slack said no")
	}
	o.delivered = append(o.delivered, n)
	if n.ExecutionID == "D" {
		close(o.dDone)
	}
	return nil
}

// TestCourierDeliversPlansSideBySide: new plans are announced first; then
// each plan's notifications arrive in order, different plans' side by side
// (one slow plan holds back no other plan's), and a notice alone, in its
// place. A failed notification holds back only the rest of its plan's and
// whatever follows the next notice; the retry delivers them, each once.
func TestCourierDeliversPlansSideBySide(t *testing.T) {
	page := []recovery.Notification{
		{Seq: 1, ExecutionID: "A", Kind: recovery.NoteStep}, {Seq: 2, ExecutionID: "B", Kind: recovery.NotePlan},
		{Seq: 3, ExecutionID: "D", Kind: recovery.NoteStep}, {Seq: 4, ExecutionID: "A", Kind: recovery.NoteStep},
		{Seq: 5, Kind: recovery.NoteNotice},
		{Seq: 6, ExecutionID: "B", Kind: recovery.NoteState}, {Seq: 7, ExecutionID: "C", Kind: recovery.NotePlan},
		{Seq: 8, ExecutionID: "A", Kind: recovery.NoteState}, {Seq: 9, ExecutionID: "C", Kind: recovery.NoteStep},
	}
	for _, c := range []struct {
		name   string
		failOn uint64
		acks   [][]uint64
	}{
		{"no failure", 0, [][]uint64{{1, 2, 3, 4, 5, 6, 7, 8, 9}}},
		// A fails on 4; D's 3 and the new plans are delivered; the notice
		// (5) and what follows wait.
		{"A's second fails once", 4, [][]uint64{{1, 2, 3, 7}, {4, 5, 6, 8, 9}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			out := &memOutbox{notes: slices.Clone(page), empty: stop}
			note := &orderNotifier{failOn: c.failOn, dDone: make(chan struct{}),
				beforeNotice: []uint64{1, 2, 3, 4, 7}, announced: []uint64{2, 7}}
			(&recovery.Courier{Store: out, Notifier: note}).Run(ctx)

			for _, p := range note.problems {
				t.Error(p)
			}
			per := map[string][]uint64{}
			for _, n := range note.delivered {
				per[n.ExecutionID] = append(per[n.ExecutionID], n.Seq)
			}
			want := map[string][]uint64{"A": {1, 4, 8}, "B": {2, 6}, "C": {7, 9}, "D": {3}, "": {5}}
			for id, seqs := range want {
				if !slices.Equal(per[id], seqs) {
					t.Errorf("plan %q got %v, want %v (in order, each once)", id, per[id], seqs)
				}
			}
			if !slices.EqualFunc(out.acks, c.acks, slices.Equal) {
				t.Errorf("acknowledgements %v, want %v", out.acks, c.acks)
			}
		})
	}
}

// seqRecorder records the order of deliveries; add, when set, is called with
// each notification before it is recorded.
type seqRecorder struct {
	mu        sync.Mutex
	delivered []uint64
	add       func(n recovery.Notification)
	failOnce  map[uint64]bool // these fail their first delivery
}

func (r *seqRecorder) Notify(_ context.Context, n recovery.Notification, _ *recovery.Execution) error {
	if r.add != nil {
		r.add(n)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failOnce[n.Seq] {
		delete(r.failOnce, n.Seq)
		return errors.New("slack said no")
	}
	r.delivered = append(r.delivered, n.Seq)
	return nil
}

// TestCourierAnnouncesNewPlansFirst: behind a backlog of one plan's steps
// longer than a scan, a new plan's message goes first; and a plan written while
// the backlog drains goes before the rest of it.
func TestCourierAnnouncesNewPlansFirst(t *testing.T) {
	const backlog = 2500 // more than one scan read
	var notes []recovery.Notification
	for i := range uint64(backlog) {
		notes = append(notes, recovery.Notification{Seq: i + 1, ExecutionID: "A", Kind: recovery.NoteStep})
	}
	notes = append(notes, recovery.Notification{Seq: backlog + 1, ExecutionID: "B", Kind: recovery.NotePlan})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	out := &memOutbox{notes: notes, empty: stop}
	rec := &seqRecorder{}
	rec.add = func(n recovery.Notification) {
		if n.Seq == 50 { // while the backlog drains, plan C is made
			out.mu.Lock()
			out.notes = append(out.notes, recovery.Notification{Seq: backlog + 2, ExecutionID: "C", Kind: recovery.NotePlan})
			out.mu.Unlock()
		}
	}
	(&recovery.Courier{Store: out, Notifier: rec}).Run(ctx)

	pos := func(seq uint64) int { return slices.Index(rec.delivered, seq) }
	if pos(backlog+1) != 0 {
		t.Errorf("plan B (seq %d) delivered at position %d, want first", backlog+1, pos(backlog+1))
	}
	// C was written during the first page (1-100): it goes right after it.
	if pos(backlog+2) != 101 {
		t.Errorf("plan C (seq %d) delivered at position %d, want 101 (right after the page it was written during)", backlog+2, pos(backlog+2))
	}
	if len(rec.delivered) != backlog+2 {
		t.Errorf("%d delivered, want %d", len(rec.delivered), backlog+2)
	}
	var a []uint64
	for _, s := range rec.delivered {
		if s <= backlog {
			a = append(a, s)
		}
	}
	if !slices.IsSorted(a) || len(a) != backlog {
		t.Errorf("plan A's steps out of order or missing: %v", a)
	}
}

// A storm of new plans: each is announced once, at most 100 a drain, and no
// acknowledgement is bigger than 100 (an etcd transaction holds at most 128
// operations).
func TestCourierAnnouncesAStormInBoundedWrites(t *testing.T) {
	var notes []recovery.Notification
	for i := range uint64(250) {
		notes = append(notes, recovery.Notification{Seq: i + 1, ExecutionID: fmt.Sprintf("P%03d", i), Kind: recovery.NotePlan})
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	out := &memOutbox{notes: notes, empty: stop}
	rec := &seqRecorder{}
	(&recovery.Courier{Store: out, Notifier: rec}).Run(ctx)
	if got := slices.Sorted(slices.Values(rec.delivered)); len(got) != 250 || len(slices.Compact(got)) != 250 {
		t.Errorf("delivered %d notifications, want each of the 250 plans once", len(rec.delivered))
	}
	for _, a := range out.acks {
		if len(a) > 100 {
			t.Errorf("an acknowledgement of %d notifications, want at most 100", len(a))
		}
	}
}

// New plans that could not be announced (a store read failed for one, Slack
// refused the other) are announced first at the next drain, still ahead of
// the backlog.
func TestCourierAnnouncesAgainWhatFailed(t *testing.T) {
	var notes []recovery.Notification
	for i := range uint64(300) {
		notes = append(notes, recovery.Notification{Seq: i + 1, ExecutionID: "S", Kind: recovery.NoteStep})
	}
	notes = append(notes, recovery.Notification{Seq: 301, ExecutionID: "A", Kind: recovery.NotePlan},
		recovery.Notification{Seq: 302, ExecutionID: "B", Kind: recovery.NotePlan})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	out := &memOutbox{notes: notes, empty: stop, failExec: map[string]int{"A": 1}}
	rec := &seqRecorder{failOnce: map[uint64]bool{302: true}}
	(&recovery.Courier{Store: out, Notifier: rec}).Run(ctx)
	if len(rec.delivered) != 302 || !slices.Equal(slices.Sorted(slices.Values(rec.delivered[:2])), []uint64{301, 302}) {
		t.Errorf("delivered first %v (of %d), want the plans 301 and 302 first", rec.delivered[:min(5, len(rec.delivered))], len(rec.delivered))
	}
}
