// Package long holds the tests that take minutes: the kill -9 crash loop and
// the sustained-load test, both against the real binary built from the repo.
// They skip unless RECOVERBOT_LONG=1 (make test-long sets it), so make test
// stays fast.
package long

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// requireLong skips unless the long tests were asked for.
func requireLong(t *testing.T) {
	t.Helper()
	if os.Getenv("RECOVERBOT_LONG") != "1" {
		t.Skip("long test: run it with RECOVERBOT_LONG=1 (make test-long)")
	}
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary builds the recoverbot binary from the repository root once per test
// process: what runs is exactly what `go build` makes, not an in-process copy.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			buildErr = err
			return
		}
		if binDir, buildErr = os.MkdirTemp("", "recoverbot-long-"); buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "recoverbot")
		gobin := os.Getenv("GO")
		if gobin == "" {
			gobin = "go"
		}
		cmd := exec.Command(gobin, "build", "-o", binPath, ".")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// freeAddr returns a loopback address nobody listens on right now. The bot is
// restarted on the same one; Go sets SO_REUSEADDR, so connections of a killed
// process left in TIME_WAIT do not block the rebind.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// bot is the recoverbot process under test. Every start appends its output to
// the same log file, which is what the operator would read.
type bot struct {
	bin, addr, logPath string
	env                map[string]string

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // cmd.Wait's result, once exited is closed
	starts int
}

// environ is the test's environment without any RECOVERBOT_* or SLACK_*
// variable (the bot runs offline, configured only by b.env).
func (b *bot) environ() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RECOVERBOT_") || strings.HasPrefix(kv, "SLACK_") {
			continue
		}
		out = append(out, kv)
	}
	for k, v := range b.env {
		out = append(out, k+"="+v)
	}
	return out
}

// start runs `recoverbot serve` and waits (polling, with a deadline) until
// /readyz answers 200. It fails if the process exits first.
func (b *bot) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== long test: start %d ===\n", b.starts+1)
	cmd := exec.Command(b.bin, "serve")
	cmd.Env = b.environ()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b.cmd, b.exited, b.err = cmd, make(chan struct{}), nil
	b.starts++
	go func() {
		b.err = cmd.Wait()
		close(b.exited)
	}()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-b.exited:
			t.Fatalf("start %d: recoverbot exited before it was ready (%v); log tail:\n%s", b.starts, b.err, tail(b.logPath, 40))
		default:
		}
		resp, err := hc.Get("http://" + b.addr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b.kill9()
			t.Fatalf("start %d: /readyz did not answer 200 within 90s (last: %v); log tail:\n%s", b.starts, err, tail(b.logPath, 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill9 kills the process with SIGKILL and reaps it.
func (b *bot) kill9() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.exited
	b.cmd = nil
}

// stop sends SIGTERM and returns the exit code (-1 on a signal death or after
// the deadline, when the process is killed).
func (b *bot) stop(t *testing.T) int {
	t.Helper()
	if b.cmd == nil {
		return -1
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(90 * time.Second):
		t.Errorf("recoverbot did not exit within 90s of SIGTERM")
		b.kill9()
		return -1
	}
	code := b.cmd.ProcessState.ExitCode()
	b.cmd = nil
	return code
}

func (b *bot) pid() int {
	if b.cmd == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// api is a client of the bot's HTTP API with many keep-alive connections.
type api struct {
	base string
	hc   *http.Client
}

func newAPI(addr string, conns int) *api {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 30 * time.Second,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	return &api{base: "http://" + addr, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// do sends one request; err is a transport error (no answer at all).
func (a *api) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, r)
	if err != nil {
		return 0, nil, err
	}
	if method == "POST" { // every POST, bodyless ones too (the bot answers 415 otherwise)
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, out, nil
}

// getJSON GETs path and decodes a 200 answer into v; anything else is an error
// naming the status and body.
func (a *api) getJSON(ctx context.Context, path string, v any) error {
	code, body, err := a.do(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return &statusError{path: path, code: code, body: string(body)}
	}
	return json.Unmarshal(body, v)
}

type statusError struct {
	path string
	code int
	body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("GET %s: %d %s", e.path, e.code, strings.TrimSpace(e.body))
}

// answer is the intake's answer to one event.
type answer struct {
	EventID  string   `json:"event_id"`
	PlanID   string   `json:"plan_id"`
	Decision string   `json:"decision"`
	Reasons  []string `json:"reasons"`
}

// execution is the part of GET /v1/executions/{id} the long tests read.
type execution struct {
	Execution struct {
		ID         string    `json:"id"`
		Runbook    string    `json:"runbook"`
		State      string    `json:"state"`
		RollbackAt time.Time `json:"rollback_at"`
	} `json:"execution"`
	Audit []auditRecord `json:"audit"`
}

type auditRecord struct {
	To     string `json:"to"`
	Reason string `json:"reason"`
	Actor  string `json:"actor"`
}

type summary struct {
	ID      string `json:"id"`
	Runbook string `json:"runbook"`
	State   string `json:"state"`
}

// list returns the newest executions (at most 1000) in a state.
func (a *api) list(ctx context.Context, state, runbook string) ([]summary, error) {
	var out struct {
		Executions []summary `json:"executions"`
	}
	path := "/v1/executions?limit=1000&state=" + state
	if runbook != "" {
		path += "&runbook=" + runbook
	}
	err := a.getJSON(ctx, path, &out)
	return out.Executions, err
}

// metrics reads /metrics into sample name (with its labels) → value.
func (a *api) metrics(ctx context.Context) (map[string]float64, error) {
	code, body, err := a.do(ctx, "GET", "/metrics", nil)
	if err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %d %v", code, err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
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

// report prints a line with t.Log and on stdout, so it shows with -v and in
// CI logs that keep only stdout.
func report(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	fmt.Println(line)
}
