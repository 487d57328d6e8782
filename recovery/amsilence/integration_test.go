package amsilence_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/internal/testutil"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/amsilence"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
)

// Two actions, so a failure of the second rolls the first back.
const poolRunbook = `name: pool-and-breaker
trigger:
  eventType: LATENCY_ANOMALY
  conditions:
    cause: DATABASE
actions:
  - type: SCALE_RESOURCE
    resource: DB_POOL_SIZE
    target: {deployment: api-gateway}
    parameters: {from: 20, to: 50}
  - type: CIRCUIT_BREAKER
    operation: OPEN
    parameters: {service: orders, duration: 60}
    duration: 60
safety:
  requiresApproval: false
  maxExecutionsPerHour: 100
verify:
  prometheus: 'pg_pool_free > 0'
  within: 1m
  every: 1s
`

// startAlertmanager runs the real Alertmanager on loopback until the test
// ends and returns its URL once it is ready.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	bin := testutil.Binary(t, "prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
	dir := t.TempDir()
	conf := "route:\n  receiver: none\nreceivers:\n  - name: none\n"
	if err := os.WriteFile(filepath.Join(dir, "am.yml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreePort(t)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "am.yml"), "--storage.path="+dir,
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	u := "http://" + addr
	waitFor(t, "Alertmanager ready on "+addr, func() bool {
		resp, err := http.Get(u + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return u
}

// waitFor polls cond until it holds, or fails the test after 30 s: the
// condition is what the test waits on, the poll interval only how often it
// looks.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// amSilence is a silence as GET /api/v2/silences shows it.
type amSilence struct {
	ID        string                 `json:"id"`
	Status    struct{ State string } `json:"status"`
	Matchers  []amsilence.Matcher    `json:"matchers"`
	CreatedBy string                 `json:"createdBy"`
	Comment   string                 `json:"comment"`
	StartsAt  time.Time              `json:"startsAt"`
	EndsAt    time.Time              `json:"endsAt"`
}

// silencesOf lists Alertmanager's silences whose comment names plan id.
func silencesOf(t *testing.T, amURL, plan string) []amSilence {
	t.Helper()
	resp, err := http.Get(amURL + "/api/v2/silences")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var all []amSilence
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatal(err)
	}
	var out []amSilence
	for _, s := range all {
		if strings.HasSuffix(s.Comment, "plan "+plan) {
			out = append(out, s)
		}
	}
	return out
}

// gate holds a driver call until the test opens it.
type gate struct {
	entered chan struct{}
	open    chan struct{}
	once    sync.Once
}

func newGate() *gate { return &gate{entered: make(chan struct{}, 1), open: make(chan struct{})} }

func (g *gate) hold() {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.open
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func (g *gate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the driver was never called")
	}
}

// gatedUndo is the log driver with an undo held by a gate.
type gatedUndo struct {
	*logdriver.Driver
	g *gate
}

func (d gatedUndo) Undo(ctx context.Context, a runbooks.Action, before json.RawMessage, r recovery.Reporter) error {
	d.g.hold()
	return d.Driver.Undo(ctx, a, before, r)
}

// gatedVerifier answers healthy once its gate opens.
type gatedVerifier struct{ g *gate }

func (v gatedVerifier) Check(context.Context, string) (bool, string, error) {
	v.g.hold()
	return true, "1", nil
}

// countingSilencer counts the expiries asked of the real client.
type countingSilencer struct {
	recovery.Silencer
	mu sync.Mutex
	n  int
}

func (c *countingSilencer) Expire(ctx context.Context, id string) error {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.Silencer.Expire(ctx, id)
}

func (c *countingSilencer) expires() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

type bot struct {
	eng *recovery.Engine
	db  *store.DB
}

// startBot opens the store at path and starts an engine in full mode with
// the pool runbook, the given drivers and silencer (without a Verifier,
// verification is skipped: SUCCEEDED ends the execution).
func startBot(t *testing.T, path string, drivers recovery.DriverMap, s recovery.Silencer, mode recovery.Mode, opts ...func(*recovery.Config)) *bot {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(poolRunbook), 0o600); err != nil {
		t.Fatal(err)
	}
	books, err := runbooks.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := recovery.DefaultConfig()
	cfg.Mode, cfg.Silencer = mode, s
	for _, o := range opts {
		o(&cfg)
	}
	eng := recovery.New(cfg, db, books, drivers)
	if err := eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := &bot{eng: eng, db: db}
	t.Cleanup(b.stop)
	return b
}

func (b *bot) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = b.eng.Close(ctx)
	_ = b.db.Close()
}

var alertLabels = map[string]string{"alertname": "DBPoolExhausted", "event_type": "LATENCY_ANOMALY",
	"severity": "warning", "cause": "DATABASE", "instance": "db-1:5432"}

// submitAlert submits the event Alertmanager's webhook makes of an alert
// with alertLabels (bot/alertmanager.go) and returns its plan's id.
func (b *bot) submitAlert(t *testing.T, labels map[string]string) string {
	t.Helper()
	a, err := b.eng.Submit(context.Background(), recovery.Event{Type: "LATENCY_ANOMALY", Severity: runbooks.Warning,
		Confidence: 0.9, Source: recovery.SourceAlertmanager, Fingerprint: "a1b2c3",
		Context: map[string]any{"cause": "DATABASE"}, Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	if a.PlanID == "" {
		t.Fatalf("no plan: %+v", a)
	}
	return a.PlanID
}

func (b *bot) exec(t *testing.T, id string) recovery.Execution {
	t.Helper()
	x, err := b.db.Execution(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// audit is the execution's audit trail, one reason a line.
func (b *bot) audit(t *testing.T, id string) string {
	t.Helper()
	recs, err := b.db.Audit(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range recs {
		lines = append(lines, r.Reason)
	}
	return strings.Join(lines, "\n")
}

// activeSilence waits until the plan's silence is active in Alertmanager and
// recorded on the execution, and checks it is the alert's own.
func activeSilence(t *testing.T, b *bot, amURL, plan string) amSilence {
	t.Helper()
	var s []amSilence
	waitFor(t, "an active silence for plan "+plan, func() bool {
		s = silencesOf(t, amURL, plan)
		return len(s) == 1 && s[0].Status.State == "active" && b.exec(t, plan).Silence != nil
	})
	got := s[0]
	var want []amsilence.Matcher
	for k, v := range alertLabels {
		want = append(want, amsilence.Matcher{Name: k, Value: v, IsEqual: true})
	}
	slices.SortFunc(want, func(a, b amsilence.Matcher) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(got.Matchers, func(a, b amsilence.Matcher) int { return strings.Compare(a.Name, b.Name) })
	if !slices.Equal(got.Matchers, want) {
		t.Errorf("matchers %+v, want %+v", got.Matchers, want)
	}
	if got.CreatedBy != "recoverbot" {
		t.Errorf("createdBy %q, want recoverbot", got.CreatedBy)
	}
	if want := "recoverbot is remediating pool-and-breaker: plan " + plan; got.Comment != want {
		t.Errorf("comment %q, want %q", got.Comment, want)
	}
	if d := got.EndsAt.Sub(got.StartsAt); d > recovery.DefaultSilenceMax+time.Second || d < recovery.DefaultSilenceMax-time.Minute {
		t.Errorf("silence lasts %s (%s..%s), want at most the maximum %s", d, got.StartsAt, got.EndsAt, recovery.DefaultSilenceMax)
	}
	x := b.exec(t, plan)
	if x.Silence.ID != got.ID || x.Silence.EndsAt.Sub(got.EndsAt).Abs() >= time.Millisecond { // Alertmanager keeps milliseconds
		t.Errorf("execution holds silence %+v, Alertmanager has %s until %s", *x.Silence, got.ID, got.EndsAt)
	}
	return got
}

// expiredSilence waits until the plan's silence is expired in Alertmanager
// and settled on the execution, with its creation and expiry audited.
func expiredSilence(t *testing.T, b *bot, amURL, plan string) {
	t.Helper()
	waitFor(t, "the silence of plan "+plan+" expired and settled", func() bool {
		s := silencesOf(t, amURL, plan)
		x := b.exec(t, plan)
		return len(s) == 1 && s[0].Status.State == "expired" && x.Silence != nil && x.Silence.Settled
	})
	trail := b.audit(t, plan)
	for _, want := range []string{"Alertmanager silence " + b.exec(t, plan).Silence.ID + " created until",
		"Alertmanager silence " + b.exec(t, plan).Silence.ID + " expired"} {
		if !strings.Contains(trail, want) {
			t.Errorf("audit trail lacks %q:\n%s", want, trail)
		}
	}
}

// TestSilenceWhileRemediating runs the engine against the real Alertmanager:
// the alert is silenced, with its own labels as exact matchers, while its
// execution runs, and the silence is expired when the execution ends.
func TestSilenceWhileRemediating(t *testing.T) {
	amURL := startAlertmanager(t)
	client, err := amsilence.New(amURL, nil)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("success: silenced while executing, expired once it succeeded", func(t *testing.T) {
		g := newGate()
		defer g.release()
		drv := logdriver.New(nil)
		drv.Block = func(context.Context, runbooks.Action) { g.hold() }
		b := startBot(t, filepath.Join(t.TempDir(), "bot.db"), drv.All(), client, recovery.ModeFull)
		plan := b.submitAlert(t, alertLabels)
		g.waitEntered(t)
		activeSilence(t, b, amURL, plan)
		if x := b.exec(t, plan); x.State != recovery.Executing {
			t.Fatalf("state %s while the action is held, want EXECUTING", x.State)
		}
		g.release()
		expiredSilence(t, b, amURL, plan)
		if x := b.exec(t, plan); x.State != recovery.Succeeded {
			t.Errorf("state %s, want SUCCEEDED", x.State)
		}
	})

	t.Run("verification: silenced while VERIFYING, expired once VERIFIED", func(t *testing.T) {
		verify := newGate()
		defer verify.release()
		b := startBot(t, filepath.Join(t.TempDir(), "bot.db"), logdriver.New(nil).All(), client, recovery.ModeFull,
			func(c *recovery.Config) { c.Verifier = gatedVerifier{verify} })
		plan := b.submitAlert(t, alertLabels)
		verify.waitEntered(t)
		activeSilence(t, b, amURL, plan)
		if x := b.exec(t, plan); x.State != recovery.Verifying {
			t.Fatalf("state %s while the check is held, want VERIFYING", x.State)
		}
		verify.release()
		expiredSilence(t, b, amURL, plan)
		if x := b.exec(t, plan); x.State != recovery.Verified {
			t.Errorf("state %s, want VERIFIED", x.State)
		}
	})

	t.Run("failure and rollback: silenced until ROLLED_BACK", func(t *testing.T) {
		g := newGate()
		defer g.release()
		drv := logdriver.New(nil)
		drv.FailApply = func(a runbooks.Action) error {
			if a.Type == runbooks.CircuitBreaker {
				return fmt.Errorf("gateway said no")
			}
			return nil
		}
		drivers := drv.All()
		drivers[runbooks.ScaleResource] = gatedUndo{drv, g}
		b := startBot(t, filepath.Join(t.TempDir(), "bot.db"), drivers, client, recovery.ModeFull)
		plan := b.submitAlert(t, alertLabels)
		g.waitEntered(t) // the undo of action 1 runs: ROLLING_BACK
		activeSilence(t, b, amURL, plan)
		if x := b.exec(t, plan); x.State != recovery.RollingBack {
			t.Fatalf("state %s while the undo is held, want ROLLING_BACK", x.State)
		}
		g.release()
		expiredSilence(t, b, amURL, plan)
		if x := b.exec(t, plan); x.State != recovery.RolledBack {
			t.Errorf("state %s, want ROLLED_BACK", x.State)
		}
	})

	t.Run("restart mid-execution: INTERRUPTED at start-up, silence expired", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bot.db")
		g := newGate()
		defer g.release()
		drv := logdriver.New(nil)
		drv.Block = func(context.Context, runbooks.Action) { g.hold() } // deaf to the shutdown: the bot "dies" mid-call
		b := startBot(t, path, drv.All(), client, recovery.ModeFull)
		plan := b.submitAlert(t, alertLabels)
		g.waitEntered(t)
		activeSilence(t, b, amURL, plan)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_ = b.eng.Close(ctx) // gives up on the held action
		cancel()
		if err := b.db.Close(); err != nil {
			t.Fatal(err)
		}
		if s := silencesOf(t, amURL, plan); s[0].Status.State != "active" {
			t.Fatalf("silence %s before the restart, want active", s[0].Status.State)
		}
		b = startBot(t, path, logdriver.New(nil).All(), client, recovery.ModeFull)
		expiredSilence(t, b, amURL, plan)
		if x := b.exec(t, plan); x.State != recovery.Interrupted {
			t.Errorf("state %s after the restart, want INTERRUPTED", x.State)
		}
	})

	t.Run("restart after the end: a silence Alertmanager did not expire is expired at start-up", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bot.db")
		target, _ := url.Parse(amURL)
		proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(target))
		defer proxy.Close()
		viaProxy, err := amsilence.New(proxy.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		g := newGate()
		defer g.release()
		drv := logdriver.New(nil)
		drv.Block = func(context.Context, runbooks.Action) { g.hold() }
		b := startBot(t, path, drv.All(), viaProxy, recovery.ModeFull)
		plan := b.submitAlert(t, alertLabels)
		g.waitEntered(t)
		activeSilence(t, b, amURL, plan)
		proxy.Close() // Alertmanager is unreachable when the execution ends
		g.release()
		waitFor(t, "the failed expiry in the audit trail", func() bool {
			return strings.Contains(b.audit(t, plan), "not expired: cannot reach Alertmanager at "+proxy.URL)
		})
		if x := b.exec(t, plan); x.State != recovery.Succeeded || x.Silence.Settled {
			t.Fatalf("state %s, silence %+v: want SUCCEEDED with the silence not settled", x.State, x.Silence)
		}
		if s := silencesOf(t, amURL, plan); s[0].Status.State != "active" {
			t.Fatalf("silence %s, want still active", s[0].Status.State)
		}
		b.stop()
		b = startBot(t, path, logdriver.New(nil).All(), client, recovery.ModeFull)
		expiredSilence(t, b, amURL, plan)
	})

	t.Run("restart after the maximum: the silence ended on its own, nothing is asked of Alertmanager", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bot.db")
		g := newGate()
		defer g.release()
		drv := logdriver.New(nil)
		drv.Block = func(context.Context, runbooks.Action) { g.hold() }
		b := startBot(t, path, drv.All(), client, recovery.ModeFull)
		plan := b.submitAlert(t, alertLabels)
		g.waitEntered(t)
		s := activeSilence(t, b, amURL, plan)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_ = b.eng.Close(ctx) // the bot dies mid-call ...
		cancel()
		if err := b.db.Close(); err != nil {
			t.Fatal(err)
		}
		// ... and comes back after the silence's end.
		later := recovery.NewManualClock(s.EndsAt.Add(time.Minute))
		counted := &countingSilencer{Silencer: client}
		b = startBot(t, path, logdriver.New(nil).All(), counted, recovery.ModeFull,
			func(c *recovery.Config) { c.Clock = later })
		waitFor(t, "the silence settled", func() bool { x := b.exec(t, plan); return x.Silence.Settled })
		if err := b.eng.Idle(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := counted.expires(); n != 0 {
			t.Errorf("%d expiry calls for a silence past its end, want none", n)
		}
		if trail := b.audit(t, plan); !strings.Contains(trail, "Alertmanager silence "+s.ID+" ended on its own at") {
			t.Errorf("audit trail does not say the silence ended on its own:\n%s", trail)
		}
	})

	t.Run("no labels: no silence, audited; the remediation goes on", func(t *testing.T) {
		b := startBot(t, filepath.Join(t.TempDir(), "bot.db"), logdriver.New(nil).All(), client, recovery.ModeFull)
		plan := b.submitAlert(t, nil)
		waitFor(t, "the plan to succeed", func() bool { return b.exec(t, plan).State == recovery.Succeeded })
		waitFor(t, "the refusal in the audit trail", func() bool {
			return strings.Contains(b.audit(t, plan), "silence not created: the alert has no labels")
		})
		if s := silencesOf(t, amURL, plan); len(s) != 0 || b.exec(t, plan).Silence != nil {
			t.Errorf("silences %+v for an alert without labels", s)
		}
	})

	t.Run("hostile label: no silence, audited", func(t *testing.T) {
		b := startBot(t, filepath.Join(t.TempDir(), "bot.db"), logdriver.New(nil).All(), client, recovery.ModeFull)
		plan := b.submitAlert(t, map[string]string{"alertname": "x", "a=~\".*\"": "y"})
		waitFor(t, "the refusal in the audit trail", func() bool {
			return strings.Contains(b.audit(t, plan), "silence not created: label name")
		})
		if s := silencesOf(t, amURL, plan); len(s) != 0 {
			t.Errorf("silences %+v for a hostile label name", s)
		}
	})

	t.Run("Alertmanager down: no silence, audited; the remediation goes on", func(t *testing.T) {
		down, err := amsilence.New("http://"+testutil.FreePort(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		b := startBot(t, filepath.Join(t.TempDir(), "bot.db"), logdriver.New(nil).All(), down, recovery.ModeFull)
		plan := b.submitAlert(t, alertLabels)
		waitFor(t, "the plan to succeed and the refusal to be audited", func() bool {
			return b.exec(t, plan).State == recovery.Succeeded && strings.Contains(b.audit(t, plan), "silence not created: cannot reach Alertmanager at")
		})
	})

	t.Run("dry run: no silence, and the audit says so", func(t *testing.T) {
		b := startBot(t, filepath.Join(t.TempDir(), "bot.db"), logdriver.New(nil).All(), client, recovery.ModeDryRun)
		plan := b.submitAlert(t, alertLabels)
		if x := b.exec(t, plan); x.State != recovery.DryRun {
			t.Fatalf("state %s, want DRY_RUN", x.State)
		}
		if err := b.eng.Idle(context.Background()); err != nil {
			t.Fatal(err)
		}
		if trail := b.audit(t, plan); !strings.Contains(trail, "no Alertmanager silence: a dry run changes nothing") {
			t.Errorf("audit trail does not say why there is no silence:\n%s", trail)
		}
		if s := silencesOf(t, amURL, plan); len(s) != 0 {
			t.Errorf("silences %+v for a dry run", s)
		}
	})
}
