package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Courier drains the outbox to a Notifier: new plans first, then each
// execution's notifications in sequence order, several executions at once,
// each notice alone in its place (drain). A notification is removed only after the notifier accepted it; on
// error the courier waits (backoff, or the notifier's RetryAfter) and retries
// the same one, so nothing is lost and order is kept. A notifier must make redelivery harmless (the Slack
// notifier keys messages by execution and outbox seq).
//
// A notification the notifier refuses for good (its error is Permanent), or
// that failed MaxAttempts times in a row, is dead-lettered (Store.DeadLetter:
// kept, with the reason, out of the outbox), logged and reported to
// OnDeadLetter, so it never blocks the ones behind it. Only the peer's answers
// about the notification itself are attempts. Waits the notifier asks for
// (RetryAfter: a 429, a refused token) and outages (Unavailable: no
// connection, a timeout, a 5xx) are not: the courier waits (backoff) and
// retries the same notification, so when all of Slack is unavailable nothing
// is given up, however long it lasts.
type Courier struct {
	Store    Store
	Notifier Notifier
	Wake     <-chan struct{}
	Log      *slog.Logger
	// Poll bounds how long a notification written by another path waits.
	Poll time.Duration
	// MaxAttempts is how many failed deliveries in a row dead-letter a
	// notification (default DefaultMaxAttempts).
	MaxAttempts int
	// OnDeadLetter, when set, is told of each dead letter (for metrics).
	OnDeadLetter func(n Notification, reason string)

	scanned uint64 // the outbox seq up to which drain looked for new plans
}

// DefaultMaxAttempts: with the backoff (250 ms doubling to 30 s) about eight
// minutes of failures before a notification is given up.
const DefaultMaxAttempts = 20

// RetryAfter is implemented by notifier errors that know when to retry.
type RetryAfter interface{ RetryAfter() time.Duration }

// Unavailable is implemented by notifier errors that say the peer could not
// be reached or did not answer (a transport error, a timeout, a 5xx): they say
// nothing about the notification, so they never count towards MaxAttempts.
type Unavailable interface{ Unavailable() bool }

// Permanent is implemented by notifier errors that say whether a retry of the
// same notification can ever succeed (Slack's invalid_blocks, msg_too_long,
// channel_not_found, …).
type Permanent interface{ Permanent() bool }

// Run delivers until ctx ends.
func (c *Courier) Run(ctx context.Context) {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	poll := c.Poll
	if poll == 0 {
		poll = 2 * time.Second
	}
	maxAttempts := c.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	backoff := time.Duration(0)
	var failedSeq uint64 // the notification the last attempts failed on
	attempts := 0
	for {
		n, failed, err := c.drain(ctx)
		if err != nil {
			wait := nextBackoff(backoff)
			var ra RetryAfter
			asked := errors.As(err, &ra) && ra.RetryAfter() > 0
			if asked {
				wait = ra.RetryAfter()
			}
			var u Unavailable
			down := errors.As(err, &u) && u.Unavailable()
			if failed != nil && !asked && !down {
				if failed.Seq != failedSeq {
					failedSeq, attempts = failed.Seq, 0
				}
				attempts++
				var p Permanent
				permanent := errors.As(err, &p) && p.Permanent()
				if permanent || attempts >= maxAttempts {
					reason := err.Error()
					if !permanent {
						reason = fmt.Sprintf("%d attempts failed, the last: %v", attempts, err)
					}
					derr := c.Store.DeadLetter(ctx, failed.Seq, reason)
					if derr == nil {
						log.Error("notification cannot be delivered: dead-lettered, see `recoverbot deadletters`",
							"seq", failed.Seq, "plan", failed.ExecutionID, "kind", failed.Kind, "err", err)
						if c.OnDeadLetter != nil {
							c.OnDeadLetter(*failed, reason)
						}
						failedSeq, attempts, backoff = 0, 0, 0
						continue
					}
					err = errors.Join(err, derr) // retried: the next failure dead-letters it
				}
			}
			backoff = wait
			log.Warn("notification delivery failed; retrying", "in", wait, "err", err)
			if !sleep(ctx, wait) {
				return
			}
			continue
		}
		backoff = 0
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-c.Wake:
		case <-time.After(poll):
		}
	}
}

// Backoff bounds of the courier's retries.
const (
	backoffFirst = 250 * time.Millisecond
	backoffMax   = 30 * time.Second
)

