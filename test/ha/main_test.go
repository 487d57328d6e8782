// Package ha is the multi-process high-availability fault test (make
// test-ha): a 3-member etcd cluster, 3 recoverbot replicas on it, load, and
// leader faults, with everything the replicas did counted and checked. The
// live tests skip unless RECOVERBOT_HA=1; the journal analysis has unit
// tests that always run.
package ha

import (
	"os"
	"testing"

	"github.com/recoverbot/recoverbot/test/harness"
)

func TestMain(m *testing.M) {
	code := m.Run()
	harness.Cleanup()
	os.Exit(code)
}

// requireHA skips unless the HA tests were asked for.
func requireHA(t *testing.T) {
	t.Helper()
	if os.Getenv("RECOVERBOT_HA") != "1" {
		t.Skip("HA test: run it with RECOVERBOT_HA=1 (make test-ha)")
	}
}
