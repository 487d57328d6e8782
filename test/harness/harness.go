// Package harness runs the recoverbot binary built from this tree as a child
// process and talks to its HTTP API, for the tests that drive real processes:
// test/long (kill -9 crash loop, sustained load) and test/ha (replicas on
// etcd, leader faults). Only tests import it.
package harness

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
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// Binary builds the recoverbot binary from the repository root once per test
// process: what runs is exactly what `go build` makes, not an in-process copy.
// $GO names the go command (default "go"). Call Cleanup from TestMain.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		if binDir, buildErr = os.MkdirTemp("", "recoverbot-bin-"); buildErr != nil {
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

// Cleanup removes the binary Binary built, if any.
func Cleanup() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// RepoRoot is the repository's root directory: the one holding go.mod, two
// levels above this file's package.
func RepoRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("harness: cannot locate the repository root")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", fmt.Errorf("harness: no go.mod at %s: %w", root, err)
	}
	return filepath.Abs(root)
}

// FreeAddr returns a loopback address nobody listens on right now. A process
// may be restarted on the same one; Go sets SO_REUSEADDR, so connections of a
// killed process left in TIME_WAIT do not block the rebind.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// Bot is a recoverbot process under test. Every start appends its output to
// the same log file, which is what the operator would read.
type Bot struct {
	Bin, Addr, LogPath string
	Env                map[string]string
	// Ready says whether an answer of /readyz means the process is up; nil:
	// a 200.
	Ready func(code int, body []byte) bool

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // cmd.Wait's result, once exited is closed
	code   int   // the exit code, once exited is closed
	Starts int
}

// environ is the test's environment without any RECOVERBOT_* or SLACK_*
// variable: the bot is configured only by b.Env.
func (b *Bot) environ() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RECOVERBOT_") || strings.HasPrefix(kv, "SLACK_") {
			continue
		}
		out = append(out, kv)
	}
	for k, v := range b.Env {
		out = append(out, k+"="+v)
	}
	return out
}

