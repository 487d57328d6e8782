package recovery_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
)

// scripted answers verification checks from a list; the last answer repeats.
type scripted struct {
	mu      sync.Mutex
	answers []answer
	queries []string
}

type answer struct {
	healthy bool
	value   string
	err     error
}

func (s *scripted) Check(_ context.Context, q string) (bool, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries = append(s.queries, q)
	a := s.answers[0]
	if len(s.answers) > 1 {
		s.answers = s.answers[1:]
	}
	return a.healthy, a.value, a.err
}

const verifyRunbook = `
name: breaker-verified
trigger: {eventType: CIRCUIT_BREAKER_CANDIDATE, conditions: {confidence: {min: 0.5}}}
actions:
  - type: CIRCUIT_BREAKER
    operation: OPEN
    parameters: {service: "{{upstream}}", duration: 60}
safety: {requiresApproval: false, maxExecutionsPerHour: 50}
verify:
  prometheus: 'errors{upstream="{{upstream}}"} < 1'
  within: 300ms
  every: 20ms
`

// verifyEngine runs on the system clock: verification waits between checks, and
// each test's outcome does not depend on how fast the machine is.
func verifyEngine(t *testing.T, rb string, v recovery.Verifier) (*recovery.Engine, *store.DB, *logdriver.Driver) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "rb.yaml"), rb)
	books, err := runbooks.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	drv := logdriver.New(nil)
	cfg := recovery.DefaultConfig()
	cfg.Mode, cfg.Verifier, cfg.LockWait = recovery.ModeFull, v, time.Second
	eng := recovery.New(cfg, db, books, drv.All())
	if err := eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()); _ = db.Close() })
	return eng, db, drv
}

func breakerEvent(upstream string) recovery.Event {
	return recovery.Event{Type: runbooks.CircuitBreakerCandidate, Severity: runbooks.Warning, Confidence: 0.9,
		Context: map[string]any{"upstream": upstream}}
}

func settle(t *testing.T, eng *recovery.Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := eng.Idle(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestVerificationPassesWhenTheQueryTurnsHealthy(t *testing.T) {
	v := &scripted{answers: []answer{{false, "empty result", nil}, {false, "empty result", nil}, {true, `errors{upstream="payments"} = 0`, nil}}}
	eng, db, _ := verifyEngine(t, verifyRunbook, v)
	a, err := eng.Submit(context.Background(), breakerEvent("payments"))
	if err != nil {
		t.Fatal(err)
	}
	settle(t, eng)
	x, _ := db.Execution(context.Background(), a.PlanID)
	if x.State != recovery.Verified || x.VerifiedAt.IsZero() {
		t.Fatalf("state %s, want VERIFIED", x.State)
	}
	if v.queries[0] != `errors{upstream="payments"} < 1` {
		t.Errorf("query %q: want the event's upstream substituted", v.queries[0])
	}
	recs, _ := db.AuditSince(context.Background(), time.Time{})
	found := false
	for _, r := range recs {
		found = found || strings.Contains(r.Reason, "RECOVERY_SIGNAL")
	}
	if !found {
		t.Error("no RECOVERY_SIGNAL in the audit")
	}
}

func TestVerificationFailureRollsBack(t *testing.T) {
	v := &scripted{answers: []answer{{false, "empty result", nil}}}
	eng, db, drv := verifyEngine(t, verifyRunbook, v)
	a, _ := eng.Submit(context.Background(), breakerEvent("payments"))
	settle(t, eng)
	x, _ := db.Execution(context.Background(), a.PlanID)
	if x.State != recovery.RolledBack || !x.FalseAction {
		t.Fatalf("state %s false=%v, want ROLLED_BACK and a false action", x.State, x.FalseAction)
	}
	calls := drv.Calls()
	if len(calls) != 2 || calls[1].Op != "undo" {
		t.Fatalf("calls %+v, want apply then undo", calls)
	}
	recs, _ := db.Audit(context.Background(), a.PlanID)
	var why string
	for _, r := range recs {
		if r.To == recovery.VerifyFailed {
			why = r.Reason
		}
	}
	if !strings.Contains(why, "last value seen: empty result") {
		t.Errorf("VERIFY_FAILED reason %q: want the last value seen", why)
	}
}

func TestVerificationUnavailableIsNeverSuccess(t *testing.T) {
	v := &scripted{answers: []answer{{false, "", errors.New("prometheus unreachable: connection refused")}}}
	eng, db, drv := verifyEngine(t, verifyRunbook, v)
	a, _ := eng.Submit(context.Background(), breakerEvent("payments"))
	settle(t, eng)
	x, _ := db.Execution(context.Background(), a.PlanID)
	if x.State != recovery.VerifyFailed || !strings.Contains(x.LastVerify, "verification unavailable") {
		t.Fatalf("state %s last %q, want VERIFY_FAILED: verification unavailable", x.State, x.LastVerify)
	}
	if n := len(drv.Calls()); n != 1 {
		t.Errorf("%d driver calls, want 1: no automatic rollback on an unknown answer", n)
	}
}

func TestVerificationEscalates(t *testing.T) {
	v := &scripted{answers: []answer{{false, "empty result", nil}}}
	eng, db, drv := verifyEngine(t, strings.Replace(verifyRunbook, "every: 20ms", "every: 20ms\n  onVerifyFailure: escalate", 1), v)
	a, _ := eng.Submit(context.Background(), breakerEvent("payments"))
	settle(t, eng)
	x, _ := db.Execution(context.Background(), a.PlanID)
	if x.State != recovery.VerifyFailed || len(drv.Calls()) != 1 {
		t.Fatalf("state %s calls %d, want VERIFY_FAILED and no rollback", x.State, len(drv.Calls()))
	}
}

func TestVerificationSkippedWithoutPrometheus(t *testing.T) {
	eng, db, _ := verifyEngine(t, verifyRunbook, nil)
	a, _ := eng.Submit(context.Background(), breakerEvent("payments"))
	settle(t, eng)
	x, _ := db.Execution(context.Background(), a.PlanID)
	if x.State != recovery.Succeeded {
		t.Fatalf("state %s, want SUCCEEDED (not VERIFIED)", x.State)
	}
	recs, _ := db.Audit(context.Background(), a.PlanID)
	if !strings.Contains(recs[len(recs)-1].Reason, "verification skipped") {
		t.Errorf("last audit %q: want verification skipped", recs[len(recs)-1].Reason)
	}
}

func TestVerifyQueryValueIsEscapedOrRefused(t *testing.T) {
	eng, _, _ := verifyEngine(t, verifyRunbook, &scripted{answers: []answer{{true, "x", nil}}})
	a, err := eng.Submit(context.Background(), breakerEvent(`pay"} or vector(1) #`))
	if err != nil {
		t.Fatal(err)
	}
	if a.Decision != recovery.DecideRefused {
		t.Fatalf("decision %s, want refused: a quote must never reach a PromQL matcher", a.Decision)
	}
}

func TestMarkFalse(t *testing.T) {
	eng, db, _ := verifyEngine(t, verifyRunbook, &scripted{answers: []answer{{true, "ok", nil}}})
	a, _ := eng.Submit(context.Background(), breakerEvent("payments"))
	settle(t, eng)
	if _, err := eng.MarkFalse(context.Background(), a.PlanID, "alice"); err != nil {
		t.Fatal(err)
	}
	x, _ := db.Execution(context.Background(), a.PlanID)
	if !x.FalseAction || x.FalseBy != "alice" || x.State != recovery.Verified {
		t.Fatalf("%+v: want marked false by alice, state unchanged", x)
	}
}