// nextBackoff doubles prev, never past backoffMax (250 ms … 16 s, then 30 s).
func nextBackoff(prev time.Duration) time.Duration {
	if prev <= 0 {
		return backoffFirst
	}
	return min(prev*2, backoffMax)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// courierLanes is how many executions' notifications the courier delivers
// at once.
const courierLanes = 8

// Outbox reads: a page is what one drain delivers in order; a scan, read
// with it from where the last one ended, is where the drain finds new plans
// to announce first.
const (
	pageSize    = 100
	scanSize    = 1000
	scanReads   = 20
	maxAnnounce = 100 // new plans a drain delivers
	ackChunk    = 100 // notifications per AckOutbox (a store write has limits)
)

// drain delivers one page of the outbox; it returns how many it delivered and,
// when the notifier failed, the notification it failed on (the first in
// outbox order).
//
// New plans are announced first: a person can act on a plan only once its
// message is in the channel, and in an alert storm the outbox fills with
// steps and state changes of plans already announced. So every plan
// notification written since the last scan (up to scanReads×scanSize
// notifications further, at most maxAnnounce a drain) is delivered before
// anything else. A plan notification is always its execution's first
// (written with the plan at intake), so nothing of its own thread is
// overtaken, and its message shows the plan as it stands at delivery; what it
// overtakes is other plans' threads and channel notices.
//
// Then the page: order matters within a plan's thread, not between plans. The
// page is cut at each notice (Notification.IsNotice), which is delivered
// alone, after everything before it and before everything after it; between
// notices, each execution's notifications go in order in their own lane, up
// to courierLanes lanes at once, so one plan's steps never hold back another
// plan's, and the notifier's delivery records of concurrent lanes share the
// store's group commits. A lane stops at its first failure, and nothing after
// the segment holding a failure is tried. The delivered notifications leave
// the outbox in one Store.AckOutbox per ackChunk: a write or two per drain,
// not one per notification. A crash before that ack delivers them again,
// which the notifier makes harmless (see Courier).
func (c *Courier) drain(ctx context.Context) (int, *Notification, error) {
	// Up to scanReads reads a drain: a new leader, or one that fell behind,
	// reaches the newest plans at once, and later scans read only what is new.
	var plans []Notification
	from := c.scanned
	for range scanReads {
		scan, err := c.Store.Outbox(ctx, from, scanSize)
		if err != nil {
			return 0, nil, err
		}
		full := false
		for _, n := range scan {
			if full = len(plans) == maxAnnounce; full {
				break // the rest at the next drain
			}
			if n.Kind == NotePlan && !n.IsNotice() {
				plans = append(plans, n)
			}
			from = n.Seq
		}
		if full || len(scan) < scanSize {
			break
		}
	}
	done, failed, ferr := c.deliverSegment(ctx, plans)
	c.scanned = from
	for _, n := range plans {
		if !slices.Contains(done, n.Seq) {
			c.scanned = n.Seq - 1 // scanned again from the first not delivered
			break
		}
	}
	var page []Notification
	if ferr == nil {
		if page, ferr = c.Store.Outbox(ctx, 0, pageSize); ferr == nil {
			page = slices.DeleteFunc(page, func(n Notification) bool { return slices.Contains(done, n.Seq) })
		}
	}
	for len(page) > 0 && ferr == nil {
		seg := page[:1]
		if !page[0].IsNotice() {
			end := 1
			for end < len(page) && !page[end].IsNotice() {
				end++
			}
			seg = page[:end]
		}
		page = page[len(seg):]
		d, f, err := c.deliverSegment(ctx, seg)
		done = append(done, d...)
		failed, ferr = f, err
	}
	for chunk := range slices.Chunk(done, ackChunk) {
		if aerr := c.Store.AckOutbox(ctx, chunk...); aerr != nil {
			return len(done), failed, errors.Join(ferr, aerr)
		}
	}
	return len(done), failed, ferr
}

// deliverSegment delivers notifications with no notice among them (or a
// single notice), one lane per execution. It returns the seqs delivered and,
// if any lane failed, the failure first in outbox order.
func (c *Courier) deliverSegment(ctx context.Context, seg []Notification) ([]uint64, *Notification, error) {
	lanes := map[string][]Notification{}
	var order []string
	for _, n := range seg {
		if _, ok := lanes[n.ExecutionID]; !ok {
			order = append(order, n.ExecutionID)
		}
		lanes[n.ExecutionID] = append(lanes[n.ExecutionID], n)
	}
	type result struct {
		done   []uint64
		failed *Notification
		err    error
	}
	results := make([]result, len(order))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(courierLanes, len(order)) {
		wg.Go(func() {
			for i := range work {
				r := &results[i]
				r.done, r.failed, r.err = c.deliverLane(ctx, lanes[order[i]])
			}
		})
	}
	for i := range order {
		work <- i
	}
	close(work)
	wg.Wait()
	var done []uint64
	var failed *Notification
	var ferr error
	for _, r := range results {
		done = append(done, r.done...)
		if r.failed != nil && (failed == nil || r.failed.Seq < failed.Seq) {
			failed, ferr = r.failed, r.err
		} else if r.failed == nil && r.err != nil {
			ferr = errors.Join(ferr, r.err)
		}
	}
	return done, failed, ferr
}

// deliverLane delivers one execution's notifications in order, stopping at
// the first that fails. Each gets the execution as it stands now (read once
// for a LaneNotifier, which takes them all at once).
func (c *Courier) deliverLane(ctx context.Context, notes []Notification) ([]uint64, *Notification, error) {
	current := func(n Notification) (*Execution, error) {
		if n.ExecutionID == "" {
			return nil, nil
		}
		x, err := c.Store.Execution(ctx, n.ExecutionID)
		switch {
		case err == nil:
			return &x, nil
		case errors.Is(err, ErrNotFound):
			return nil, nil
		}
		return nil, err
	}
	var done []uint64
	if ln, ok := c.Notifier.(LaneNotifier); ok && len(notes) > 1 {
		x, err := current(notes[0])
		if err != nil {
			return nil, nil, err
		}
		k, err := ln.NotifyLane(ctx, notes, x)
		k = min(max(k, 0), len(notes))
		for _, n := range notes[:k] {
			done = append(done, n.Seq)
		}
		if err != nil && k < len(notes) {
			return done, &notes[k], err
		}
		return done, nil, err
	}
	for i, n := range notes {
		x, err := current(n)
		if err != nil {
			return done, nil, err
		}
		if err := c.Notifier.Notify(ctx, n, x); err != nil {
			return done, &notes[i], err
		}
		done = append(done, n.Seq)
	}
	return done, nil, nil
}

// LogNotifier is the offline notifier: every notification becomes a log line.
type LogNotifier struct{ Log *slog.Logger }

// Notify implements Notifier.
func (l LogNotifier) Notify(_ context.Context, n Notification, _ *Execution) error {
	l.Log.Info(n.Text, "component", "notify", "kind", n.Kind, "plan", n.ExecutionID, "seq", n.Seq)
	return nil
}
