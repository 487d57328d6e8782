package main

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
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/internal/testutil"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
)

// server runs `recoverbot serve` in-process (run, as main calls it) on
// 127.0.0.1:0 with a temp database, and returns its address and a stop func
// that cancels it like SIGTERM and returns run's exit code.
func server(t *testing.T, env map[string]string) (addr string, stop func() int, logs *testutil.SyncBuffer) {
	t.Helper()
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	logs = &testutil.SyncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve"}, getenv, io.Discard, pw)
		pw.Close()
	}()
	addrCh := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`msg="recoverbot listening" addr=(\S+)`)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintln(logs, sc.Text())
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrCh <- m[1]
			}
		}
		close(addrCh)
	}()
	addr, ok := <-addrCh
	if !ok {
		t.Fatalf("server did not start; log:\n%s", logs.String())
	}
	stopped := false
	var code int
	stop = func() int {
		if !stopped {
			stopped = true
			cancel()
			code = <-done
		}
		return code
	}
	t.Cleanup(func() { stop() })
	return addr, stop, logs
}

func cli(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errb)
	return code, out.String(), errb.String()
}

func TestServeAndDriveWithTheCLI(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data", "bot.db")
	env := map[string]string{"RECOVERBOT_LISTEN": "127.0.0.1:0", "RECOVERBOT_DATA": data,
		"RECOVERBOT_MODE": "full", "RECOVERBOT_INTAKE_TOKEN": "intake-0123456789",
		// The CLI presents the operator's own named token; the bot takes her
		// for Slack user UE2E, an approver.
		"RECOVERBOT_ADMIN_TOKENS": "ops:UE2E=admin-0123456789", "RECOVERBOT_ADMIN_TOKEN": "admin-0123456789",
		"RECOVERBOT_SLACK_APPROVERS": "UE2E", "RECOVERBOT_DRIVERS": "log"}
	addr, stop, logs := server(t, env)
	if !strings.Contains(logs.String(), "offline mode") {
		t.Errorf("no offline-mode line in the start-up log:\n%s", logs.String())
	}
	env["RECOVERBOT_ADMIN_URL"] = "http://" + addr

	body, _ := os.ReadFile("examples/events/restart-pod-memory-leak.json")
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/events", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer intake-0123456789")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ans recovery.Answer
	_ = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if resp.StatusCode != 202 || ans.Decision != recovery.DecideApproval {
		t.Fatalf("intake: %d %+v", resp.StatusCode, ans)
	}

	code, out, _ := cli(t, env, "executions", "--state", "PENDING_APPROVAL")
	if code != 0 || !strings.Contains(out, ans.PlanID) {
		t.Fatalf("executions: %d %s", code, out)
	}
	// For people: a header and aligned columns, like kubectl get.
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 ||
		!regexp.MustCompile(`^ID +STATE +RUNBOOK +DECISION +TARGETS +EVENT +AGE$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^`+ans.PlanID+` +PENDING_APPROVAL +restart-pod-memory-leak +approval +deployment/default/api-gateway +`+ans.EventID+` +\d+s$`).MatchString(lines[1]) {
		t.Errorf("executions table:\n%s", out)
	}
	// -o json: the admin API's JSON, as the CLI has always printed it.
	code, out, _ = cli(t, env, "executions", "--state", "PENDING_APPROVAL", "-o", "json")
	var list struct {
		Executions []struct {
			ID      string
			Targets []string
		} `json:"executions"`
	}
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list.Executions) != 1 || list.Executions[0].ID != ans.PlanID ||
		!slices.Equal(list.Executions[0].Targets, []string{"deployment/default/api-gateway"}) {
		t.Errorf("executions -o json: %d %v %s", code, err, out)
	}
	code, out, _ = cli(t, env, "show", ans.PlanID)
	for _, want := range []string{"ID:", ans.PlanID, "State:", "PENDING_APPROVAL", "Targets:", "deployment/", "Audit:", "ACTOR"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("show: %d, want %q in:\n%s", code, want, out)
		}
	}
	if code, out, _ := cli(t, env, "show", ans.PlanID, "-o", "json"); code != 0 || !json.Valid([]byte(out)) || !strings.Contains(out, `"execution": {`) {
		t.Errorf("show -o json: %d %s", code, out)
	}
	if code, _, errs := cli(t, env, "approve", ans.PlanID); code != 0 {
		t.Fatalf("approve: %d %s", code, errs)
	}
	code, _, errs := cli(t, env, "approve", ans.PlanID)
	if code != 1 || !strings.Contains(errs, "is APPROVED") && !strings.Contains(errs, "is EXECUTING") && !strings.Contains(errs, "is SUCCEEDED") {
		t.Fatalf("second approve: %d %q, want a refusal naming the state", code, errs)
	}
	code, out, _ = cli(t, env, "audit", "--since", "1h")
	if code != 0 || !regexp.MustCompile(`(?m)^AGE +EXECUTION +ACTOR +MOVE +REASON$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^\d+s +`+ans.PlanID+` +slack:UE2E +PENDING_APPROVAL→APPROVED `).MatchString(out) {
		t.Errorf("audit table: %d\n%s", code, out)
	}
	code, out, _ = cli(t, env, "audit", "--since", "1h", "-o", "json")
	if code != 0 || !strings.Contains(out, `"actor":"slack:UE2E"`) {
		t.Fatalf("audit: %d %s", code, out)
	}
	if code, out, errs := cli(t, env, "whoami"); code != 0 || !strings.Contains(out, `"actor": "slack:UE2E"`) || !strings.Contains(out, `"name": "ops"`) {
		t.Fatalf("whoami: %d %s %s", code, out, errs)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("audit line is not JSON: %s", line)
		}
	}
	if code, out, errs := cli(t, env, "stats", "--window", "1h"); code != 0 || !strings.Contains(out, "auto-heal rate") || !strings.Contains(out, "1 incidents") {
		t.Fatalf("stats: %d %s %s", code, out, errs)
	}
	if code, out, errs := cli(t, env, "stats", "--window", "1h", "-o", "json"); code != 0 || !json.Valid([]byte(out)) || !strings.Contains(out, `"stats": {`) {
		t.Fatalf("stats -o json: %d %s %s", code, out, errs)
	}
	if code, _, errs := cli(t, env, "executions", "-o", "yaml"); code != 2 || !strings.Contains(errs, "yaml") {
		t.Errorf("executions -o yaml: %d %s, want 2 (usage)", code, errs)
	}
	if code, _, errs := cli(t, env, "ask", "payments", "is", "slow"); code != 1 || !strings.Contains(errs, "AI planning is off") {
		t.Fatalf("ask without ANTHROPIC_API_KEY: %d %s", code, errs)
	}
	if code, _, errs := cli(t, env, "stats", "--window", "forever"); code != 1 || !strings.Contains(errs, "must be a Go duration") {
		t.Fatalf("stats with a bad window: %d %s", code, errs)
	}
	if code, _, errs := cli(t, map[string]string{"RECOVERBOT_ADMIN_URL": env["RECOVERBOT_ADMIN_URL"], "RECOVERBOT_ADMIN_TOKEN": "wrong-0123456789"}, "pause"); code != 1 || !strings.Contains(errs, "wrong bearer token") {
		t.Fatalf("pause with a wrong token: %d %s", code, errs)
	}

	// SIGTERM: run returns 0 and bbolt is closed (a second open succeeds at once).
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d; log:\n%s", code, logs.String())
	}
	db, err := store.Open(data)
	if err != nil {
		t.Fatalf("reopen after shutdown: %v", err)
	}
	defer db.Close()
	x, err := db.Execution(context.Background(), ans.PlanID)
	if err != nil || x.ApprovedBy == "" {
		t.Fatalf("execution after restart: %+v %v", x, err)
	}
}

