package bot

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
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
