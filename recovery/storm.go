package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Storm handling. An alert storm must cost one plan and one message, not one per
// event: duplicates fold into their plan (Repeats) and announce the count at most
// every RepeatNoticeEvery; suppressed plans are not announced one by one but in a
// summary at most every SuppressSummaryEvery. The blast-radius breaker stops all
// automatic execution when too much happens at once.

const settingBreaker = "breaker"

// breakerState is the persisted breaker: open while Reason is set.
type breakerState struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// ClosedAt is when resume last closed it: the windows count from there.
	ClosedAt time.Time `json:"closed_at,omitzero"`
}

// repeatMark is what noteRepeat changed, for unnoteRepeat.
type repeatMark struct {
	plan       string
	noted      bool // it announced the count now
	prevNoted  time.Time
	prevSeen   bool
	prevRepeat bool // the plan had a repeat count before
}

// noteRepeat counts a duplicate of plan and decides whether it should
// announce the count now; called with e.mu held. It returns the notification
// to add, or nil, and what it changed.
func (e *Engine) noteRepeat(plan string, now time.Time) (*Notification, *repeatMark) {
	n, had := e.repeats[plan]
	n++
	e.repeats[plan] = n
	last, seen := e.repeatNoted[plan]
	m := &repeatMark{plan: plan, prevNoted: last, prevSeen: seen, prevRepeat: had}
	if seen && now.Sub(last) < e.cfg.RepeatNoticeEvery {
		// Throttled: make sure the count is announced once more when the window
		// ends, so a storm that stops leaves the final count on the message.
		if !e.repeatTrailing[plan] {
			e.repeatTrailing[plan] = true
			e.clock.AfterFunc(last.Add(e.cfg.RepeatNoticeEvery).Sub(now), func() { e.trailingRepeat(plan) })
		}
		return nil, m
	}
	e.repeatNoted[plan] = now
	m.noted = true
	return &Notification{At: now, ExecutionID: plan, Kind: NoteRepeats,
		Text: fmt.Sprintf("🔁 seen %d more time(s) since it was planned", n)}, m
}

// unnoteRepeat takes back a repeat whose record was never committed; called
// with e.mu held. A trailing announcement it armed finds the count as it was.
func (e *Engine) unnoteRepeat(m *repeatMark) {
	n, ok := e.repeats[m.plan]
	if !ok {
		return // the plan closed meanwhile: its counters are gone
	}
	if n--; n > 0 || m.prevRepeat {
		e.repeats[m.plan] = n
	} else {
		delete(e.repeats, m.plan)
	}
	if m.noted {
		if m.prevSeen {
			e.repeatNoted[m.plan] = m.prevNoted
		} else {
			delete(e.repeatNoted, m.plan)
		}
	}
}

// forgetRepeats drops a closed plan's repeat counters (memory stays bounded).
func (e *Engine) forgetRepeats(plan string) {
	delete(e.repeats, plan)
	delete(e.repeatNoted, plan)
	delete(e.repeatTrailing, plan)
}

// trailingRepeat announces the count at the end of a throttled window.
func (e *Engine) trailingRepeat(plan string) {
	e.mu.Lock()
	n, open := e.repeats[plan]
	delete(e.repeatTrailing, plan)
	if open {
		e.repeatNoted[plan] = e.clock.Now()
	}
	e.mu.Unlock()
	if !open {
		return // the plan closed meanwhile: its final state says enough
	}
	x, err := e.store.Execution(e.ctx, plan)
	if err != nil {
		return
	}
	if _, err := e.transition(e.ctx, Transition{ID: plan, From: []State{x.State}, To: x.State,
		Actor: ActorBot, Reason: fmt.Sprintf("%d repeated event(s) folded in", n),
		Outbox: []Notification{{Kind: NoteRepeats, Text: fmt.Sprintf("🔁 seen %d more time(s) since it was planned", n)}}}); err != nil {
		var m *MoveError
		if !errors.As(err, &m) {
			e.log.Warn("announce repeats", "plan", plan, "err", err)
		}
	}
}

// suppressedListMax bounds the plans a suppression summary names one by one:
// a storm of thousands must still fit one readable message (the rest are
// counted as "+N more"; every plan is in the audit trail and `recoverbot
// executions --state SUPPRESSED`).
const suppressedListMax = 10

