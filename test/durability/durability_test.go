// Package durability checks the intake's promise against the system calls: an
// event answered 2xx was on disk before the answer left. The bot binary built
// from this tree runs under strace; for every acknowledged event the trace must
// show, in this order, the event written to the data file, a bbolt meta page
// written after it (the commit that makes it reachable), an fdatasync/fsync of
// the data file after that, and only then the HTTP reply on the socket.
//
// strace stops a thread at each traced system call until it has printed it, so a
// reply that waited for the sync is always printed after the sync's result; a
// reply that did not wait can be printed before it, and the test fails.
package durability

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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

// requireStrace skips when strace is missing or may not trace here, unless
// RECOVERBOT_REQUIRE_INTEGRATION=1 (CI), where that is a failure.
func requireStrace(t *testing.T) string {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("RECOVERBOT_REQUIRE_INTEGRATION") == "1" {
		fail = t.Fatalf
	}
	path, err := exec.LookPath("strace")
	if err != nil {
		fail("strace is not installed (apt-get install strace; .ci/run installs it): the durability of acknowledged events is not checked")
		return ""
	}
	if out, err := exec.Command(path, "-f", "-qq", "-e", "trace=fdatasync", "-o", os.DevNull, "true").CombinedOutput(); err != nil {
		fail("strace cannot trace here (ptrace refused?): %v: %s", err, out)
		return ""
	}
	return path
}

