// Package testutil finds the real servers integration tests run against.
package testutil

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
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

// Etcd starts a one-member etcd (etcd on PATH: Debian's etcd-server, which
// .ci/run installs; else test/k8s/bin/etcd, built by make test-k8s) on
// loopback ports with its data in a temp dir, and returns its client endpoint
// once it answers; it is killed when the test ends. No etcd: skipped, or
// failed under RequireIntegration.
func Etcd(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		bin = ""
		if dir, err := os.Getwd(); err == nil {
			for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
				if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
					if p := filepath.Join(d, "test", "k8s", "bin", "etcd"); fileExists(p) {
						bin = p
					}
					break
				}
			}
		}
	}
	if bin == "" {
		bin = Binary(t, "etcd-server", "etcd")
	}
	client, peer := FreePort(t), FreePort(t)
	cmd := exec.Command(bin, "--data-dir", filepath.Join(t.TempDir(), "etcd"),
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "default=http://"+peer)
	var out SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + client + "/health")
		if err == nil {
			ok := resp.StatusCode == http.StatusOK
			resp.Body.Close()
			if ok {
				return client
			}
		}
		select {
		case <-exited:
			t.Fatalf("etcd exited: %s", out.String())
		case <-time.After(50 * time.Millisecond): // polling a server that has no ready signal
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not answer within 30s: %s", out.String())
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