// suppressedBatch is what the next suppression summary says: counts per
// "runbook: reason", and the first suppressedListMax plans, each naming what
// was not done (event type, targets) and the plan id to look it up.
type suppressedBatch struct {
	counts map[string]int
	lines  []string
	more   int
}

// noteSuppressed queues a suppressed plan for the next summary; called with
// e.mu held. The first one in a quiet period arms the flush timer.
func (e *Engine) noteSuppressed(x *Execution) {
	b := &e.suppressedBatch
	if len(b.counts) == 0 {
		e.clock.AfterFunc(e.cfg.SuppressSummaryEvery, e.flushSuppressed)
	}
	reason := ""
	if len(x.Reasons) > 0 {
		reason = x.Reasons[0]
	}
	b.counts[x.Runbook+": "+reason]++
	if len(b.lines) == suppressedListMax {
		b.more++
		return
	}
	targets := "no target"
	if len(x.Targets) > 0 {
		targets = strings.Join(x.Targets, ", ")
	}
	b.lines = append(b.lines, fmt.Sprintf("%s on %s not done: %s, plan %s", x.Event.Type, targets, x.Runbook, x.ID))
}

// flushSuppressed posts one summary of the plans suppressed since the last one.
// The plans themselves are audited one by one; only the announcement is folded.
func (e *Engine) flushSuppressed() {
	e.mu.Lock()
	batch := e.suppressedBatch
	e.suppressedBatch = suppressedBatch{counts: map[string]int{}}
	e.mu.Unlock()
	if len(batch.counts) == 0 {
		return
	}
	keys := make([]string, 0, len(batch.counts))
	total := 0
	for k, n := range batch.counts {
		keys = append(keys, k)
		total += n
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "🚫 %d plan(s) suppressed in the last %s:", total, e.cfg.SuppressSummaryEvery)
	for _, k := range keys {
		fmt.Fprintf(&b, "\n• %d × %s", batch.counts[k], k)
	}
	for _, l := range batch.lines {
		fmt.Fprintf(&b, "\n  – %s", l)
	}
	if batch.more > 0 {
		fmt.Fprintf(&b, "\n  +%d more (recoverbot executions --state SUPPRESSED)", batch.more)
	}
	now := e.clock.Now()
	if err := e.store.Record(e.ctx, nil, []Notification{{At: now, Kind: NoteNotice, Text: b.String()}}); err != nil {
		e.log.Error("post suppression summary", "err", err)
		return
	}
	e.poke()
}

// blastWindows are what the blast-radius breaker counts: automatic plans
// within BlastWindow and distinct targets failing within BlastTargetWindow.
// They are not written on their own: every planned proposal's creation is in
// the audit trail with its plan, and Start counts them back from there (since
// the breaker was last closed), so a restart never resets the count.
type blastWindows struct {
	autos   []time.Time          // automatic decisions, oldest first
	failing map[string]time.Time // target → last failure event
}

// wouldTrip says why the breaker would trip if a plan touching targets (as
// their drivers name them, Plan.Targets) were made now (auto: the guards would
// run it unattended), or "": when it would make more than BlastMaxTargets
// distinct targets failing within BlastTargetWindow, or be the
// (BlastMaxAuto+1)th automatic execution within BlastWindow. It changes
// nothing (Evaluate calls it too).
func (b *blastWindows) wouldTrip(targets []string, auto bool, now time.Time, cfg *Config) string {
	cut := now.Add(-cfg.BlastTargetWindow)
	n := 0
	for _, t := range b.failing {
		if !t.Before(cut) {
			n++
		}
	}
	for i, target := range targets {
		if t, ok := b.failing[target]; (!ok || t.Before(cut)) && !slices.Contains(targets[:i], target) {
			n++
		}
	}
	if n > cfg.BlastMaxTargets {
		return fmt.Sprintf("more than %d distinct targets failing within %s", cfg.BlastMaxTargets, cfg.BlastTargetWindow)
	}
	if auto && b.autosSince(now.Add(-cfg.BlastWindow)) >= cfg.BlastMaxAuto {
		return fmt.Sprintf("more than %d automatic executions within %s", cfg.BlastMaxAuto, cfg.BlastWindow)
	}
	return ""
}

func (b *blastWindows) autosSince(cut time.Time) int {
	return len(b.autos) - sort.Search(len(b.autos), func(i int) bool { return b.autos[i].After(cut) })
}

