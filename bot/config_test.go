package bot

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/internal/testutil"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/claude"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
)

// The AI and breaker settings: documented defaults, file then environment,
// whole numbers parsed from the environment, every refusal naming the key
// and its variable; the key and the endpoint only from the environment.
func TestConfigAIAndBreakerSettings(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	c, err := LoadConfig("", env())
	if err != nil {
		t.Fatal(err)
	}
	if c.AIModel != claude.DefaultModel || c.AITimeout != 5*time.Second || c.BlastMaxAuto != 10 || c.BlastMaxTargets != 20 {
		t.Errorf("defaults: model %q timeout %s blast %d/%d", c.AIModel, c.AITimeout, c.BlastMaxAuto, c.BlastMaxTargets)
	}

	dir := t.TempDir()
	f := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(f, []byte("ai_model: claude-from-file\nai_timeout: 3s\nblast_max_auto: 4\nblast_max_targets: 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = LoadConfig(f, env("RECOVERBOT_BLAST_MAX_TARGETS", "40", "RECOVERBOT_AI_TIMEOUT", "8s"))
	if err != nil {
		t.Fatal(err)
	}
	e := c.Engine()
	if c.AIModel != "claude-from-file" || e.AITimeout != 8*time.Second || e.BlastMaxAuto != 4 || e.BlastMaxTargets != 40 {
		t.Errorf("file then environment: model %q, engine %+v", c.AIModel, e)
	}
	c, err = LoadConfig("", env("RECOVERBOT_AI_MAX_CONCURRENT", "2", "RECOVERBOT_AI_PER_MINUTE", "9", "RECOVERBOT_AI_FOLD_WINDOW", "1m", "RECOVERBOT_AI_PROMPT_BYTES", "2048"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Engine().AIBudget, (recovery.AIBudget{MaxConcurrent: 2, PerMinute: 9, FoldWindow: time.Minute, PromptBytes: 2048}); got != want {
		t.Errorf("AI budget %+v, want %+v", got, want)
	}
	d := DefaultConfig()
	if got, want := d.Engine().AIBudget, recovery.DefaultAIBudget(); got != want {
		t.Errorf("default AI budget %+v, want %+v", got, want)
	}
	if got, want := d.Engine().SilenceMax, recovery.DefaultSilenceMax; got != want {
		t.Errorf("default silence_max %s, want %s", got, want)
	}
	for _, ok := range []string{"1m", "24h"} {
		c, err := LoadConfig("", env("RECOVERBOT_SILENCE_MAX", ok, "RECOVERBOT_ALERTMANAGER_URL", "http://alertmanager:9093"))
		if want, _ := time.ParseDuration(ok); err != nil || c.Engine().SilenceMax != want {
			t.Errorf("RECOVERBOT_SILENCE_MAX=%s: %v, %v; want the engine's maximum %s", ok, c.Engine().SilenceMax, err, want)
		}
	}

	for _, bad := range []struct {
		env  func(string) string
		want string
	}{
		{env("RECOVERBOT_BLAST_MAX_AUTO", "ten"), `RECOVERBOT_BLAST_MAX_AUTO: "ten" is not a whole number`},
		{env("RECOVERBOT_BLAST_MAX_TARGETS", "2.5"), `RECOVERBOT_BLAST_MAX_TARGETS: "2.5" is not a whole number`},
		{env("RECOVERBOT_BLAST_MAX_AUTO", "0"), "config blast_max_auto (RECOVERBOT_BLAST_MAX_AUTO): 0 is outside 1..100000"},
		{env("RECOVERBOT_BLAST_MAX_TARGETS", "-3"), "config blast_max_targets (RECOVERBOT_BLAST_MAX_TARGETS): -3 is outside 1..100000"},
		{env("RECOVERBOT_AI_TIMEOUT", "10m"), "config ai_timeout (RECOVERBOT_AI_TIMEOUT): 10m0s is outside 1s..1m"},
		{env("RECOVERBOT_AI_TIMEOUT", "soon"), `RECOVERBOT_AI_TIMEOUT: "soon" is not a Go duration`},
		{env("RECOVERBOT_AI_MODEL", "claude sonnet"), `config ai_model (RECOVERBOT_AI_MODEL): "claude sonnet" is not a model name`},
		{env("RECOVERBOT_AI_MAX_CONCURRENT", "0"), "config ai_max_concurrent (RECOVERBOT_AI_MAX_CONCURRENT): 0 is outside 1..64"},
		{env("RECOVERBOT_AI_PER_MINUTE", "-1"), "config ai_per_minute (RECOVERBOT_AI_PER_MINUTE): -1 is outside 1..10000"},
		{env("RECOVERBOT_AI_FOLD_WINDOW", "0s"), "config ai_fold_window (RECOVERBOT_AI_FOLD_WINDOW): 0s is outside 1s..24h"},
		{env("RECOVERBOT_AI_PROMPT_BYTES", "100"), "config ai_prompt_bytes (RECOVERBOT_AI_PROMPT_BYTES): 100 is outside 1024..1048576"},
		{env("RECOVERBOT_SILENCE_MAX", "25h"), "config silence_max (RECOVERBOT_SILENCE_MAX): 25h0m0s is outside 1m..24h"},
		{env("RECOVERBOT_SILENCE_MAX", "59s"), "config silence_max (RECOVERBOT_SILENCE_MAX): 59s is outside 1m..24h"},
		{env("RECOVERBOT_ALERTMANAGER_URL", "alertmanager:9093"), `config alertmanager_url (RECOVERBOT_ALERTMANAGER_URL): "alertmanager:9093" is not an http(s) URL`},
	} {
		if _, err := LoadConfig("", bad.env); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("err %v, want %q", err, bad.want)
		}
	}
	// The key is a secret: the file has no place for it.
	if err := os.WriteFile(f, []byte("anthropic_api_key: sk-in-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(f, env()); err == nil || !strings.Contains(err.Error(), "anthropic_api_key") {
		t.Errorf("a key in the config file: %v, want the unknown key named", err)
	}

	c = DefaultConfig()
	if adv, _, err := c.Advisor(env("ANTHROPIC_BASE_URL", "http://127.0.0.1:1")); adv != nil || err != nil {
		t.Errorf("without ANTHROPIC_API_KEY: advisor %v, %v; want none: nothing of AI planning runs", adv, err)
	}
	adv, endpoint, err := c.Advisor(env("ANTHROPIC_API_KEY", "sk-test"))
	if cl, ok := adv.(*claude.Client); err != nil || !ok || cl.BaseURL != "https://api.anthropic.com" || cl.Model != claude.DefaultModel || endpoint != "https://api.anthropic.com" {
		t.Errorf("with the key: %#v, %q, %v", adv, endpoint, err)
	}
	adv, endpoint, err = c.Advisor(env("ANTHROPIC_API_KEY", "sk-test", "ANTHROPIC_BASE_URL", "https://user:secret@llm-proxy.internal:8443/anthropic/"))
	if cl, ok := adv.(*claude.Client); err != nil || !ok || cl.BaseURL != "https://user:secret@llm-proxy.internal:8443/anthropic" || endpoint != "https://llm-proxy.internal:8443" {
		t.Errorf("with ANTHROPIC_BASE_URL: %#v, endpoint %q (credentials must not be in it), %v", adv, endpoint, err)
	}
	if _, _, err := c.Advisor(env("ANTHROPIC_API_KEY", "sk-test", "ANTHROPIC_BASE_URL", "ftp://secret@x")); err == nil ||
		!strings.Contains(err.Error(), "ANTHROPIC_BASE_URL is not an http(s) URL") || strings.Contains(err.Error(), "secret") {
		t.Errorf("bad ANTHROPIC_BASE_URL: %v, want it named without repeating the value", err)
	}
}

// Serve wires AI planning from the environment: ANTHROPIC_API_KEY turns it
// on (said in one start-up line that never shows the key),
// ANTHROPIC_BASE_URL points it at another endpoint, RECOVERBOT_AI_MODEL picks
// the model; /recover ask's engine path then reaches that endpoint (here
// through the admin API's /v1/ask). Without the key it is off, said so, and
// nothing calls out. /v1/status shows the breaker.
func TestServeAIPlanningFromEnvironment(t *testing.T) {
	for _, on := range []bool{true, false} {
		name := map[bool]string{true: "key set", false: "no key"}[on]
		t.Run(name, func(t *testing.T) {
			ai := newFakeAnthropic(t)
			ai.script(toolUse(failoverProposal))
			env := map[string]string{"RECOVERBOT_MODE": "full", "RECOVERBOT_LISTEN": "127.0.0.1:0",
				"RECOVERBOT_DATA": filepath.Join(t.TempDir(), "r.db"), "RECOVERBOT_AI_MODEL": "claude-custom",
				"ANTHROPIC_BASE_URL": ai.srv.URL}
			if on {
				env["ANTHROPIC_API_KEY"] = "sk-test"
			}
			getenv := func(k string) string { return env[k] }
			cfg, err := LoadConfig("", getenv)
			if err != nil {
				t.Fatal(err)
			}
			logs := &testutil.SyncBuffer{}
			ctx, cancel := context.WithTimeout(context.Background(), slackTimeout)
			defer cancel()
			runCtx, stop := context.WithCancel(ctx)
			addr, done := make(chan string, 1), make(chan error, 1)
			go func() {
				done <- Serve(runCtx, cfg, Options{Getenv: getenv, Log: NewLogger("text", logs), Drivers: logdriver.New(nil).All(),
					Ready: func(a string) { addr <- a }})
			}()
			var base string
			select {
			case base = <-addr:
			case err := <-done:
				t.Fatalf("Serve: %v", err)
			}
			defer func() {
				stop()
				if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("Serve: %v", err)
				}
			}()

			resp, err := http.Post("http://"+base+"/v1/ask", "application/json", strings.NewReader(`{"question":"payments is slow"}`))
			if err != nil {
				t.Fatal(err)
			}
			var ans struct {
				PlanID   string `json:"plan_id"`
				Decision string `json:"decision"`
				Msg      string `json:"message"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&ans)
			resp.Body.Close()
			log := logs.String()
			if strings.Contains(log, "sk-test") {
				t.Errorf("the key is in the log:\n%s", log)
			}
			if on {
				if resp.StatusCode != http.StatusAccepted || ans.Decision != "approval" || ans.PlanID == "" {
					t.Errorf("/v1/ask: %d %+v", resp.StatusCode, ans)
				}
				reqs := ai.proposals()
				if len(reqs) != 1 || reqs[0]["model"] != "claude-custom" {
					t.Errorf("requests to the AI: %v, want one for model claude-custom", reqs)
				}
				if !strings.Contains(log, "AI planning on") || !strings.Contains(log, "model=claude-custom") ||
					!strings.Contains(log, "timeout=5s") || !strings.Contains(log, "endpoint="+ai.srv.URL) {
					t.Errorf("start-up log lacks the AI line:\n%s", log)
				}
			} else {
				if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(ans.Msg, "AI planning is off (set ANTHROPIC_API_KEY)") {
					t.Errorf("/v1/ask without the key: %d %+v", resp.StatusCode, ans)
				}
				if n := len(ai.proposals()); n != 0 {
					t.Errorf("%d requests to the AI without a key", n)
				}
				if !strings.Contains(log, "AI planning off: ANTHROPIC_API_KEY is not set") {
					t.Errorf("start-up log lacks the AI line:\n%s", log)
				}
			}

			resp, err = http.Get("http://" + base + "/v1/status")
			if err != nil {
				t.Fatal(err)
			}
			var st map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if b, ok := st["breaker"]; !ok || b != "" {
				t.Errorf(`/v1/status "breaker" = %v (present %v), want "" while closed`, b, ok)
			}
		})
	}
}

// recoverbot.example.yaml loads as it is, and with every commented-out key
// turned on: each key it shows is a real one (the file is strict).
func TestExampleConfigLoads(t *testing.T) {
	raw, err := os.ReadFile("../recoverbot.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	none := func(string) string { return "" }
	if _, err := LoadConfig("../recoverbot.example.yaml", none); err != nil {
		t.Fatalf("as shipped: %v", err)
	}
	on := regexp.MustCompile(`(?m)^# ([a-z_]+: )`).ReplaceAll(raw, []byte("$1"))
	if n := strings.Count(string(raw), "\n# ") - strings.Count(string(on), "\n# "); n < 5 {
		t.Fatalf("only %d commented-out keys found", n)
	}
	f := filepath.Join(t.TempDir(), "all.yaml")
	if err := os.WriteFile(f, on, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(f, none)
	if err != nil {
		t.Fatalf("with every key on: %v", err)
	}
	if c.SlackChannel != "C0123456789" || c.AIModel != claude.DefaultModel || c.AITimeout != 5*time.Second || c.BlastMaxAuto != 10 {
		t.Errorf("example values: %+v", c)
	}
}

func TestCheckEnvNamesTheMisspeltVariableAndTheClosestSetting(t *testing.T) {
	misspelt := "RECOVERBOT_" + "MDOE" // split so the every-variable test below does not find it
	err := CheckEnv([]string{"HOME=/root", "RECOVERBOT_MODE=dry-run", misspelt + "=full"})
	if err == nil {
		t.Fatal("got no error for a misspelt setting")
	}
	for _, want := range []string{misspelt, "did you mean RECOVERBOT_MODE?"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to contain %q", err, want)
		}
	}
}

// Every RECOVERBOT_* variable the repository mentions (README, code, tests,
// Makefile) is accepted: a new one must be added to Config or otherEnv.
func TestCheckEnvAcceptsEveryVariableTheRepositoryMentions(t *testing.T) {
	re := regexp.MustCompile(`RECOVERBOT_[A-Z0-9_]*[A-Z0-9]`)
	seen := map[string]bool{}
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !(strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".md") || d.Name() == "Makefile" || strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".sh")) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllString(string(b), -1) {
			seen[m] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !seen["RECOVERBOT_MODE"] || !seen["RECOVERBOT_ADMIN_URL"] || !seen["RECOVERBOT_TEST_REDIS_URL"] {
		t.Fatalf("the scan found too little: %v", seen)
	}
	var env []string
	for name := range seen {
		env = append(env, name+"=x")
	}
	if err := CheckEnv(env); err != nil {
		t.Errorf("got %v, want every mentioned variable accepted", err)
	}
}
