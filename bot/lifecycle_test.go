package bot

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestLifecycleStopsInReverseAndJoinsErrors(t *testing.T) {
	var got []string
	l := &lifecycle{}
	boom := errors.New("boom")
	for _, name := range []string{"db", "drivers", "engine", "http"} {
		l.onStop(name, func(context.Context) error {
			got = append(got, name)
			if name == "drivers" || name == "http" {
				return boom
			}
			return nil
		})
	}
	err := l.stop(context.Background())
	if want := []string{"http", "engine", "drivers", "db"}; !slices.Equal(got, want) {
		t.Errorf("stop order: got %v, want %v", got, want)
	}
	if !errors.Is(err, boom) || err.Error() != "stop http: boom\nstop drivers: boom" {
		t.Errorf("error: got %q, want both failures, last started first", err)
	}
	if err := l.stop(context.Background()); err != nil || len(got) != 4 {
		t.Errorf("second stop: got %v and %d calls, want nothing run again", err, len(got))
	}
}

func TestBackgroundStopBeforeAndAfterStart(t *testing.T) {
	var b background
	if err := b.stop(context.Background()); err != nil {
		t.Fatalf("stop before start: %v", err)
	}
	ran := make(chan struct{})
	var sawCancel bool
	b.start(func(ctx context.Context) {
		close(ran)
		<-ctx.Done()
		sawCancel = true
	})
	<-ran
	if err := b.stop(context.Background()); err != nil || !sawCancel {
		t.Errorf("stop: %v, cancelled and returned: %t", err, sawCancel)
	}
}
