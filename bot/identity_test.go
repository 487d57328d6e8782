package bot

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/recovery"
)

const guardedFailover = `
name: guarded-failover
trigger: {eventType: UPSTREAM_DEGRADATION, conditions: {confidence: {min: 0.5}}}
actions:
  - type: FAILOVER
    parameters: {from: '{{upstream}}', to: '{{backup_service}}'}
safety: {requiresApproval: true, maxExecutionsPerHour: 5}
approvers: [UALICE, UBOB]
fourEyes: true
`

const (
	aliceTok = "alice-token-0123456789"
	bobTok   = "bob-token-0123456789"
	carolTok = "carol-token-0123456789"
	botTok   = "deploy-bot-token-0123456789"
)

// Issue #12 item 4: who acts through the admin API comes from the token, not
// from a header; approvals obey the runbook's approvers and four-eyes as in
// Slack, comparing people. On main alice, who asked for the plan in Slack,
// approved it herself through the CLI (as cli:<anything>), and anyone with
// the admin token approved whatever the approver list said.
func TestAdminIdentityFromTokens(t *testing.T) {
	h := newAPIWith(t, recovery.ModeFull, writeRunbook(t, guardedFailover), func(a *API) {
		a.AdminTokens = []AdminToken{{"alice", "UALICE", aliceTok}, {"bob", "UBOB", bobTok}, {"carol", "UCAROL", carolTok}, {"deploy-bot", "", botTok}}
		a.Approvers = commands.NewApprovers([]string{"UBOB"}, nil, 0, nil)
	})
	ctx := context.Background()
	ans, err := h.eng.PlanManual(ctx, "guarded-failover", map[string]any{"upstream": "pay", "backup_service": "pay-dr"}, commands.Actor("UALICE"))
	if err != nil || ans.PlanID == "" {
		t.Fatalf("plan: %+v %v", ans, err)
	}
	approve := "/v1/executions/" + ans.PlanID + "/approve"
	claim := map[string]string{"Content-Type": "application/json", "X-Recoverbot-Actor": "bob"}
	for _, c := range []struct {
		name, method, path, token string
		status                    int
		msg                       string
	}{
		{"the requester, through the CLI", "POST", approve, aliceTok, 403, "four-eyes: slack:UALICE requested this plan and cannot approve it"},
		{"not on the runbook's list", "POST", approve, carolTok, 403, "slack:UCAROL is not an approver for guarded-failover"},
		{"a token of no Slack user", "POST", approve, botTok, 403, `admin token "deploy-bot" names no Slack user id`},
		{"a token of no Slack user pauses", "POST", "/v1/pause", botTok, 403, "not an approver for recoverbot"},
		{"a runbook approver not on the global list pauses", "POST", "/v1/pause", aliceTok, 403, "slack:UALICE is not an approver for recoverbot"},
		{"no token", "POST", approve, "", 401, "missing bearer token"},
		{"a wrong token", "POST", approve, "alice-token-0123456780", 401, "wrong bearer token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{"Content-Type": "application/json", "X-Recoverbot-Actor": "bob"} // claims are ignored
			if c.token != "" {
				hdr["Authorization"] = "Bearer " + c.token
			}
			if r := h.raw(c.method, c.path, "", hdr, nil); r.status != c.status || !strings.Contains(r.raw, c.msg) {
				t.Errorf("got %d %s, want %d containing %q", r.status, r.raw, c.status, c.msg)
			}
		})
	}
	if x, _ := h.db.Execution(ctx, ans.PlanID); x.State != recovery.PendingApproval || h.eng.Paused() {
		t.Fatalf("after the refusals: %s, paused %v; want nothing changed", x.State, h.eng.Paused())
	}
	who := h.raw("GET", "/v1/whoami", "", map[string]string{"Authorization": "Bearer " + botTok, "X-Recoverbot-Actor": "bob"}, nil)
	if who.body["actor"] != "token:deploy-bot" {
		t.Errorf("whoami with deploy-bot's token: %s", who.raw)
	}

	claim["Authorization"] = "Bearer " + bobTok
	if r := h.raw("POST", approve, "", claim, nil); r.status != 200 {
		t.Fatalf("bob approves: %d %s", r.status, r.raw)
	}
	if r := h.raw("POST", "/v1/pause", "", claim, nil); r.status != 200 || !h.eng.Paused() {
		t.Fatalf("bob pauses: %d %s", r.status, r.raw)
	}
	_ = h.eng.Idle(ctx)
	x, _ := h.db.Execution(ctx, ans.PlanID)
	if x.ApprovedBy != "slack:UBOB" {
		t.Errorf("approved by %q, want slack:UBOB (bob's token acts as his Slack user)", x.ApprovedBy)
	}
	audit, _ := h.db.AuditSince(ctx, t0.Add(-time.Hour))
	var refusals []string
	approvedBy := ""
	for _, a := range audit {
		if a.To == recovery.Approved {
			approvedBy = a.Actor
		}
		if strings.Contains(a.Reason, "admin API") && strings.Contains(a.Reason, "refused") {
			refusals = append(refusals, a.Actor)
		}
	}
	if approvedBy != "slack:UBOB" {
		t.Errorf("audit: approved by %q, want slack:UBOB", approvedBy)
	}
	if want := []string{"slack:UALICE", "slack:UCAROL", "token:deploy-bot", "token:deploy-bot", "slack:UALICE"}; !slices.Equal(refusals, want) {
		t.Errorf("audited refusals by %q, want %q", refusals, want)
	}
	// The audit names the person; a refusal also names the credential.
	if !slices.ContainsFunc(audit, func(a recovery.AuditRecord) bool {
		return a.Actor == "slack:UALICE" && strings.Contains(a.Reason, "admin API approve refused (admin token alice): four-eyes")
	}) {
		t.Errorf("no audited refusal of alice's own approval naming her token: %+v", audit)
	}
}

