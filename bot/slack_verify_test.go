package bot

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/internal/slacktest"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

// scriptedVerifier answers verify queries as the test says: healthy with a
// value, unhealthy with a value, or no answer at all.
type scriptedVerifier struct {
	mu      sync.Mutex
	healthy bool
	value   string
	err     error
	queries []string
}

func (v *scriptedVerifier) Check(_ context.Context, q string) (bool, string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.queries = append(v.queries, q)
	return v.healthy, v.value, v.err
}

func verifiedRunbook(onFailure string) string {
	return `
name: breaker-verified
trigger: {eventType: CIRCUIT_BREAKER_CANDIDATE, conditions: {confidence: {min: 0.5}}}
actions:
  - type: CIRCUIT_BREAKER
    operation: OPEN
    parameters: {service: "{{upstream}}", halfOpenRequests: 3}
safety: {requiresApproval: false, maxExecutionsPerHour: 50}
verify:
  prometheus: 'shop_errors{upstream="{{upstream}}"} < 1'
  within: 300ms
  every: 100ms
  onVerifyFailure: ` + onFailure + `
`
}

// What verification found shows in the root message's status line: the
// query and the value that made it VERIFIED; a failure that is escalated;
// a Prometheus that could not answer (never a success); and the rollback
// after a failed verification, counted as a false action (the others can
// still be marked by a person).
func TestSlackVerificationStatusLine(t *testing.T) {
	// As blocksText shows it: JSON text, so the quotes are escaped.
	const query = "`shop_errors{upstream=\\\"payments\\\"} &lt; 1`"
	for _, c := range []struct {
		name, onFailure string
		v               *scriptedVerifier
		want            []string
	}{
		{"verified", "rollback", &scriptedVerifier{healthy: true, value: "0.25"},
			[]string{"✅ Auto-Recovery Succeeded and Verified", "✅ Recovery succeeded and verified at <!date^", query + " returned `0.25`"}},
		{"failed, escalated", "escalate", &scriptedVerifier{value: "7"},
			[]string{"⚠️ Auto-Recovery Verification Failed", "🚨 Verification failed at <!date^", query + " still unhealthy (last value: `7`); escalated, a human must look"}},
		{"prometheus unavailable", "rollback", &scriptedVerifier{err: errors.New("prometheus unreachable")},
			[]string{"⚠️ Verification unavailable at <!date^", "(prometheus unreachable): not counted as a success and not rolled back; a human must decide"}},
		{"failed, rolled back", "rollback", &scriptedVerifier{value: "7"},
			[]string{"↩️ Auto-Recovery Rolled Back", "↩️ Rolled back after failed verification (last value: `7`) at <!date^", "🏷️ Counted as a false action (verification failed)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := c.v
			// On the system clock, as recovery's verification tests: the
			// checks wait between them, and Idle returns once the
			// verification ended, however fast the machine is.
			h := newSlackHarness(t, harnessConfig{runbooks: writeRunbook(t, verifiedRunbook(c.onFailure)),
				engine: func(cfg *recovery.Config) { cfg.Verifier, cfg.Clock = v, recovery.SystemClock{} }})
			a := h.submit(recovery.Event{Type: runbooks.CircuitBreakerCandidate, Severity: runbooks.Critical, Confidence: 0.9,
				Summary: "payments failing", Context: map[string]any{"upstream": "payments"}})
			root := h.root(a.PlanID)
			h.must(h.eng.Idle(h.ctx), "idle")
			v.mu.Lock()
			if len(v.queries) == 0 || v.queries[0] != `shop_errors{upstream="payments"} < 1` {
				t.Errorf("verify queries %q", v.queries)
			}
			v.mu.Unlock()
			var m slacktest.Message
			h.waitFor("the verification outcome", func(s *slacktest.Server) bool {
				m, _ = s.Message(incident, root.TS)
				text := blocksText(m.Blocks)
				for _, w := range c.want {
					if !strings.Contains(text, w) {
						return false
					}
				}
				return true
			})
			wantMark := c.name != "failed, rolled back" // already counted as false by the engine
			if hasButton(m, commands.ActionMarkFalse) != wantMark {
				t.Errorf("Mark as false action shown = %v, want %v: %s", !wantMark, wantMark, blocksText(m.Blocks))
			}
		})
	}
}
