package recovery_test

import (
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

// TestExecutionOpen: the store's open index (what start-up looks at again)
// holds every execution a worker or timer may still move, and every one
// holding a silence not yet settled, so a restarted bot expires it.
func TestExecutionOpen(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		x    recovery.Execution
		want bool
	}{
		{"executing", recovery.Execution{State: recovery.Executing}, true},
		{"verified, nothing pending", recovery.Execution{State: recovery.Verified}, false},
		{"succeeded with a scheduled rollback", recovery.Execution{State: recovery.Succeeded, RollbackAt: at}, true},
		{"rolled back, the rollback time left over", recovery.Execution{State: recovery.RolledBack, RollbackAt: at}, false},
		{"failed, its silence not expired", recovery.Execution{State: recovery.Failed, Silence: &recovery.SilenceRef{ID: "s", EndsAt: at}}, true},
		{"failed, its silence settled", recovery.Execution{State: recovery.Failed, Silence: &recovery.SilenceRef{ID: "s", EndsAt: at, Settled: true}}, false},
		{"interrupted, its silence not expired", recovery.Execution{State: recovery.Interrupted, Silence: &recovery.SilenceRef{ID: "s", EndsAt: at}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.x.Open(); got != tc.want {
				t.Errorf("Open() = %v, want %v", got, tc.want)
			}
		})
	}
}
