package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/kube"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
)

// A time-boxed action: set DEGRADED_MODE (which the deployment does not have)
// for 60 seconds. The runbook is auto (no approval) so the test needs no human.
const timeboxRunbook = `name: degraded-mode-for-a-minute
description: Switch the deployment to degraded mode for a minute
trigger:
  eventType: CAPACITY_WARNING
  conditions:
    confidence: {min: 0.80}
actions:
  - type: SCALE_RESOURCE
    resource: DEGRADED_MODE
    target: {namespace: recoverbot-test, deployment: DEPLOYMENT}
    parameters: {to: 1}
    duration: 60
safety:
  requiresApproval: false
  maxExecutionsPerHour: 5
estimatedRecoveryTime: 1
`

// bot is the engine of one bot process: bbolt in dir, a fresh kube driver
// (nothing in memory carries over a restart), the shared manual clock.
type bot struct {
	db  *store.DB
	eng *recovery.Engine
}

func startBot(t *testing.T, c *cluster, dbPath string, books *runbooks.Set, clock recovery.Clock) *bot {
	t.Helper()
	db, err := store.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := recovery.DefaultConfig()
	cfg.Mode = recovery.ModeFull
	cfg.Clock = clock
	drv := kube.New(c.bot, c.ns)
	eng := recovery.New(cfg, db, books, recovery.DriverMap{runbooks.ScaleResource: drv})
	if err := eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &bot{db: db, eng: eng}
}

func (b *bot) stop(t *testing.T) {
	t.Helper()
	if err := b.eng.Close(context.Background()); err != nil {
		t.Errorf("engine close: %v", err)
	}
	if err := b.db.Close(); err != nil {
		t.Errorf("store close: %v", err)
	}
}

func (b *bot) idle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	if err := b.eng.Idle(ctx); err != nil {
		t.Fatal(err)
	}
}

func (b *bot) execution(t *testing.T, id string) recovery.Execution {
	t.Helper()
	x, err := b.db.Execution(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestTimeBoxedActionRevertsAcrossRestart: the engine applies a time-boxed
// action through the kube driver, the bot restarts (a new process: new store
// handle, new driver), and the persisted rollback fires on time and restores
// the deployment exactly, after the deployment controller's status writes.
func TestTimeBoxedActionRevertsAcrossRestart(t *testing.T) {
	c := connect(t)
	name := unique("timeboxed")
	c.deployment(t, c.ns, name, 2)
	orig := c.observed(t, name)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "timebox.yaml"), []byte(strings.ReplaceAll(timeboxRunbook, "DEPLOYMENT", name)), 0o600); err != nil {
		t.Fatal(err)
	}
	books, err := runbooks.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Second)
	clock := recovery.NewManualClock(t0)
	dbPath := filepath.Join(t.TempDir(), "bot.db")

	b := startBot(t, c, dbPath, books, clock)
	answer, err := b.eng.Submit(t.Context(), recovery.Event{Type: runbooks.CapacityWarning, Severity: runbooks.Warning,
		Confidence: 0.9, Summary: "overloaded", Source: "api"})
	if err != nil {
		t.Fatal(err)
	}
	if answer.Decision != recovery.DecideAuto {
		t.Fatalf("decision %s %v, want auto", answer.Decision, answer.Reasons)
	}
	b.idle(t)
	x := b.execution(t, answer.PlanID)
	if x.State != recovery.Succeeded || !x.RollbackAt.Equal(t0.Add(60*time.Second)) {
		t.Fatalf("state %s, rollback at %s (error %q), want SUCCEEDED with a rollback at +60s", x.State, x.RollbackAt, x.Error)
	}
	if v, ok := env(c.get(t, name), "app", "DEGRADED_MODE"); !ok || v != "1" {
		t.Fatalf("after the action DEGRADED_MODE is %q (set %v), want 1", v, ok)
	}
	b.stop(t)

	c.observed(t, name) // the controller wrote status since: resourceVersion moved
	b = startBot(t, c, dbPath, books, clock)
	defer b.stop(t)
	clock.Advance(59 * time.Second)
	b.idle(t)
	if got := b.execution(t, answer.PlanID).State; got != recovery.Succeeded {
		t.Fatalf("1 s before the time: %s", got)
	}
	if _, ok := env(c.get(t, name), "app", "DEGRADED_MODE"); !ok {
		t.Fatal("reverted before its time")
	}
	clock.Advance(time.Second)
	b.idle(t)
	x = b.execution(t, answer.PlanID)
	if x.State != recovery.RolledBack {
		t.Fatalf("at the time: %s (error %q), want ROLLED_BACK", x.State, x.Error)
	}
	sameTemplate(t, "after the time-boxed action ended", c.get(t, name), orig.Spec.Template)
}
