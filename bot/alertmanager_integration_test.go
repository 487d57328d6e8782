package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/internal/testutil"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
)

// TestRealAlertmanager runs Debian's prometheus-alertmanager on loopback with a
// webhook receiver pointed at the intake, posts an alert through its API, and
// checks that its re-sends make one plan and its resolved notification cancels it.
func TestRealAlertmanager(t *testing.T) {
	bin := testutil.Binary(t, "prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")

	books, err := runbooks.LoadDefaults()
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(t.TempDir(), "bot.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := recovery.DefaultConfig()
	cfg.Mode = recovery.ModeFull
	eng := recovery.New(cfg, db, books, logdriver.New(nil).All())
	if err := eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	api := &API{Engine: eng, AlertmanagerConfidence: 0.5, Log: slog.New(slog.DiscardHandler)}

	// Every webhook delivery is announced (after it was handled) on deliveries.
	type delivery struct {
		status string
		code   int
	}
	deliveries := make(chan delivery, 100)
	h := api.Handler()
	intake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		var p struct{ Status string }
		_ = json.Unmarshal(body, &p)
		deliveries <- delivery{p.Status, rec.Code}
	}))
	defer intake.Close()

	dir := t.TempDir()
	conf := fmt.Sprintf(`route:
  receiver: recoverbot
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1s
receivers:
  - name: recoverbot
    webhook_configs:
      - url: %s/v1/alertmanager
        send_resolved: true
`, intake.URL)
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
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	amURL := "http://" + addr
	post := func(endsAt time.Time) {
		t.Helper()
		alert := map[string]any{
			"labels":      alertLabels,
			"annotations": map[string]string{"summary": "api-gateway memory at 95%", "confidence": "0.9", "utilization": "95"},
			"startsAt":    startsAt.Format(time.RFC3339),
		}
		if !endsAt.IsZero() {
			alert["endsAt"] = endsAt.Format(time.RFC3339)
		}
		b, _ := json.Marshal([]any{alert})
		// Alertmanager takes a moment to listen: retry the first post until ready.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for {
			req, _ := http.NewRequestWithContext(ctx, "POST", amURL+"/api/v2/alerts", bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
				t.Fatalf("alertmanager answered %d", resp.StatusCode)
			}
			select {
			case <-ctx.Done():
				t.Fatalf("alertmanager never listened on %s: %v", addr, err)
			case <-time.After(100 * time.Millisecond): // waiting for a process to bind, not for our own work
			}
		}
	}
	wait := func(status string, n int) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for seen := 0; seen < n; {
			select {
			case d := <-deliveries:
				if d.code != 200 {
					t.Fatalf("intake answered %d to a %s delivery", d.code, d.status)
				}
				if d.status == status {
					seen++
				}
			case <-timeout:
				t.Fatalf("saw fewer than %d %s deliveries", n, status)
			}
		}
	}

	post(time.Time{})
	wait("firing", 3) // the first delivery and at least two re-sends
	xs, err := db.Executions(context.Background(), recovery.ExecutionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(xs) != 1 || xs[0].State != recovery.PendingApproval || xs[0].Runbook != "restart-pod-memory-leak" {
		t.Fatalf("executions %+v: want exactly one restart-pod plan awaiting approval", xs)
	}
	// Every label, as sent, is kept for the silence while it is remediated.
	if got := xs[0].Event.Labels; !maps.Equal(got, alertLabels) {
		t.Errorf("event labels %v, want the alert's %v", got, alertLabels)
	}

	post(time.Now().Add(-time.Second)) // endsAt in the past: the alert resolves
	wait("resolved", 1)
	x, err := db.Execution(context.Background(), xs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if x.State != recovery.Cancelled {
		t.Fatalf("after resolve: %s, want CANCELLED", x.State)
	}
	all, _ := db.Executions(context.Background(), recovery.ExecutionFilter{})
	if len(all) != 1 {
		t.Errorf("%d executions, want 1: a resolved alert never starts a runbook", len(all))
	}
}

var alertLabels = map[string]string{"alertname": "MemoryHigh", "event_type": "CAPACITY_WARNING",
	"severity": "warning", "resourceType": "MEMORY"}

var startsAt = time.Now().Add(-time.Minute).Truncate(time.Second)
