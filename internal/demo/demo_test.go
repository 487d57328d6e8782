package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/internal/slacktest"
)

// testTimeout bounds every wait; nothing sleeps, so it only matters when a
// test is about to fail.
const testTimeout = 2 * time.Minute

var alice, bob = people[0], people[1]

// startDemo runs the whole demo in-process: Slack server, bot, page on a
// free loopback port.
func startDemo(t *testing.T) (*demo, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	d, err := start(ctx, options{listen: "127.0.0.1:0", events: "../../examples/events", log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("demo stopped with: %v", err)
		}
	})
	return d, ctx
}

// testLog discards the bot's log unless RECOVERBOT_TEST_LOG is set.
func testLog(t *testing.T) *slog.Logger {
	t.Helper()
	if os.Getenv("RECOVERBOT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// call sends a request to the page's API and decodes the JSON answer.
func call(t *testing.T, d *demo, method, path, ctype string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, d.URL()+path, rd)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func waitFor(t *testing.T, ctx context.Context, d *demo, what string, cond func(*slacktest.Server) bool) {
	t.Helper()
	if err := d.slack.WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// pageState is what the page gets for a person.
func pageState(t *testing.T, d *demo, p person) state {
	t.Helper()
	resp, err := http.Get(d.URL() + "/api/state?user=" + p.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st state
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// The page's API drives the real bot as a person in Slack would: a sample
// event becomes an approval request; bob's Approve is refused to him alone;
// alice's runs the plan, told step by step in the thread; View Details
// opens the modal and Close closes it; /recover status gets its reply.
func TestDemoDrivesTheBotThroughSlack(t *testing.T) {
	d, ctx := startDemo(t)
	if code, a := call(t, d, "POST", "/api/sample", "application/json", map[string]string{"name": "restart-pod-memory-leak"}); code != 202 && code != 200 || a["decision"] != "approval" {
		t.Fatalf("sample event: %d %v, want the bot's answer: approval", code, a)
	}
	var root slacktest.Message
	waitFor(t, ctx, d, "the approval request", func(s *slacktest.Server) bool {
		ms := s.Messages(channelID)
		if len(ms) == 1 && strings.Contains(string(ms[0].Blocks), "approve_recovery") {
			root = ms[0]
			return true
		}
		return false
	})
	press := func(p person, block, action string) {
		t.Helper()
		if code, a := call(t, d, "POST", "/api/click", "application/json", map[string]string{"user": p.ID, "ts": root.TS, "block": block, "action": action}); code != 200 {
			t.Fatalf("%s presses %s: %d %v", p.Name, action, code, a)
		}
	}

	press(bob, "recovery_approval", "approve_recovery")
	waitFor(t, ctx, d, "bob's refusal", func(s *slacktest.Server) bool { return len(s.Ephemerals(channelID, bob.ID)) == 1 })
	if e := d.slack.Ephemerals(channelID, bob.ID)[0]; !strings.Contains(e.Text, "not an approver") {
		t.Errorf("bob was told %q, want that he is not an approver", e.Text)
	}
	if st := pageState(t, d, alice); len(st.Messages) != 1 || st.Messages[0].Ephemeral {
		t.Errorf("alice sees %d messages (%+v), want the request only: bob's refusal is his", len(st.Messages), st.Messages)
	}

	press(alice, "recovery_approval", "approve_recovery")
	waitFor(t, ctx, d, "the execution in the thread", func(s *slacktest.Server) bool {
		th := s.Thread(channelID, root.TS)
		return len(th) > 0 && strings.Contains(th[len(th)-1].Text+string(th[len(th)-1].Blocks), "Recovery succeeded")
	})
	st := pageState(t, d, alice)
	var thread []string
	for _, r := range st.Messages[0].Replies {
		thread = append(thread, r.HTML)
	}
	all := strings.Join(thread, "\n")
	for _, want := range []string{`Approved by <span class="mention">@alice</span>`, "Step 1/1: RESTART_POD", "log driver: RESTART_POD recorded, nothing changed", "Recovery succeeded"} {
		if !strings.Contains(all, want) {
			t.Errorf("alice's page: the thread lacks %q:\n%s", want, all)
		}
	}

	press(alice, "recovery_outcome", "view_recovery_details")
	waitFor(t, ctx, d, "the details modal", func(*slacktest.Server) bool { return pageState(t, d, alice).Modal != nil })
	st = pageState(t, d, alice)
	if !strings.Contains(st.Modal.HTML, "SUCCEEDED") || pageState(t, d, bob).Modal != nil {
		t.Errorf("modal %q shows %s; bob's page has one: %v", st.Modal.Title, st.Modal.HTML, pageState(t, d, bob).Modal != nil)
	}
	if code, a := call(t, d, "POST", "/api/close", "application/json", map[string]string{"user": bob.ID, "view": st.Modal.ID}); code != 404 {
		t.Errorf("bob closes alice's modal: %d %v, want 404", code, a)
	}
	if code, a := call(t, d, "POST", "/api/close", "application/json", map[string]string{"user": alice.ID, "view": st.Modal.ID}); code != 200 {
		t.Fatalf("close: %d %v", code, a)
	}
	if m := pageState(t, d, alice).Modal; m != nil {
		t.Errorf("the modal is still open after Close: %+v", m)
	}

	if code, a := call(t, d, "POST", "/api/command", "application/json", map[string]string{"user": bob.ID, "text": "/recover status"}); code != 200 {
		t.Fatalf("/recover status: %d %v", code, a)
	}
	waitFor(t, ctx, d, "the status reply", func(s *slacktest.Server) bool { return len(s.Ephemerals(channelID, bob.ID)) == 2 })
	if e := d.slack.Ephemerals(channelID, bob.ID)[1]; !strings.Contains(e.Text+string(e.Blocks), "Awaiting approval") {
		t.Errorf("/recover status answered %q %s", e.Text, e.Blocks)
	}
}

// What the page refuses, with the reason, and what it then did not do.
func TestDemoRefuses(t *testing.T) {
	d, _ := startDemo(t)
	for _, c := range []struct {
		name, path, ctype string
		body              any
		status            int
		msg               string
	}{
		{"an unknown sample", "/api/sample", "application/json", map[string]string{"name": "../../etc/passwd"}, 404, `no sample event "../../etc/passwd"`},
		{"an unknown person", "/api/click", "application/json", map[string]string{"user": "U0MALLORY1", "ts": "1.1", "block": "b", "action": "a"}, 400, `user "U0MALLORY1" is not one of the demo's people`},
		{"a button nobody sees", "/api/click", "application/json", map[string]string{"user": alice.ID, "ts": "1.000001", "block": "recovery_approval", "action": "approve_recovery"}, 404, "no message 1.000001"},
		{"another command", "/api/command", "application/json", map[string]string{"user": alice.ID, "text": "/remind me"}, 400, `"/remind" is not a command of this workspace`},
		{"a form post (another page)", "/api/command", "application/x-www-form-urlencoded", nil, 415, "POST needs Content-Type: application/json"},
		{"not JSON", "/api/sample", "application/json", "[", 400, "not the JSON expected"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, a := call(t, d, "POST", c.path, c.ctype, c.body)
			msg, _ := a["error"].(string)
			if m, ok := a["message"].(string); ok {
				msg = m
			}
			if code != c.status || !strings.Contains(msg, c.msg) {
				t.Errorf("got %d %v, want %d with %q", code, a, c.status, c.msg)
			}
		})
	}
	// A page that rebinds its DNS name to 127.0.0.1 reads nothing.
	req, _ := http.NewRequest("GET", d.URL()+"/api/state", nil)
	req.Host = "evil.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("a foreign Host read the state: %d", resp.StatusCode)
	}
	if n := len(d.slack.Messages(channelID)) + len(d.slack.Ephemerals(channelID, alice.ID)); n != 0 {
		t.Errorf("%d messages after the refusals, want none", n)
	}
}

// An event's text is hostile input: a <script> in its summary reaches the
// page as text, on the channel and in the details modal.
func TestDemoShowsScriptAsText(t *testing.T) {
	d, ctx := startDemo(t)
	ev := `{"type":"CAPACITY_WARNING","severity":"WARNING","confidence":0.85,"summary":"<script>alert(1)</script> <img src=x onerror=alert(2)>","data":{"resourceType":"MEMORY","utilization":95}}`
	resp, err := http.Post(d.botURL+"/v1/events", "application/json", strings.NewReader(ev))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, ctx, d, "the plan", func(s *slacktest.Server) bool { return len(s.Messages(channelID)) == 1 })
	html := pageState(t, d, alice).Messages[0].HTML
	if !strings.Contains(html, "&lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=alert(2)&gt;") {
		t.Errorf("the summary is not shown as text:\n%s", html)
	}
	if strings.Contains(html, "<script") || strings.Contains(html, "<img") {
		t.Errorf("the page would get tags from the event:\n%s", html)
	}
}

// RECOVERBOT_DEMO_LISTEN must name this machine: the page acts as an
// approver for whoever reaches it.
func TestDemoListenIsLoopbackOnly(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:8090", true}, {"[::1]:8090", true}, {"localhost:0", true}, {"127.0.0.2:1", true},
		{":8090", false}, {"0.0.0.0:8090", false}, {"[::]:8090", false}, {"10.0.0.1:8090", false}, {"demo.example:8090", false}, {"127.0.0.1", false},
	} {
		t.Run(c.addr, func(t *testing.T) {
			var stderr bytes.Buffer
			getenv := func(k string) string { return map[string]string{"RECOVERBOT_DEMO_LISTEN": c.addr}[k] }
			err := checkListen(c.addr)
			if (err == nil) != c.ok {
				t.Fatalf("checkListen(%q) = %v, want ok %v", c.addr, err, c.ok)
			}
			if c.ok {
				return
			}
			if code := run(context.Background(), nil, getenv, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "RECOVERBOT_DEMO_LISTEN: \""+c.addr+"\" is not") {
				t.Errorf("run exit %d, stderr %q; want 2 naming the setting", code, stderr.String())
			}
		})
	}
}

// lines hands each line written to it to a channel.
type lines chan string

func (l lines) Write(p []byte) (int, error) {
	for _, s := range strings.SplitAfter(string(p), "\n") {
		if s != "" {
			l <- s
		}
	}
	return len(p), nil
}

// make demo's process: run prints the page's address, serves it, and stops
// cleanly (exit 0) when asked to (SIGINT cancels ctx).
func TestDemoRunPrintsTheAddress(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	getenv := func(k string) string { return map[string]string{"RECOVERBOT_DEMO_LISTEN": "127.0.0.1:0"}[k] }
	out := make(lines, 4)
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"-events", "../../examples/events"}, getenv, out, io.Discard) }()
	deadline := time.After(testTimeout)
	var line string
	select {
	case line = <-out:
	case c := <-code:
		t.Fatalf("run ended with %d before printing the address", c)
	case <-deadline:
		t.Fatal("no address printed")
	}
	url, _, ok := strings.Cut(strings.TrimPrefix(line, "recoverbot demo: open "), " ")
	if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("printed %q, want the page's address", line)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(page, pageHTML) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'sha256-") {
		t.Errorf("GET %s: %d, CSP %q, %d bytes", url, resp.StatusCode, resp.Header.Get("Content-Security-Policy"), len(page))
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("run exit %d after a stop, want 0", c)
		}
	case <-deadline:
		t.Fatal("run did not stop")
	}
}