// build compiles the bot from the repository root: what runs is what `go build` makes.
func build(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "recoverbot")
	gobin := os.Getenv("GO")
	if gobin == "" {
		gobin = "go"
	}
	cmd := exec.Command(gobin, "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// events are the reference playbook's six kinds with distinct targets, so each
// one makes a new plan (full mode: some wait for approval, some run the log driver).
func events(nonce string, n int) (ids []string, bodies [][]byte) {
	kinds := []string{
		`{"type":"LATENCY_ANOMALY","severity":"WARNING","confidence":0.9,"summary":"pool exhausted","data":{"metric":"latency_ms","current_value":2500},"context":{"cause":"DATABASE","deployment":"db-%[1]d"}}`,
		`{"type":"CIRCUIT_BREAKER_CANDIDATE","severity":"WARNING","confidence":0.9,"data":{"errorRate":75},"context":{"upstream":"svc-%[1]d"}}`,
		`{"type":"ERROR_RATE_SPIKE","severity":"WARNING","confidence":0.8,"data":{"errorCategory":"5xx"},"context":{"route":"/api/r%[1]d"}}`,
		`{"type":"CAPACITY_WARNING","severity":"WARNING","confidence":0.85,"data":{"resourceType":"MEMORY","utilization":95},"context":{"deployment":"app-%[1]d"}}`,
		`{"type":"RATE_LIMIT_BREACH","severity":"WARNING","confidence":0.8,"data":{"trafficType":"ABUSE"},"context":{"client":"10.9.0.%[1]d"}}`,
		`{"type":"UPSTREAM_DEGRADATION","severity":"CRITICAL","confidence":0.9,"data":{},"context":{"upstream":"up-%[1]d","backup_service":"up-%[1]d-dr"}}`,
	}
	for i := range n {
		id := fmt.Sprintf("dur-%s-%d", nonce, i)
		var ev map[string]any
		if err := json.Unmarshal(fmt.Appendf(nil, kinds[i%len(kinds)], i+1), &ev); err != nil {
			panic(err)
		}
		ev["id"] = id
		b, _ := json.Marshal(ev)
		ids, bodies = append(ids, id), append(bodies, b)
	}
	return ids, bodies
}

// TestAcknowledgedEventsAreSyncedFirst posts events from several clients at
// once (so the group commit batches them), then Alertmanager webhooks (firing
// and resolved), to the real binary under strace and checks every
// acknowledged event against the trace.
func TestAcknowledgedEventsAreSyncedFirst(t *testing.T) {
	straceBin := requireStrace(t)
	bin := build(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "recoverbot.db")
	tracePath := filepath.Join(dir, "trace.txt")
	logPath := filepath.Join(dir, "bot.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	out, err := watchOutput(logf)
	if err != nil {
		t.Fatal(err)
	}
	// -s: whole buffers, so the event ids in the pages and replies can be found.
	cmd := exec.Command(straceBin, "-f", "-qq", "-s", "1048576",
		"-e", "trace=openat,pwrite64,write,fdatasync,fsync", "-o", tracePath, "--", bin, "serve")
	// Port 0: the bot picks a free one and logs it ("recoverbot listening").
	cmd.Env = append(environ(), "RECOVERBOT_LISTEN=127.0.0.1:0", "RECOVERBOT_DATA="+dbPath,
		"RECOVERBOT_MODE=full", "RECOVERBOT_DRIVERS=log", "RECOVERBOT_LOG_FORMAT=json")
	cmd.Stdout, cmd.Stderr = out.w, out.w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out.w.Close() // the child has its copy; EOF when it exits
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		// SIGTERM to the bot (strace's child); strace exits when it does.
		if pid := childOf(cmd.Process.Pid); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("strace/recoverbot exited with %v; log:\n%s", err, readFile(logPath))
			}
		case <-time.After(2 * time.Minute):
			_ = cmd.Process.Kill()
			t.Fatalf("recoverbot did not exit within 2 minutes of SIGTERM")
		}
	}
	defer stop()
	var addr string
	select {
	case addr = <-out.listening:
	case err := <-exited:
		t.Fatalf("recoverbot exited before it listened (%v); log:\n%s", err, readFile(logPath))
	case <-time.After(2 * time.Minute):
		t.Fatalf("recoverbot did not log \"recoverbot listening\" within 2 minutes; log:\n%s", readFile(logPath))
	}

	ids, bodies := events(strconv.FormatInt(time.Now().UnixNano(), 36), 48)
	client := &http.Client{Timeout: time.Minute}
	acked := make([]bool, len(ids))
	var wg sync.WaitGroup
	const senders = 8
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := s; i < len(ids); i += senders {
				resp, err := client.Post("http://"+addr+"/v1/events", "application/json", bytes.NewReader(bodies[i]))
				if err != nil {
					t.Errorf("event %s: %v", ids[i], err)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					t.Errorf("event %s: status %d %s, want 202 (a new plan)", ids[i], resp.StatusCode, b)
					continue
				}
				acked[i] = true
			}
		}()
	}
	wg.Wait()
	// The Alertmanager webhook acknowledges with 200: one payload that fires
	// two alerts, then one that resolves the first (a resolved alert is
	// recorded too). Their event ids are in the answer.
	fp := fmt.Sprintf("%x", time.Now().UnixNano())
	for _, payload := range []string{
		`{"version":"4","status":"firing","alerts":[` +
			`{"status":"firing","labels":{"event_type":"CAPACITY_WARNING","severity":"warning","deployment":"am-a"},"annotations":{"summary":"memory","resourceType":"MEMORY","utilization":"95"},"startsAt":"2026-12-03T08:00:00Z","fingerprint":"a` + fp + `"},` +
			`{"status":"firing","labels":{"event_type":"ERROR_RATE_SPIKE","severity":"warning","route":"/api/am"},"annotations":{"errorCategory":"5xx"},"startsAt":"2026-12-03T08:00:00Z","fingerprint":"b` + fp + `"}]}`,
		`{"version":"4","status":"resolved","alerts":[` +
			`{"status":"resolved","labels":{"event_type":"CAPACITY_WARNING","severity":"warning","deployment":"am-a"},"annotations":{},"startsAt":"2026-12-03T08:00:00Z","fingerprint":"a` + fp + `"}]}`,
	} {
		got, err := postAlertmanager(client, addr, payload)
		if err != nil {
			t.Errorf("alertmanager webhook: %v", err)
		}
		for _, id := range got {
			ids, acked = append(ids, id), append(acked, true)
		}
	}
	stop()

	f, err := os.Open(tracePath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr, err := parseTrace(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, id := range ids {
		if !acked[i] {
			continue
		}
		n++
		if err := tr.checkDurable(dbPath, id); err != nil {
			t.Errorf("event %s: %v", id, err)
		}
	}
	if n == 0 {
		t.Fatal("no event was acknowledged: nothing was checked")
	}
	if !t.Failed() {
		t.Logf("%d acknowledged events: each was written, committed (meta page) and synced before its reply", n)
	}
}

// postAlertmanager posts a webhook payload and returns the event ids its 200
// answer names.
func postAlertmanager(client *http.Client, addr, payload string) ([]string, error) {
	resp, err := client.Post("http://"+addr+"/v1/alertmanager", "application/json", strings.NewReader(payload))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var ans struct {
		Results []struct {
			EventID string `json:"event_id"`
			Error   string `json:"error"`
		} `json:"results"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &ans) != nil || len(ans.Results) == 0 {
		return nil, fmt.Errorf("status %d %s, want 200 with results", resp.StatusCode, b)
	}
	var ids []string
	for _, r := range ans.Results {
		if r.EventID == "" || r.Error != "" {
			return ids, fmt.Errorf("result %+v: want an accepted event", r)
		}
		ids = append(ids, r.EventID)
	}
	return ids, nil
}

// output copies the bot's log to a file and reports the address of its
// "recoverbot listening" line: readiness from the bot's own word, not polling.
type output struct {
	w         *os.File
	listening chan string
}

func watchOutput(log io.Writer) (*output, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	o := &output{w: w, listening: make(chan string, 1)}
	go func() {
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = log.Write(append(line, '\n'))
			var l struct{ Msg, Addr string }
			if json.Unmarshal(line, &l) == nil && l.Msg == "recoverbot listening" && l.Addr != "" {
				select {
				case o.listening <- l.Addr:
				default:
				}
			}
		}
	}()
	return o, nil
}

// environ is the test's environment without RECOVERBOT_* and SLACK_* (offline,
// configured only by the test).
func environ() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RECOVERBOT_") && !strings.HasPrefix(kv, "SLACK_") && !strings.HasPrefix(kv, "ANTHROPIC_") {
			out = append(out, kv)
		}
	}
	return out
}

// childOf returns the first child of pid (strace's tracee), or 0.
func childOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// call is one traced system call: start is the line of its entry, end the line
// of its result (the same line unless another thread's call came between).
type call struct {
	name       string
	fd         int
	path       string // openat
	buf        string // write, pwrite64: the buffer as strace quotes it
	ret        int
	start, end int
}

type trace struct{ calls []call }

// parseTrace reads `strace -f -o` output: "PID name(args) = ret", or an entry
// "PID name(args <unfinished ...>" and later "PID <... name resumed>...) = ret".
func parseTrace(r io.Reader) (*trace, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	tr := &trace{}
	pending := map[string]int{} // pid -> index in calls
	for line := 0; sc.Scan(); line++ {
		s := sc.Text()
		pid, rest, ok := strings.Cut(s, " ")
		if !ok {
			continue
		}
		rest = strings.TrimLeft(rest, " ")
		if strings.HasPrefix(rest, "<... ") {
			i, ok := pending[pid]
			if !ok {
				return nil, fmt.Errorf("line %d: resumed call without an entry: %.200s", line+1, s)
			}
			delete(pending, pid)
			tr.calls[i].end = line
			tr.calls[i].ret = result(rest)
			continue
		}
		open := strings.IndexByte(rest, '(')
		if open <= 0 || strings.HasPrefix(rest, "---") || strings.HasPrefix(rest, "+++") {
			continue
		}
		c := call{name: rest[:open], start: line, end: line, fd: -1}
		args := rest[open+1:]
		switch c.name {
		case "openat":
			if q := strings.IndexByte(args, '"'); q >= 0 {
				c.path, _, _ = strings.Cut(args[q+1:], `"`)
			}
		case "fdatasync", "fsync", "write", "pwrite64":
			fd, after, _ := strings.Cut(args, ",")
			fd, _, _ = strings.Cut(fd, ")")
			fd, _, _ = strings.Cut(fd, " ")
			c.fd, _ = strconv.Atoi(fd)
			if c.name == "write" || c.name == "pwrite64" {
				c.buf = strings.TrimLeft(after, " ")
			}
		default:
			continue
		}
		if strings.HasSuffix(rest, "<unfinished ...>") {
			c.end = -1
			pending[pid] = len(tr.calls)
		} else {
			c.ret = result(rest)
		}
		tr.calls = append(tr.calls, c)
	}
	return tr, sc.Err()
}

