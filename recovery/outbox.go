package recovery

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Courier drains the outbox to a Notifier in sequence order. A notification is
// removed only after the notifier accepted it; on error the courier waits
// (backoff, or the notifier's RetryAfter) and retries the same one, so nothing is
// lost and order is kept. A notifier must make redelivery harmless (the Slack
// notifier keys messages by execution and outbox seq).
type Courier struct {
	Store    Store
	Notifier Notifier
	Wake     <-chan struct{}
	Log      *slog.Logger
	// Poll bounds how long a notification written by another path waits.
	Poll time.Duration
}

// RetryAfter is implemented by notifier errors that know when to retry.
type RetryAfter interface{ RetryAfter() time.Duration }

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
	backoff := time.Duration(0)
	for {
		n, err := c.drain(ctx)
		if err != nil {
			wait := nextBackoff(backoff)
			var ra RetryAfter
			if errors.As(err, &ra) && ra.RetryAfter() > 0 {
				wait = ra.RetryAfter()
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

// drain delivers one page of the outbox; it returns how many it delivered.
func (c *Courier) drain(ctx context.Context) (int, error) {
	page, err := c.Store.Outbox(ctx, 0, 100)
	if err != nil {
		return 0, err
	}
	for i, n := range page {
		var x *Execution
		if n.ExecutionID != "" {
			got, err := c.Store.Execution(ctx, n.ExecutionID)
			if err == nil {
				x = &got
			} else if !errors.Is(err, ErrNotFound) {
				return i, err
			}
		}
		if err := c.Notifier.Notify(ctx, n, x); err != nil {
			return i, err
		}
		if err := c.Store.AckOutbox(ctx, n.Seq); err != nil {
			return i, err
		}
	}
	return len(page), nil
}

// LogNotifier is the offline notifier: every notification becomes a log line.
type LogNotifier struct{ Log *slog.Logger }

// Notify implements Notifier.
func (l LogNotifier) Notify(_ context.Context, n Notification, _ *Execution) error {
	l.Log.Info(n.Text, "component", "notify", "kind", n.Kind, "plan", n.ExecutionID, "seq", n.Seq)
	return nil
}