// blastMark is what record added, so a decision never committed can take it
// back (unrecord).
type blastMark struct {
	at   time.Time
	prev map[string]time.Time // target → its previous failure time; zero: it was not failing
	auto bool
}

// record counts a plan made for targets at now, dropping what left the
// windows. The failing set is bounded: past BlastMaxTargets+1 the breaker is
// open.
func (b *blastWindows) record(targets []string, auto bool, now time.Time, cfg *Config) *blastMark {
	cut := now.Add(-cfg.BlastTargetWindow)
	for k, t := range b.failing {
		if t.Before(cut) {
			delete(b.failing, k)
		}
	}
	m := &blastMark{at: now, prev: map[string]time.Time{}, auto: auto}
	for _, target := range targets {
		prev, ok := b.failing[target]
		if _, done := m.prev[target]; !done && (ok || len(b.failing) <= cfg.BlastMaxTargets) {
			m.prev[target] = prev
			b.failing[target] = now
		}
	}
	i := sort.Search(len(b.autos), func(i int) bool { return b.autos[i].After(now.Add(-cfg.BlastWindow)) })
	b.autos = b.autos[:copy(b.autos, b.autos[i:])]
	if auto {
		b.autos = append(b.autos, now)
	}
	return m
}

// unrecord takes back what record added (m), leaving what came since.
func (b *blastWindows) unrecord(m *blastMark) {
	for target, prev := range m.prev {
		switch t, ok := b.failing[target]; {
		case !ok || !t.Equal(m.at):
		case prev.IsZero():
			delete(b.failing, target)
		default:
			b.failing[target] = prev
		}
	}
	if !m.auto {
		return
	}
	for i := len(b.autos) - 1; i >= 0; i-- {
		if b.autos[i].Equal(m.at) {
			b.autos = slices.Delete(b.autos, i, i+1)
			return
		}
	}
}

// loadBlast counts the windows back from the audit trail: each plan's
// creation record (no From, a plan snapshot) made since the breaker was last
// closed and within its window.
func (e *Engine) loadBlast(ctx context.Context, now time.Time) error {
	since := now.Add(-max(e.cfg.BlastWindow, e.cfg.BlastTargetWindow))
	if e.breaker.ClosedAt.After(since) {
		since = e.breaker.ClosedAt
	}
	recs, err := e.store.AuditSince(ctx, since)
	if err != nil {
		return err
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].At.Before(recs[j].At) })
	for _, r := range recs {
		if r.Plan == nil || r.From != "" || r.Plan.TargetKey == "" || r.At.After(now) || !r.At.After(since) {
			continue
		}
		if r.At.After(now.Add(-e.cfg.BlastTargetWindow)) {
			for _, t := range blastTargets(&r.Plan.Plan) {
				e.blast.failing[t] = r.At
			}
		}
		if r.Plan.Decision == DecideAuto && r.At.After(now.Add(-e.cfg.BlastWindow)) {
			e.blast.autos = append(e.blast.autos, r.At)
		}
	}
	return nil
}

// blastTargets are what a plan counts as failing: the targets its drivers
// named. A plan stored before plans recorded them counts its TargetKey.
func blastTargets(p *Plan) []string {
	if len(p.Targets) > 0 {
		return p.Targets
	}
	return []string{p.TargetKey}
}

// trip opens the breaker (called with e.mu held) and returns the loud notice.
func (e *Engine) trip(reason string, now time.Time) Notification {
	e.breaker = breakerState{Reason: reason, At: now}
	return Notification{At: now, Kind: NoteNotice, Text: "🚨🚨 Blast-radius breaker tripped: " + reason +
		". ALL automatic execution is stopped: every plan now needs a human's approval until someone runs `resume`."}
}

// persistBreaker writes the breaker state so a restart keeps it open.
func (e *Engine) persistBreaker(ctx context.Context) error {
	e.mu.Lock()
	b := e.breaker
	e.mu.Unlock()
	return e.putBreaker(ctx, b)
}

func (e *Engine) putBreaker(ctx context.Context, b breakerState) error {
	v, _ := json.Marshal(b)
	return e.store.PutSetting(ctx, settingBreaker, v)
}

func (e *Engine) loadBreaker(ctx context.Context) error {
	v, err := e.store.Setting(ctx, settingBreaker)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(v, &e.breaker)
}

// Breaker returns why the blast-radius breaker is open, or "".
func (e *Engine) Breaker() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.breaker.Reason
}
