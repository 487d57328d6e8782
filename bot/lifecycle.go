package bot

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// lifecycle is Serve's teardown: each component registers how to stop it as
// soon as it has started, and stop runs those in the reverse order (last
// started, first stopped), so every error path and the normal shutdown tear
// down exactly what was built. Modelled on alertmanager's app/lifecycle.go.
type lifecycle struct {
	stops []namedStop
}

type namedStop struct {
	name string
	f    func(context.Context) error
}

// onStop pushes f; name says what failed to stop in the error.
func (l *lifecycle) onStop(name string, f func(context.Context) error) {
	l.stops = append(l.stops, namedStop{name, f})
}

// stop runs every registered function, last first, each once, even after one
// fails; the errors are joined.
func (l *lifecycle) stop(ctx context.Context) error {
	var errs []error
	for i := len(l.stops) - 1; i >= 0; i-- {
		s := l.stops[i]
		if err := s.f(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", s.name, err))
		}
	}
	l.stops = nil
	return errors.Join(errs...)
}

// background is a goroutine that can be stopped (cancel, then wait) before
// or after it starts: its stop can be registered where the teardown order
// needs it, ahead of the start.
type background struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs f on its own context, never on a request's or Serve's.
func (b *background) start(f func(context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.mu.Lock()
	b.cancel, b.done = cancel, done
	b.mu.Unlock()
	go func() {
		defer close(done)
		f(ctx)
	}()
}

// stop cancels f and waits for it to return; a no-op when it never started.
func (b *background) stop(context.Context) error {
	b.mu.Lock()
	cancel, done := b.cancel, b.done
	b.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-done
	return nil
}