// Without admin tokens the loopback caller is the local operator "local":
// it decides only on an offline bot (nobody else can), and never approves a
// four-eyes plan someone requested (it cannot show it is not the requester).
func TestLocalOperator(t *testing.T) {
	dir := writeRunbook(t, guardedFailover)
	values := map[string]any{"upstream": "pay", "backup_service": "pay-dr"}
	local := map[string]string{"Content-Type": "application/json"}

	slackMode := newAPIWith(t, recovery.ModeFull, dir, func(a *API) {})
	plan := slackMode.do("POST", "/v1/events", "", []byte(`{"type":"UPSTREAM_DEGRADATION","severity":"WARNING","confidence":0.9,"context":{"upstream":"pay","backup_service":"pay-dr"}}`))
	id, _ := plan.body["plan_id"].(string)
	if id == "" {
		t.Fatalf("event: %d %s", plan.status, plan.raw)
	}
	if r := slackMode.raw("POST", "/v1/executions/"+id+"/approve", "", local, nil); r.status != 403 || !strings.Contains(r.raw, "the local operator (no admin token) may not approve here") {
		t.Errorf("local approves with Slack approvers in charge: %d %s, want 403", r.status, r.raw)
	}
	if r := slackMode.raw("GET", "/v1/whoami", "", nil, nil); r.body["actor"] != "local" {
		t.Errorf("whoami: %s", r.raw)
	}

	offline := newAPIWith(t, recovery.ModeFull, dir, func(a *API) { a.Approvers.LocalDecides = true })
	ans, err := offline.eng.PlanManual(context.Background(), "guarded-failover", values, commands.Actor("UALICE"))
	if err != nil {
		t.Fatal(err)
	}
	if r := offline.raw("POST", "/v1/executions/"+ans.PlanID+"/approve", "", local, nil); r.status != 403 || !strings.Contains(r.raw, "four-eyes: the local operator cannot approve a plan someone requested") {
		t.Errorf("local approves a four-eyes plan: %d %s, want 403", r.status, r.raw)
	}
	if r := offline.raw("POST", "/v1/executions/"+ans.PlanID+"/reject", "", local, nil); r.status != 200 {
		t.Errorf("local rejects offline: %d %s, want 200", r.status, r.raw)
	}
	_ = slackMode.eng.Idle(context.Background())
	_ = offline.eng.Idle(context.Background())
}