func TestServeRefusesBadRunbooks(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("name: x\ntrigger: {eventType: NOPE}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	env := map[string]string{"RECOVERBOT_RUNBOOKS": dir, "RECOVERBOT_DATA": filepath.Join(t.TempDir(), "b.db"), "RECOVERBOT_LISTEN": "127.0.0.1:0"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, []string{"serve"}, func(k string) string { return env[k] }, io.Discard, &errb)
	if code != 1 || !strings.Contains(errb.String(), "bad.yaml:2") {
		t.Fatalf("serve with a bad runbook: exit %d, log %s; want 1 and bad.yaml:2", code, errb.String())
	}
}

func TestServeRefusesUnconfiguredBackendsOutsideDryRun(t *testing.T) {
	env := map[string]string{"RECOVERBOT_MODE": "full", "RECOVERBOT_DATA": filepath.Join(t.TempDir(), "b.db"), "RECOVERBOT_LISTEN": "127.0.0.1:0"}
	var errb bytes.Buffer
	code := run(context.Background(), []string{"serve"}, func(k string) string { return env[k] }, io.Discard, &errb)
	for _, want := range []string{"RECOVERBOT_REDIS_URL", "RECOVERBOT_GATEWAY_URL", "RECOVERBOT_KUBECONFIG", "restart-pod-memory-leak"} {
		if code != 1 || !strings.Contains(errb.String(), want) {
			t.Fatalf("exit %d, log %s: want 1 naming %s", code, errb.String(), want)
		}
	}
	// In dry-run mode the same configuration starts (nothing can run anyway).
	env["RECOVERBOT_MODE"] = "dry-run"
	addr, stop, logs := server(t, env)
	if addr == "" || !strings.Contains(logs.String(), "backend not configured") {
		t.Fatalf("dry-run start: log %s", logs.String())
	}
	stop()
}

func TestValidate(t *testing.T) {
	code, out, _ := cli(t, nil, "validate")
	if code != 0 || !strings.HasPrefix(out, "ok: 6 runbooks") {
		t.Fatalf("validate defaults: %d %q", code, out)
	}
	dir := t.TempDir()
	bad := "name: a\ntrigger: {eventType: LATENCY_ANOMALY}\nactions: [{type: EXPLODE}]\nsafety: {maxExecutionsPerHour: 1}\n---\nname: b\nbogus: 1\n"
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := cli(t, nil, "validate", dir)
	if code != 1 || !strings.Contains(errs, "r.yaml:3") || !strings.Contains(errs, "r.yaml:7") {
		t.Fatalf("validate bad dir: %d\n%s\nwant exit 1 with r.yaml:3 and r.yaml:7 (every error at once)", code, errs)
	}
	// A literal value its driver refuses, with the action's line.
	refused := "name: a\ntrigger: {eventType: LATENCY_ANOMALY}\nactions:\n- {type: RESTART_POD, target: {deployment: API}}\nsafety: {maxExecutionsPerHour: 1}\n"
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(refused), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs = cli(t, nil, "validate", dir)
	if code != 1 || !strings.Contains(errs, `r.yaml:4: runbook a: actions[0] (RESTART_POD): invalid deployment name "API"`) {
		t.Fatalf("validate a refused literal: %d\n%s\nwant exit 1 naming r.yaml:4 and the driver's reason", code, errs)
	}
}

func TestUnknownCommandAndConfigErrors(t *testing.T) {
	if code, _, errs := cli(t, nil, "frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %s", code, errs)
	}
	if code, _, errs := cli(t, map[string]string{"RECOVERBOT_MODE": "yolo"}, "serve"); code != 1 || !strings.Contains(errs, "RECOVERBOT_MODE") {
		t.Fatalf("bad mode: %d %s", code, errs)
	}
	if code, _, errs := cli(t, nil, "show"); code != 2 || !strings.Contains(errs, "id is required") {
		t.Fatalf("show without id: %d %s", code, errs)
	}
}

