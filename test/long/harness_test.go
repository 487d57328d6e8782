// Package long holds the tests that take minutes: the kill -9 crash loop and
// the sustained-load test, both against the real binary built from the repo.
// They skip unless RECOVERBOT_LONG=1 (make test-long sets it), so make test
// stays fast.
package long

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/recoverbot/recoverbot/test/harness"
)

// requireLong skips unless the long tests were asked for.
func requireLong(t *testing.T) {
	t.Helper()
	if os.Getenv("RECOVERBOT_LONG") != "1" {
		t.Skip("long test: run it with RECOVERBOT_LONG=1 (make test-long)")
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	harness.Cleanup()
	os.Exit(code)
}

// memory reads a process's resident memory from /proc/<pid>/status, in KiB:
// VmRSS is the total, RssAnon the heap and stacks (where a leak shows),
// RssFile the mapped files (bbolt maps its whole file, so it grows with the
// data, not with a leak).
type memory struct{ rss, anon, file int64 }

func readMemory(pid int) (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			m.rss = n
		case "RssAnon":
			m.anon = n
		case "RssFile":
			m.file = n
		}
	}
	return m, sc.Err()
}

func (m memory) String() string {
	return fmt.Sprintf("VmRSS %.1f MiB (anon %.1f, file %.1f)", float64(m.rss)/1024, float64(m.anon)/1024, float64(m.file)/1024)
}
