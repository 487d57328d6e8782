package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/promcheck"
	"github.com/recoverbot/recoverbot/runbooks"
)

func TestRecoverySignalWebhook(t *testing.T) {
	got := make(chan recovery.Event, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var ev recovery.Event
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &ev) != nil {
			t.Errorf("webhook got %s %s %q", r.Method, r.Header.Get("Content-Type"), b)
		}
		got <- ev
	}))
	defer srv.Close()
	send := signalWebhook(srv.URL, slog.New(slog.DiscardHandler))
	send(recovery.Event{ID: "signal_1", Type: runbooks.RecoverySignal, Severity: runbooks.Info, Confidence: 1,
		Context: map[string]any{"plan_id": "01ABC"}})
	select {
	case ev := <-got:
		if ev.Type != runbooks.RecoverySignal || ev.Context["plan_id"] != "01ABC" {
			t.Fatalf("webhook received %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook was never called")
	}
}

// Start-up asks Prometheus to parse every verify query: a Prometheus that
// cannot be reached is only a warning (the bot must start while monitoring is
// down), decided on promcheck.ErrUnreachable, not on the error's wording; an
// answer that refuses the query stops the start-up.
func TestVerifyQueriesAtStartUp(t *testing.T) {
	dir := t.TempDir()
	rb := "name: verified\ntrigger: {eventType: ERROR_RATE_SPIKE}\n" +
		"actions:\n  - type: CIRCUIT_BREAKER\n    operation: OPEN\n    parameters: {service: payments}\n" +
		"safety: {maxExecutionsPerHour: 3}\nverify:\n  prometheus: 'up == 1'\n  within: 1m\n"
	if err := os.WriteFile(filepath.Join(dir, "rb.yaml"), []byte(rb), 0o600); err != nil {
		t.Fatal(err)
	}
	books, err := runbooks.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	unreachable := func(context.Context, string) error {
		return fmt.Errorf("post: %w: dial tcp: connection refused", promcheck.ErrUnreachable)
	}
	if err := checkVerifyQueries(context.Background(), books, unreachable, quiet); err != nil {
		t.Errorf("Prometheus unreachable: got %v, want only a warning", err)
	}
	// The same words without the sentinel are a refusal: nothing parses the text.
	refused := func(context.Context, string) error {
		return errors.New("prometheus said: unreachable is not a function")
	}
	if err := checkVerifyQueries(context.Background(), books, refused, quiet); err == nil || !strings.Contains(err.Error(), "rb.yaml") {
		t.Errorf("query refused: got %v, want an error naming rb.yaml", err)
	}
}