// A short admin or intake token stops the start-up, naming the setting and
// never the token (issue #12: tokens shorter than 16 characters).
func TestServeRefusesShortTokens(t *testing.T) {
	for _, env := range []map[string]string{
		{"RECOVERBOT_ADMIN_TOKENS": "ops:U0123=adm"},
		{"RECOVERBOT_INTAKE_TOKEN": "in"},
	} {
		env["RECOVERBOT_DATA"] = filepath.Join(t.TempDir(), "bot.db")
		code, _, errs := cli(t, env, "serve")
		if code != 1 || !strings.Contains(errs, "at least 16 characters") || strings.Contains(errs, "=adm") {
			t.Errorf("serve with %v: %d %q, want 1 naming the 16-character minimum", env, code, errs)
		}
	}
}

// Scripts can tell "asked wrong" (2) from "the bot is not there or said no" (1);
// --help is an answer (0) on every command.
func TestCLIExitCodesAndHelp(t *testing.T) {
	for _, cmd := range []string{"serve", "validate", "settings", "executions", "show", "event", "approve", "reject",
		"rollback", "false", "pause", "resume", "freeze", "unfreeze", "freezes", "audit", "quarantine", "deadletters", "stats", "ask", "whoami", "version"} {
		t.Run(cmd+" --help prints the usage and exits 0", func(t *testing.T) {
			code, out, errs := cli(t, nil, cmd, "--help")
			if code != 0 || !strings.HasPrefix(out, "usage: recoverbot ") || !strings.Contains(out, cmd) || errs != "" {
				t.Errorf("got %d %q %q, want 0 and the usage on stdout", code, out, errs)
			}
		})
	}
	if code, out, _ := cli(t, nil, "executions", "-h"); code != 0 || !strings.Contains(out, "-o string") || !strings.Contains(out, "--state S") {
		t.Errorf("executions -h: %d %s, want its flags", code, out)
	}
	// A port nothing listens on: the address of a closed listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	for _, c := range []struct {
		name string
		args []string
		want int
	}{
		{"unknown command is a usage error", []string{"nope"}, 2},
		{"unknown flag is a usage error", []string{"executions", "--nope"}, 2},
		{"missing id is a usage error", []string{"show"}, 2},
		{"bad output is a usage error", []string{"audit", "-o", "xml"}, 2},
		{"bot not reachable is 1", []string{"executions"}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := cli(t, map[string]string{"RECOVERBOT_ADMIN_URL": down}, c.args...)
			if code != c.want {
				t.Errorf("got %d (%s), want %d", code, errs, c.want)
			}
		})
	}
}