// result is the return value after the last " = ", or -1.
func result(s string) int {
	i := strings.LastIndex(s, " = ")
	if i < 0 {
		return -1
	}
	f := strings.Fields(s[i+3:])
	if len(f) == 0 {
		return -1
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return -1
	}
	return n
}

// isMeta reports whether a pwrite64 buffer is a bbolt meta page: the page
// header's id is 0 or 1 and its flags are metaPageFlag (0x04). Writing one is
// the commit: it points the file at the transaction's new pages.
func isMeta(buf string) bool {
	return strings.HasPrefix(buf, `"\0\0\0\0\0\0\0\0\4\0`) || strings.HasPrefix(buf, `"\1\0\0\0\0\0\0\0\4\0`)
}

// checkDurable finds the 2xx reply that names event id and checks that before
// it the data file at dbPath got the event (a pwrite64 holding the id), then a
// meta page, then a successful fdatasync or fsync, each finished before the next
// began.
func (tr *trace) checkDurable(dbPath, id string) error {
	dbfds := map[int]bool{}
	reply := -1
	for i, c := range tr.calls {
		if c.name == "openat" && c.path == dbPath && c.ret >= 0 {
			dbfds[c.ret] = true
		}
		if c.name == "write" && strings.HasPrefix(c.buf, `"HTTP/1.1 2`) && strings.Contains(c.buf, `\"event_id\":\"`+id+`\"`) {
			reply = i
			break
		}
	}
	if reply < 0 {
		return fmt.Errorf("no 2xx reply naming it in the trace")
	}
	if len(dbfds) == 0 {
		return fmt.Errorf("the data file %s was not opened before the reply", dbPath)
	}
	r := tr.calls[reply]
	step, after := "written to the data file", -1
	for _, c := range tr.calls[:reply] {
		if c.end < 0 || c.end >= r.start || c.start <= after || !dbfds[c.fd] {
			continue
		}
		switch step {
		case "written to the data file":
			if c.name == "pwrite64" && strings.Contains(c.buf, id) && c.ret > 0 {
				step, after = "committed (a meta page written after it)", c.end
			}
		case "committed (a meta page written after it)":
			if c.name == "pwrite64" && isMeta(c.buf) && c.ret > 0 {
				step, after = "synced (fdatasync or fsync after the meta page)", c.end
			}
		case "synced (fdatasync or fsync after the meta page)":
			if (c.name == "fdatasync" || c.name == "fsync") && c.ret == 0 {
				return nil
			}
		}
	}
	return fmt.Errorf("answered 2xx before it was %s", step)
}
