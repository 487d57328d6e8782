package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/internal/testutil"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/recovery/promcheck"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
)

// promServer is Debian's prometheus on a loopback port, scraping the given
// targets every 250ms.
type promServer struct {
	url string
	cmd *exec.Cmd
}

func startPrometheus(t *testing.T, targets ...string) *promServer {
	t.Helper()
	bin := testutil.Binary(t, "prometheus", "prometheus")
	dir := t.TempDir()
	var jobs strings.Builder
	for i, tg := range targets {
		fmt.Fprintf(&jobs, "  - job_name: job%d\n    static_configs: [{targets: [%q]}]\n", i, tg)
	}
	conf := "global: {scrape_interval: 250ms, evaluation_interval: 250ms}\nscrape_configs:\n" + jobs.String()
	if err := os.WriteFile(filepath.Join(dir, "p.yml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreePort(t)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "p.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &promServer{url: "http://" + addr, cmd: cmd}
	t.Cleanup(p.stop)
	waitHTTP(t, p.url+"/-/ready")
	return p
}

func (p *promServer) stop() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// waitHTTP polls until url answers 200: waiting for another process to come up,
// not for our own work.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became ready: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promValue polls an instant query until cond holds on its first sample.
func (p *promServer) waitValue(t *testing.T, query string, cond func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := "no answer"
	for {
		resp, err := http.Get(p.url + "/api/v1/query?query=" + url.QueryEscape(query))
		if err == nil {
			var r struct {
				Data struct {
					Result []struct {
						Value []any `json:"value"`
					} `json:"result"`
				} `json:"data"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if len(r.Data.Result) > 0 && len(r.Data.Result[0].Value) == 2 {
				s, _ := r.Data.Result[0].Value[1].(string)
				v, _ := strconv.ParseFloat(s, 64)
				last = s
				if cond(v) {
					return v
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: condition never held (last %s)", query, last)
		}
		time.Sleep(250 * time.Millisecond) // one scrape interval
	}
}

// exporter serves one gauge whose value the test flips.
type exporter struct {
	errors atomic.Int64
	srv    *httptest.Server
}

func newExporter(t *testing.T, initial int64) *exporter {
	e := &exporter{}
	e.errors.Store(initial)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "# TYPE shop_errors gauge\nshop_errors{upstream=\"payments\"} %d\nshop_errors{upstream=\"search\"} %d\n", e.errors.Load(), e.errors.Load())
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// observed wraps the real Prometheus client and calls hook after each check.
type observed struct {
	*promcheck.Client
	mu   sync.Mutex
	hook func(healthy bool, value string, err error)
}

func (o *observed) Check(ctx context.Context, q string) (bool, string, error) {
	h, v, err := o.Client.Check(ctx, q)
	o.mu.Lock()
	hook := o.hook
	o.mu.Unlock()
	if hook != nil {
		hook(h, v, err)
	}
	return h, v, err
}

const verifiedBreaker = `
name: breaker-verified
trigger: {eventType: CIRCUIT_BREAKER_CANDIDATE, conditions: {confidence: {min: 0.5}}}
actions:
  - type: CIRCUIT_BREAKER
    operation: OPEN
    parameters: {service: "{{upstream}}", halfOpenRequests: 3}
safety: {requiresApproval: false, maxExecutionsPerHour: 50, cooldown: 1ms}
verify:
  prometheus: 'shop_errors{upstream="{{upstream}}"} < 1'
  within: %s
  every: 250ms
`

func TestVerificationAgainstRealPrometheus(t *testing.T) {
	exp := newExporter(t, 5)
	// The bot's own /metrics is scraped by the same Prometheus.
	botLn := httptest.NewUnstartedServer(nil)
	prom := startPrometheus(t, strings.TrimPrefix(exp.srv.URL, "http://"), botLn.Listener.Addr().String())
	client, err := promcheck.New(prom.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := &observed{Client: client}

	run := func(within string) (*recovery.Engine, *store.DB, *logdriver.Driver) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), fmt.Appendf(nil, verifiedBreaker, within), 0o600); err != nil {
			t.Fatal(err)
		}
		books, err := runbooks.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkVerifyQueries(context.Background(), books, client.Validate, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatalf("a valid query refused: %v", err)
		}
		db, err := store.Open(filepath.Join(t.TempDir(), "bot.db"))
		if err != nil {
			t.Fatal(err)
		}
		drv := logdriver.New(nil)
		cfg := recovery.DefaultConfig()
		cfg.Mode, cfg.Verifier = recovery.ModeFull, v
		m := NewMetrics(outboxDepth(db))
		cfg.Observer = m
		eng := recovery.New(cfg, db, books, drv.All())
		if err := eng.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = eng.Close(context.Background()); _ = db.Close() })
		if botLn.Config.Handler == nil {
			botLn.Config.Handler = (&API{Engine: eng, Log: slog.New(slog.DiscardHandler), Metrics: m}).Handler()
			botLn.Start()
			t.Cleanup(botLn.Close)
		}
		return eng, db, drv
	}
	state := func(db *store.DB, id string) recovery.Execution {
		x, err := db.Execution(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	ev := recovery.Event{Type: runbooks.CircuitBreakerCandidate, Severity: runbooks.Warning, Confidence: 0.9,
		Context: map[string]any{"upstream": "payments"}}

	t.Run("flips to healthy: VERIFIED", func(t *testing.T) {
		prom.waitValue(t, `shop_errors{upstream="payments"}`, func(f float64) bool { return f == 5 })
		eng, db, _ := run("30s")
		var once sync.Once
		v.mu.Lock()
		v.hook = func(healthy bool, _ string, err error) {
			if !healthy && err == nil {
				once.Do(func() { exp.errors.Store(0) }) // the recovery "works" after the first unhealthy check
			}
		}
		v.mu.Unlock()
		a, err := eng.Submit(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		settle(t, eng)
		x := state(db, a.PlanID)
		if x.State != recovery.Verified || !strings.Contains(x.LastVerify, `shop_errors{`) {
			t.Fatalf("state %s last %q, want VERIFIED with the sample seen", x.State, x.LastVerify)
		}
		// The bot's own /metrics, scraped by the same Prometheus, moved.
		prom.waitValue(t, `recoverbot_executions_total{state="VERIFIED"}`, func(f float64) bool { return f >= 1 })
		prom.waitValue(t, `sum(recoverbot_events_received_total)`, func(f float64) bool { return f >= 1 })
	})

	t.Run("stays unhealthy: rolled back", func(t *testing.T) {
		v.mu.Lock()
		v.hook = nil
		v.mu.Unlock()
		exp.errors.Store(7)
		prom.waitValue(t, `shop_errors{upstream="payments"}`, func(f float64) bool { return f == 7 })
		eng, db, drv := run("1500ms")
		a, _ := eng.Submit(context.Background(), ev)
		settle(t, eng)
		x := state(db, a.PlanID)
		if x.State != recovery.RolledBack || !x.FalseAction || len(drv.Calls()) != 2 {
			t.Fatalf("state %s false %v calls %d, want ROLLED_BACK after failed verification", x.State, x.FalseAction, len(drv.Calls()))
		}
	})

	t.Run("invalid query refused at start-up", func(t *testing.T) {
		dir := t.TempDir()
		bad := strings.Replace(fmt.Sprintf(verifiedBreaker, "1s"), `< 1'`, `< 1 +'`, 1)
		if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		books, err := runbooks.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		err = checkVerifyQueries(context.Background(), books, client.Validate, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "rb.yaml") || !strings.Contains(err.Error(), "verify.prometheus") {
			t.Fatalf("err %v, want the runbook's file and verify.prometheus named", err)
		}
	})

	t.Run("prometheus stopped: unavailable, not success", func(t *testing.T) {
		prom.stop()
		eng, db, drv := run("1s")
		a, _ := eng.Submit(context.Background(), ev)
		settle(t, eng)
		x := state(db, a.PlanID)
		if x.State != recovery.VerifyFailed || !strings.Contains(x.LastVerify, "verification unavailable") {
			t.Fatalf("state %s last %q, want VERIFY_FAILED: verification unavailable", x.State, x.LastVerify)
		}
		if len(drv.Calls()) != 1 {
			t.Errorf("%d driver calls: an unknown answer must not roll back on its own", len(drv.Calls()))
		}
	})
}

func settle(t *testing.T, eng *recovery.Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := eng.Idle(ctx); err != nil {
		t.Fatal(err)
	}
}