// Named admin tokens are strict, never echo a token, and short tokens are
// refused at start-up.
func TestConfigAdminTokensAndAllowedHosts(t *testing.T) {
	load := func(env map[string]string) error {
		_, err := LoadConfig("", func(k string) string { return env[k] })
		return err
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		msg  string
	}{
		{"a short admin token", map[string]string{"RECOVERBOT_ADMIN_TOKENS": "alice=s3cr3t"}, "admin_tokens (RECOVERBOT_ADMIN_TOKENS): entry 1 (alice): the token must be at least 16 characters (it is 6)"},
		{"a short intake token", map[string]string{"RECOVERBOT_INTAKE_TOKEN": "s3cr3t"}, "intake_token (RECOVERBOT_INTAKE_TOKEN): must be at least 16 characters"},
		{"a short CLI token", map[string]string{"RECOVERBOT_ADMIN_TOKEN": "s3cr3t"}, "admin_token (RECOVERBOT_ADMIN_TOKEN): must be at least 16 characters"},
		{"no name", map[string]string{"RECOVERBOT_ADMIN_TOKENS": "=s3cr3t-0123456789"}, `entry 1: name "" must be 1-64 letters`},
		{"no =", map[string]string{"RECOVERBOT_ADMIN_TOKENS": "s3cr3t-0123456789"}, `entry 1 has no "="`},
		{"a user group for a person", map[string]string{"RECOVERBOT_ADMIN_TOKENS": "ops:S0123=s3cr3t-0123456789"}, `entry 1 (ops): "S0123" is not a Slack user id`},
		{"a name twice", map[string]string{"RECOVERBOT_ADMIN_TOKENS": "a=s3cr3t-0123456789, a=s3cr3t-9876543210"}, `entry 2: name "a" is given twice`},
		{"a token twice", map[string]string{"RECOVERBOT_ADMIN_TOKENS": "a=s3cr3t-0123456789,b=s3cr3t-0123456789"}, "entry 2 (b): the same token is given to another name"},
		{"a URL for a host", map[string]string{"RECOVERBOT_ALLOWED_HOSTS": "https://bot.example.com"}, `allowed_hosts (RECOVERBOT_ALLOWED_HOSTS): "https://bot.example.com" is not a host name`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := load(c.env)
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err %v, want %q", err, c.msg)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error repeats a token: %v", err)
			}
		})
	}
	env := map[string]string{"RECOVERBOT_ADMIN_TOKENS": " alice:U0123=s3cr3t-0123456789 , deploy-bot=s3cr3t-9876543210 ", "RECOVERBOT_ALLOWED_HOSTS": "bot.example.com, 10.0.0.5"}
	cfg, err := LoadConfig("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	tokens, hosts := cfg.API()
	want := []AdminToken{{"alice", "U0123", "s3cr3t-0123456789"}, {"deploy-bot", "", "s3cr3t-9876543210"}}
	if !slices.Equal(tokens, want) || !slices.Equal(hosts, []string{"bot.example.com", "10.0.0.5"}) {
		t.Errorf("tokens %+v hosts %q", tokens, hosts)
	}
	// The unnamed RECOVERBOT_ADMIN_TOKEN alone would leave the server's admin
	// API without credentials: serve refuses it.
	cfg, err = LoadConfig("", func(k string) string {
		return map[string]string{"RECOVERBOT_ADMIN_TOKEN": "s3cr3t-0123456789", "RECOVERBOT_DATA": t.TempDir() + "/bot.db"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := Serve(context.Background(), cfg, Options{Getenv: func(string) string { return "" }, Log: slog.New(slog.DiscardHandler)}); err == nil || !strings.Contains(err.Error(), "RECOVERBOT_ADMIN_TOKENS") {
		t.Errorf("serve with RECOVERBOT_ADMIN_TOKEN alone: %v, want a refusal naming RECOVERBOT_ADMIN_TOKENS", err)
	}
}
