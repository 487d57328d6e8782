// Package testutil finds the real servers integration tests run against.
package testutil

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// RequireIntegration is true in CI (.ci/run sets RECOVERBOT_REQUIRE_INTEGRATION=1):
// a missing server is then a failure, not a skip.
func RequireIntegration() bool { return os.Getenv("RECOVERBOT_REQUIRE_INTEGRATION") == "1" }

// Binary returns the path of the first of names found on PATH, or skips the test
// (fails it under RequireIntegration) with a message saying how to get it.
func Binary(t testing.TB, pkg string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := names[0] + " is not installed: run `apt-get install -y " + pkg + "` (or .ci/run) to run this test"
	if RequireIntegration() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// FreePort returns a loopback address with a port free right now.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// SyncBuffer collects output (a logger's, a child process's) while the test
// reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
