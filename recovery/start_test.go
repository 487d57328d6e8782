package recovery_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
)

// A restart after the approval deadlines of two pending plans passed: the
// first overdue expiry fires at once, in its own goroutine, while Start is
// still loading the second plan. Found by the crash loop (a "concurrent map
// read and map write" crash at start-up); under -race this test reports it if
// Start ever again writes its indexes while a timer can run.
func TestStartWithOverdueDeadlines(t *testing.T) {
	books, err := runbooks.LoadDefaults()
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := recovery.DefaultConfig()
	cfg.Mode = recovery.ModeFull
	drv := logdriver.New(nil)
	e1 := recovery.New(cfg, db, books, drv.All())
	if err := e1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 2 {
		a, err := e1.Submit(context.Background(), recovery.Event{Type: runbooks.UpstreamDegradation, Severity: runbooks.Critical, Confidence: 0.9,
			Context: map[string]any{"upstream": fmt.Sprintf("svc-%d", i), "backup_service": fmt.Sprintf("svc-%d-dr", i)}})
		if err != nil || a.Decision != recovery.DecideApproval {
			t.Fatal(a, err)
		}
		ids = append(ids, a.PlanID)
	}
	_ = e1.Close(context.Background())

	cfg.Clock = &eagerClock{shift: time.Hour} // the bot was down for an hour
	expired := make(chan struct{}, len(ids))
	cfg.Observer = moves{recovery.Expired: expired}
	e2 := recovery.New(cfg, db, books, drv.All())
	if err := e2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range ids {
		select {
		case <-expired:
		case <-time.After(10 * time.Second):
			t.Fatal("the overdue deadlines did not fire after the restart")
		}
	}
	for _, id := range ids {
		if x, _ := db.Execution(context.Background(), id); x.State != recovery.Expired {
			t.Errorf("%s: %s, want EXPIRED", id, x.State)
		}
	}
	_ = e2.Close(context.Background())
}

// eagerClock runs every timer at once in its own goroutine, each after the
// previous one finished: the overlap with the rest of Start is certain.
type eagerClock struct {
	shift time.Duration
	mu    sync.Mutex
	prev  chan struct{}
}

func (c *eagerClock) Now() time.Time { return time.Now().Add(c.shift) }

func (c *eagerClock) AfterFunc(_ time.Duration, f func()) func() bool {
	c.mu.Lock()
	prev := c.prev
	done := make(chan struct{})
	c.prev = done
	c.mu.Unlock()
	if prev != nil {
		<-prev
	}
	go func() { defer close(done); f() }()
	return func() bool { return false }
}
