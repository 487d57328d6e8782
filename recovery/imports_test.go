package recovery_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestEngineImportsNoEdge keeps the import graph the architecture (STYLE §1):
// the engine depends on no Slack, HTTP, bbolt, Kubernetes client or Redis
// package, directly or through another package. Those live in the packages
// that satisfy the engine's interfaces.
func TestEngineImportsNoEdge(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/recoverbot/recoverbot/recovery").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{"net/http", "github.com/slack-go/", "go.etcd.io/bbolt", "k8s.io/", "github.com/redis/"}
	deps := strings.Fields(string(out))
	if len(deps) < 5 {
		t.Fatalf("go list listed %d packages: %q", len(deps), out)
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f) && (strings.HasSuffix(f, "/") || strings.HasPrefix(dep, f+"/")) {
				t.Errorf("recovery depends on %s (forbidden: %s)", dep, f)
			}
		}
	}
}
