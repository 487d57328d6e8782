package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/internal/testutil"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/amsilence"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
)

// TestRealAlertmanagerSilence is the whole loop with the real Alertmanager:
// an alert reaches the intake through Alertmanager's webhook, its
// execution (configured as serve configures it, RECOVERBOT_ALERTMANAGER_URL
// set) silences that alert in the same Alertmanager with the labels it sent,
// and the silence is expired once the execution ended.
func TestRealAlertmanagerSilence(t *testing.T) {
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
	addr := testutil.FreePort(t)
	amURL := "http://" + addr

	cfg := DefaultConfig()
	cfg.Mode, cfg.AlertmanagerURL = "full", amURL
	log := slog.New(slog.DiscardHandler)
	ecfg, err := engineConfig(context.Background(), cfg, books, Options{Getenv: func(string) string { return "" }, Log: log},
		NewMetrics(func() float64 { return 0 }))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ecfg.Silencer.(*amsilence.Client); !ok || ecfg.SilenceMax != recovery.DefaultSilenceMax {
		t.Fatalf("silencer %T, max %s: want Alertmanager's, %s", ecfg.Silencer, ecfg.SilenceMax, recovery.DefaultSilenceMax)
	}
	held, release := make(chan struct{}, 1), make(chan struct{})
	drv := logdriver.New(nil)
	drv.Block = func(context.Context, runbooks.Action) { held <- struct{}{}; <-release }
	eng := recovery.New(ecfg, db, books, drv.All())
	if err := eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	released := false
	defer func() { // before Close, which waits for the held action
		if !released {
			close(release)
		}
	}()
	intake := httptest.NewServer((&API{Engine: eng, AlertmanagerConfidence: 0.5, Log: log}).Handler())
	defer intake.Close()

	dir := t.TempDir()
	conf := fmt.Sprintf("route:\n  receiver: recoverbot\n  group_by: [alertname]\n  group_wait: 0s\nreceivers:\n"+
		"  - name: recoverbot\n    webhook_configs:\n      - url: %s/v1/alertmanager\n", intake.URL)
	if err := os.WriteFile(filepath.Join(dir, "am.yml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "am.yml"), "--storage.path="+dir,
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	// The scale-database-connections runbook runs unattended for it.
	labels := map[string]string{"alertname": "DBPoolExhausted", "event_type": "LATENCY_ANOMALY",
		"severity": "warning", "cause": "DATABASE", "instance": "db-1:5432"}
	alert, _ := json.Marshal([]any{map[string]any{"labels": labels,
		"annotations": map[string]string{"summary": "pool exhausted", "confidence": "0.9"}}})
	poll(t, "Alertmanager to take the alert", func() bool {
		resp, err := http.Post(amURL+"/api/v2/alerts", "application/json", bytes.NewReader(alert))
		if err != nil {
			return false // not listening yet
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("alertmanager answered %d", resp.StatusCode)
		}
		return true
	})
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the alert's plan never ran")
	}
	xs, err := db.Executions(context.Background(), recovery.ExecutionFilter{})
	if err != nil || len(xs) != 1 || xs[0].State != recovery.Executing {
		t.Fatalf("executions %+v, %v: want one EXECUTING", xs, err)
	}
	plan := xs[0].ID

	type silence struct {
		Status    struct{ State string }
		Matchers  []amsilence.Matcher
		CreatedBy string
		Comment   string
	}
	silenceOf := func() (silence, bool) {
		resp, err := http.Get(amURL + "/api/v2/silences")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var all []silence
		if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
			t.Fatal(err)
		}
		for _, s := range all {
			if strings.HasSuffix(s.Comment, "plan "+plan) {
				return s, true
			}
		}
		return silence{}, false
	}
	var s silence
	poll(t, "the alert to be silenced", func() bool {
		var ok bool
		s, ok = silenceOf()
		return ok && s.Status.State == "active"
	})
	got := map[string]string{}
	for _, m := range s.Matchers {
		if !m.IsEqual || m.IsRegex {
			t.Errorf("matcher %+v is not exact", m)
		}
		got[m.Name] = m.Value
	}
	if !maps.Equal(got, labels) || s.CreatedBy != "recoverbot" || s.Comment != "recoverbot is remediating scale-database-connections: plan "+plan {
		t.Errorf("silence %+v: want the alert's labels %v, by recoverbot, naming the plan", s, labels)
	}
	close(release)
	released = true
	poll(t, "the silence to expire", func() bool {
		s, _ = silenceOf()
		return s.Status.State == "expired"
	})
}

// poll waits until cond holds, or fails the test after 30 s.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // how often to look, not what is waited for
	}
}
