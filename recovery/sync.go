package recovery

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// tracker counts background work so Close and tests can wait for it to settle.
type tracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n == 0
}

func (t *tracker) init() {
	t.idle = make(chan struct{})
	close(t.idle)
}

func (t *tracker) add() {
	t.mu.Lock()
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 {
		close(t.idle)
	}
	t.mu.Unlock()
}

func (t *tracker) wait(ctx context.Context) error {
	for {
		t.mu.Lock()
		idle, n := t.idle, t.n
		t.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("%d background task(s) still running: %w", n, context.Cause(ctx))
		}
	}
}

// goWork runs f in the background on the engine's lifetime.
func (e *Engine) goWork(f func()) {
	e.work.add()
	go func() {
		defer e.work.done()
		f()
	}()
}

// arm schedules f(id) at the given time (now, if it passed) and remembers the
// timer so approval or rollback can disarm it. The time itself is persisted on
// the execution, so Start re-arms it after a restart.
func (e *Engine) arm(id string, at time.Time, f func(id string)) {
	stop := e.clock.AfterFunc(at.Sub(e.clock.Now()), func() {
		e.work.add()
		defer e.work.done()
		e.mu.Lock()
		delete(e.timers, id)
		e.mu.Unlock()
		f(id)
	})
	e.mu.Lock()
	if old, ok := e.timers[id]; ok {
		old()
	}
	e.timers[id] = stop
	e.mu.Unlock()
}

func (e *Engine) disarm(id string) {
	e.mu.Lock()
	stop, ok := e.timers[id]
	delete(e.timers, id)
	e.mu.Unlock()
	if ok {
		stop()
	}
}

// targetLocks makes sure two executions never act on the same target at once.
type targetLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed when released
}

func (l *targetLocks) init() { l.held = map[string]chan struct{}{} }

// acquire takes every key (sorted, so two callers can't deadlock) or gives up
// after wait with a reason naming the busy target.
func (l *targetLocks) acquire(ctx context.Context, keys []string, wait time.Duration) (func(), error) {
	keys = append([]string(nil), keys...)
	sort.Strings(keys)
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var got []string
	release := func() {
		l.mu.Lock()
		for _, k := range got {
			close(l.held[k])
			delete(l.held, k)
		}
		l.mu.Unlock()
	}
	for i, k := range keys {
		if i > 0 && keys[i-1] == k {
			continue
		}
		for {
			l.mu.Lock()
			ch, busy := l.held[k]
			if !busy {
				l.held[k] = make(chan struct{})
				got = append(got, k)
				l.mu.Unlock()
				break
			}
			l.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				release()
				return nil, fmt.Errorf("target %s is busy with another execution (waited %s)", k, wait)
			}
		}
	}
	return release, nil
}
