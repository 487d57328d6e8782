package bot

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/store"
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

// Serve tears down what it built on an error after start-up began: the bbolt
// file is closed (opening it again would fail with ErrLocked otherwise) and
// the error names the cause.
func TestServeTearsDownOnStartupErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name, want string
		env        map[string]string
	}{
		{"slack without a channel (after the engine started)", "RECOVERBOT_SLACK_CHANNEL",
			map[string]string{"SLACK_BOT_TOKEN": "xoxb-x", "SLACK_APP_TOKEN": "xapp-x", "RECOVERBOT_LISTEN": "127.0.0.1:0"}},
		{"listen address in use (after delivery started)", "listen " + busy.Addr().String(),
			map[string]string{"RECOVERBOT_LISTEN": busy.Addr().String()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["RECOVERBOT_DATA"] = filepath.Join(t.TempDir(), "r.db")
			getenv := func(k string) string { return tt.env[k] }
			cfg, err := LoadConfig("", getenv)
			if err != nil {
				t.Fatal(err)
			}
			err = Serve(context.Background(), cfg, Options{Getenv: getenv, Log: testLogger(), Drivers: logdriver.New(nil).All()})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Serve = %v, want an error containing %q", err, tt.want)
			}
			db, err := store.Open(cfg.Data)
			if err != nil {
				t.Fatalf("the store after Serve failed: %v, want it closed", err)
			}
			_ = db.Close()
		})
	}
}
