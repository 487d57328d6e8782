package bot

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/recoverbot/recoverbot/recovery"
)

// #12 item 6: what the AI budget does not send is counted on /metrics.
func TestMetricsCountAICallsNotMade(t *testing.T) {
	m := NewMetrics(func() float64 { return 0 })
	m.AIDropped(recovery.AIDropBusy)
	m.AIDropped(recovery.AIDropBusy)
	m.AIDropped(recovery.AIDropFolded)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`recoverbot_ai_calls_dropped_total{reason="concurrency"} 2`,
		`recoverbot_ai_calls_dropped_total{reason="folded"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
