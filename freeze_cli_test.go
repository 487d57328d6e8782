package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The CLI's freezes against a running bot (in-process serve, real HTTP and
// bbolt): a table for people, -o json for scripts, exit 2 for usage, a
// freeze that survives a restart, and a recurring window from the config
// file listed beside it.
func TestCLIFreezes(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "recoverbot.yaml")
	if err := os.WriteFile(cfg, []byte(`freeze_windows:
  - name: always
    cron: "* * * * *"
    duration: 1h
    time_zone: Europe/Paris
    runbook: restart-pod-memory-leak
    reason: change window
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"RECOVERBOT_LISTEN": "127.0.0.1:0", "RECOVERBOT_DATA": filepath.Join(dir, "bot.db"),
		"RECOVERBOT_MODE": "full", "RECOVERBOT_CONFIG": cfg,
		"RECOVERBOT_ADMIN_TOKENS": "ops:UE2E=admin-0123456789", "RECOVERBOT_ADMIN_TOKEN": "admin-0123456789",
		"RECOVERBOT_SLACK_APPROVERS": "UE2E", "RECOVERBOT_DRIVERS": "log"}
	addr, stop, _ := server(t, env)
	env["RECOVERBOT_ADMIN_URL"] = "http://" + addr

	for _, c := range []struct {
		name string
		args []string
		msg  string
	}{
		{"freeze without a reason", []string{"freeze", "1h"}, "a duration and a reason are required"},
		{"freeze with a bad duration", []string{"freeze", "soon", "deploy"}, `"soon" is not a duration`},
		{"unfreeze without an id", []string{"unfreeze"}, "give one freeze id or --all"},
		{"unfreeze with an id and --all", []string{"unfreeze", "fz_1", "--all"}, "give one freeze id or --all"},
	} {
		t.Run(c.name+" is a usage error", func(t *testing.T) {
			if code, _, errs := cli(t, env, c.args...); code != 2 || !strings.Contains(errs, c.msg) {
				t.Errorf("got %d %q, want 2 and %q", code, errs, c.msg)
			}
		})
	}
	if code, _, errs := cli(t, env, "freeze", "1h", "x", "--runbook", "nope"); code != 1 || !strings.Contains(errs, `no runbook named "nope" (HTTP 404)`) {
		t.Errorf("unknown runbook: %d %s, want 1 and the bot's refusal", code, errs)
	}

	code, out, errs := cli(t, env, "freeze", "90m", "deploying", "payments", "--runbook", "clear-cache-on-stale-data")
	m := regexp.MustCompile(`(?m)^Frozen: runbook clear-cache-on-stale-data until \S+ \((fz_\w+)\)\. Plans in scope wait for approval\.$`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("freeze: %d %s %s", code, out, errs)
	}
	id := m[1]
	stop() // a restart: the freeze is in bbolt
	addr, _, _ = server(t, env)
	env["RECOVERBOT_ADMIN_URL"] = "http://" + addr

	code, out, errs = cli(t, env, "freezes")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !regexp.MustCompile(`^ID +SCOPE +UNTIL +LEFT +BY +REASON$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^`+id+` +runbook clear-cache-on-stale-data +\S+Z +1h\d+m\d+s +slack:UE2E +deploying payments$`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^window:always +runbook restart-pod-memory-leak +\S+Z +\S+ +config +change window$`).MatchString(lines[2]) {
		t.Fatalf("freezes table: %d %s\n%s", code, errs, out)
	}
	code, out, _ = cli(t, env, "freezes", "-o", "json")
	var v struct {
		Freezes []struct{ ID, Window string } `json:"freezes"`
	}
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || len(v.Freezes) != 2 || v.Freezes[0].ID != id || v.Freezes[1].Window != "always" {
		t.Fatalf("freezes -o json: %d %v %s", code, err, out)
	}
	if code, _, errs := cli(t, env, "unfreeze", "window:always"); code != 1 || !strings.Contains(errs, "recurring window from the config file") {
		t.Errorf("unfreeze a window: %d %s", code, errs)
	}
	code, out, errs = cli(t, env, "unfreeze", id)
	if code != 0 || !strings.Contains(out, "Lifted 1 freeze.") || !regexp.MustCompile(id+` .* slack:UE2E, lifted by slack:UE2E `).MatchString(out) {
		t.Fatalf("unfreeze: %d %s %s", code, out, errs)
	}
	if code, out, _ := cli(t, env, "freezes"); code != 0 || strings.Contains(out, id) || !strings.Contains(out, "window:always") {
		t.Errorf("after unfreeze: %d\n%s", code, out)
	}
}

// A bad window stops serve before it listens, naming file:line.
func TestServeRefusesABadFreezeWindow(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "recoverbot.yaml")
	if err := os.WriteFile(cfg, []byte("mode: full\nfreeze_windows:\n  - name: x\n    cron: '0 25 * * *'\n    duration: 1h\n    reason: r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := cli(t, map[string]string{"RECOVERBOT_CONFIG": cfg, "RECOVERBOT_DATA": filepath.Join(dir, "bot.db")}, "serve")
	if code != 1 || !strings.Contains(errs, cfg+":3: freeze_windows[0].cron:") {
		t.Errorf("got %d %q, want 1 naming %s:3", code, errs, cfg)
	}
}