// Start runs `recoverbot serve` and waits (polling, with a deadline) until
// /readyz answers as Ready wants. It fails if the process exits first.
func (b *Bot) Start(t testing.TB) {
	t.Helper()
	if err := b.Launch(); err != nil {
		t.Fatal(err)
	}
	ready := b.Ready
	if ready == nil {
		ready = func(code int, _ []byte) bool { return code == http.StatusOK }
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-b.exited:
			t.Fatalf("start %d: recoverbot exited before it was ready (%v); log tail:\n%s", b.Starts, b.err, Tail(b.LogPath, 40))
		default:
		}
		resp, err := hc.Get("http://" + b.Addr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if ready(resp.StatusCode, body) {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Kill9()
			t.Fatalf("start %d: /readyz did not answer as wanted within 90s (last: %v); log tail:\n%s", b.Starts, err, Tail(b.LogPath, 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Launch starts `recoverbot serve` without waiting for it to be ready.
func (b *Bot) Launch() error {
	logf, err := os.OpenFile(b.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== harness: start %d ===\n", b.Starts+1)
	cmd := exec.Command(b.Bin, "serve")
	cmd.Env = b.environ()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	b.cmd, b.exited, b.err = cmd, exited, nil
	b.Starts++
	go func() {
		b.err = cmd.Wait()
		b.code = cmd.ProcessState.ExitCode()
		close(exited)
	}()
	return nil
}

// Exited is closed when the process started last has exited (nil before any
// start).
func (b *Bot) Exited() <-chan struct{} { return b.exited }

// ExitCode is the exit code of the process started last once Exited is
// closed: -1 for a death by signal.
func (b *Bot) ExitCode() int {
	<-b.exited
	return b.code
}

// Running reports whether a started process has not exited yet.
func (b *Bot) Running() bool {
	if b.cmd == nil {
		return false
	}
	select {
	case <-b.exited:
		return false
	default:
		return true
	}
}

// Signal sends sig to the running process (SIGSTOP, SIGCONT, ...).
func (b *Bot) Signal(sig syscall.Signal) error {
	if b.cmd == nil {
		return fmt.Errorf("harness: no process")
	}
	return b.cmd.Process.Signal(sig)
}

// Kill9 kills the process with SIGKILL and reaps it.
func (b *Bot) Kill9() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.exited
	b.cmd = nil
}

// Stop sends SIGTERM and returns the exit code (-1 on a signal death or after
// the deadline, when the process is killed).
func (b *Bot) Stop(t testing.TB) int {
	t.Helper()
	if b.cmd == nil {
		return -1
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(90 * time.Second):
		t.Errorf("recoverbot did not exit within 90s of SIGTERM")
		b.Kill9()
		return -1
	}
	code := b.cmd.ProcessState.ExitCode()
	b.cmd = nil
	return code
}

// Pid is the running process's id, 0 when none runs.
func (b *Bot) Pid() int {
	if b.cmd == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// Tail returns the last n lines of the file at path.
func Tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FileSize is the size of the file at path, 0 when it does not exist.
func FileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Report prints a line with t.Log and on stdout, so it shows with -v and in
// CI logs that keep only stdout.
func Report(t testing.TB, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	fmt.Println(line)
}

// EnvInt reads a non-negative integer setting of a long test, def when unset.
func EnvInt(t testing.TB, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return n
}

// API is a client of the bot's HTTP API with many keep-alive connections.
type API struct {
	Base string
	// Token, when set, is sent as the bearer token (an admin token).
	Token string
	hc    *http.Client
}

// NewAPI returns a client of the bot listening on addr keeping up to conns
// idle connections.
func NewAPI(addr string, conns int) *API {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 30 * time.Second,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	return &API{Base: "http://" + addr, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Do sends one request; err is a transport error (no answer at all).
func (a *API) Do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	code, _, out, err := a.DoHeader(ctx, method, path, body)
	return code, out, err
}

// DoHeader is Do that also returns the answer's header.
func (a *API) DoHeader(ctx context.Context, method, path string, body []byte) (int, http.Header, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.Base+path, r)
	if err != nil {
		return 0, nil, nil, err
	}
	if method == "POST" { // every POST, bodyless ones too (the bot answers 415 otherwise)
		req.Header.Set("Content-Type", "application/json")
	}
	if a.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.Token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, nil, err
	}
	return resp.StatusCode, resp.Header, out, nil
}

// GetJSON GETs path and decodes a 200 answer into v; anything else is an
// error naming the status and body.
func (a *API) GetJSON(ctx context.Context, path string, v any) error {
	code, body, err := a.Do(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return &StatusError{Path: path, Code: code, Body: string(body)}
	}
	return json.Unmarshal(body, v)
}

// StatusError is an answer other than the one wanted.
type StatusError struct {
	Path string
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("GET %s: %d %s", e.Path, e.Code, strings.TrimSpace(e.Body))
}

// Answer is the intake's answer to one event.
type Answer struct {
	EventID  string   `json:"event_id"`
	PlanID   string   `json:"plan_id"`
	Decision string   `json:"decision"`
	Reasons  []string `json:"reasons"`
}

// Step is an execution's step, as the engine records it.
type Step = recovery.Step

// Execution is the part of GET /v1/executions/{id} the tests read.
type Execution struct {
	Execution struct {
		ID         string    `json:"id"`
		Runbook    string    `json:"runbook"`
		State      string    `json:"state"`
		RollbackAt time.Time `json:"rollback_at"`
		Steps      []Step    `json:"steps"`
	} `json:"execution"`
	Audit []AuditRecord `json:"audit"`
}

// AuditRecord is one record of an execution's audit trail.
type AuditRecord struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Reason string `json:"reason"`
	Actor  string `json:"actor"`
}

// Summary is one execution as GET /v1/executions lists it.
type Summary struct {
	ID      string `json:"id"`
	Runbook string `json:"runbook"`
	State   string `json:"state"`
}

// List returns the newest executions (at most 1000) in a state.
func (a *API) List(ctx context.Context, state, runbook string) ([]Summary, error) {
	var out struct {
		Executions []Summary `json:"executions"`
	}
	path := "/v1/executions?limit=1000&state=" + state
	if runbook != "" {
		path += "&runbook=" + runbook
	}
	err := a.GetJSON(ctx, path, &out)
	return out.Executions, err
}

// Metrics reads /metrics into sample name (with its labels) → value.
func (a *API) Metrics(ctx context.Context) (map[string]float64, error) {
	code, body, err := a.Do(ctx, "GET", "/metrics", nil)
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