// A sample directory that is not there is said at once.
func TestDemoWithoutSamples(t *testing.T) {
	var stderr bytes.Buffer
	getenv := func(string) string { return "" }
	if code := run(context.Background(), []string{"-events", t.TempDir()}, getenv, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "no sample events (*.json) in ") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

// Each of the six sample events has its button, reaches the bot's intake
// and becomes a plan the channel shows: the low-risk ones run at once, the
// pod restart and the failover wait for a person.
func TestDemoPostsEverySample(t *testing.T) {
	d, ctx := startDemo(t)
	st := pageState(t, d, alice)
	if len(st.Samples) != 6 {
		t.Fatalf("the page offers %d sample events (%v), want the six of examples/events", len(st.Samples), st.Samples)
	}
	decisions := map[string]int{}
	for _, name := range st.Samples {
		code, a := call(t, d, "POST", "/api/sample", "application/json", map[string]string{"name": name})
		if code/100 != 2 || a["plan_id"] == nil {
			t.Fatalf("%s: %d %v", name, code, a)
		}
		decisions[a["decision"].(string)]++
	}
	if decisions["auto"] != 4 || decisions["approval"] != 2 {
		t.Errorf("decisions %v, want 4 auto and 2 approval", decisions)
	}
	waitFor(t, ctx, d, "six plans in the channel", func(s *slacktest.Server) bool { return len(s.Messages(channelID)) == 6 })
}
