package commands

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var t0 = time.Date(2026, 11, 27, 12, 4, 0, 0, time.UTC)

func testSigner(t testing.TB) *Signer {
	t.Helper()
	s, err := NewSigner([]byte("0123456789abcdef0123456789abcdef-test-key"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pendingRestart is the playbook's approval case: a pod restart for a memory
// leak, waiting for a human.
func pendingRestart() *recovery.Execution {
	return &recovery.Execution{
		Plan: recovery.Plan{
			ID: "01KB5Z8Q6M3V0R7T9W2X4Y6Z8A", EventID: "ev-1",
			Event: recovery.Event{ID: "ev-1", Type: runbooks.CapacityWarning, Severity: runbooks.Warning,
				Summary: "Memory at 95% on api-gateway pods: leak suspected (heap > 1.8 GiB & growing)", Confidence: 0.85,
				Data: map[string]any{"resourceType": "MEMORY", "utilization": 95.0}},
			Runbook: "restart-pod-memory-leak", RunbookHash: "4f1c2b9a7d3e5f60718293a4b5c6d7e8f9",
			Actions: []runbooks.Action{{Type: runbooks.RestartPod, Target: runbooks.Target{Deployment: "api-gateway"},
				Parameters: map[string]any{"deployment": "api-gateway", "graceful": true, "drainTimeout": 30.0}, Risk: "high"}},
			Rollback: []string{"undo action 1 (RESTART_POD deployment/default/api-gateway): restore the state observed before it ran"},
			Decision: recovery.DecideApproval,
			Reasons:  []string{"runbook restart-pod-memory-leak requires approval; action 1 (RESTART_POD) is never run without approval"},
			Deadline: t0.Add(5 * time.Minute), TargetKey: "restart-pod-memory-leak|deployment/default/api-gateway",
			Targets: []string{"deployment/default/api-gateway"},
			Safety:  runbooks.Safety{RequiresApproval: true, MaxExecutionsPerHour: 2}, EstimatedRecoveryTime: 3,
		},
		State: recovery.PendingApproval, Version: 1, CreatedAt: t0, UpdatedAt: t0,
	}
}

var describe = []string{"restart deployment api-gateway (rolling, graceful drain 30s)"}

func TestMessageGolden(t *testing.T) {
	sign := testSigner(t)
	approvedAt := t0.Add(90 * time.Second)
	cases := []struct {
		name  string
		x     func() *recovery.Execution
		facts Facts
		pause bool
		desc  []string
		// mustSee are lines a person must read in the message (visible text:
		// headers, sections, buttons, context), besides the golden file;
		// mustNotSee must not be there.
		mustSee, mustNotSee []string
	}{
		{"approval_pending", pendingRestart, Facts{}, false, nil, []string{
			"🤖 Auto-Recovery Approval Required",
			"*Event:* CAPACITY_WARNING (WARNING)", "*Runbook:* restart-pod-memory-leak", "*Confidence:* 85%",
			"*Problem:*\nMemory at 95% on api-gateway pods: leak suspected (heap &gt; 1.8 GiB &amp; growing)",
			"*Planned Actions:*", "_(risk: high)_", "restart deployment api-gateway (rolling, graceful drain 30s)",
			"*Rollback Plan:* Available ✅",
			"*Why approval is needed:*\n• runbook restart-pod-memory-leak requires approval; action 1 (RESTART_POD) is never run without approval",
			"✅ Approve & Execute", "❌ Reject", "🔍 View Details",
			"⏰ This request times out at <!date^1795781340^{time}|12:09 UTC> (5 minutes after it was made): after that, nothing runs.",
		}, []string{"paused", "↩️ Roll back", "Mark as false action"}},
		{"approval_pending_paused", pendingRestart, Facts{}, true, nil, []string{
			"🤖 Auto-Recovery Approval Required", "✅ Approve & Execute", "❌ Reject",
			"⏸️ recoverbot is paused: no new plan is made until someone runs `/recover resume`.",
		}, nil},
		{"approved_executing", func() *recovery.Execution {
			x := pendingRestart()
			x.State, x.ApprovedBy = recovery.Executing, "slack:U0APPROVER"
			x.Steps = []recovery.Step{{Action: 0, Type: "RESTART_POD", Phase: "apply", StartedAt: approvedAt}}
			return x
		}, Facts{ApprovedAt: approvedAt, LastBy: "recoverbot", LastAt: approvedAt, LastTo: recovery.Executing}, false, nil, []string{
			"⚙️ Auto-Recovery Executing", "*Actions:*", "*Why approval was needed:*",
			"*Status:* ✅ Approved by <@U0APPROVER> at <!date^1795781130^{time}|12:05 UTC> · ▶️ executing: progress in the thread",
		}, []string{"Approve & Execute", "❌ Reject", "↩️ Roll back"}},
		{"succeeded_rollback_button", func() *recovery.Execution {
			x := pendingRestart()
			x.State, x.ApprovedBy = recovery.Succeeded, "slack:U0APPROVER"
			x.Steps = []recovery.Step{{Action: 0, Type: "RESTART_POD", Phase: "apply", Before: json.RawMessage(`{"replicas":3}`),
				StartedAt: approvedAt, EndedAt: approvedAt.Add(time.Minute)}}
			return x
		}, Facts{ApprovedAt: approvedAt, LastBy: "recoverbot", LastAt: approvedAt.Add(time.Minute), LastTo: recovery.Succeeded}, false, nil, []string{
			"✅ Auto-Recovery Succeeded",
			"✅ Approved by <@U0APPROVER> at <!date^1795781130^{time}|12:05 UTC> · ✅ Recovery succeeded at <!date^1795781190^{time}|12:06 UTC>",
			"↩️ Roll back", "🏷️ Mark as false action", "🔍 View Details",
		}, []string{"Approve & Execute", "❌ Reject"}},
		{"rejected", func() *recovery.Execution {
			x := pendingRestart()
			x.State = recovery.Rejected
			return x
		}, Facts{LastBy: "slack:U0APPROVER", LastAt: approvedAt, LastTo: recovery.Rejected, LastReason: "rejected by slack:U0APPROVER"}, false, nil, []string{
			"❌ Auto-Recovery Rejected", "*Actions (not executed):*",
			"*Status:* ❌ Rejected by <@U0APPROVER> at <!date^1795781130^{time}|12:05 UTC>: not executed",
		}, []string{"Approve & Execute", "↩️ Roll back", "Mark as false action"}},
		{"expired", func() *recovery.Execution {
			x := pendingRestart()
			x.State = recovery.Expired
			return x
		}, Facts{LastBy: "recoverbot", LastAt: t0.Add(5 * time.Minute), LastTo: recovery.Expired, LastReason: "approval deadline passed"}, false, nil, []string{
			"⏰ Approval timed out — not executed", "*Actions (not executed):*", "*Status:* ⏰ Approval timed out — not executed",
		}, []string{"Approve & Execute", "❌ Reject", "↩️ Roll back"}},
		{"dry_run", func() *recovery.Execution {
			x := pendingRestart()
			x.State, x.Decision, x.Deadline = recovery.DryRun, recovery.DecideDryRun, time.Time{}
			x.Reasons = []string{"mode dry-run: nothing is executed", "would need approval: runbook restart-pod-memory-leak requires approval"}
			return x
		}, Facts{}, false, nil, []string{
			"🧪 Auto-Recovery Dry Run", "*Would do:*", "restart deployment api-gateway (rolling, graceful drain 30s)",
			"*Why it was not executed:*\n• mode dry-run: nothing is executed\n• would need approval: runbook restart-pod-memory-leak requires approval",
			"*Status:* 🧪 Dry run: nothing was executed; this is what would have happened",
		}, []string{"Approve & Execute", "↩️ Roll back", "Mark as false action"}},
		{"auto_succeeded", func() *recovery.Execution {
			x := pendingRestart()
			x.Runbook, x.State, x.Decision, x.Deadline = "clear-cache-on-stale-data", recovery.Succeeded, recovery.DecideAuto, time.Time{}
			x.ApprovedBy = "recoverbot (auto)"
			x.Actions = []runbooks.Action{{Type: runbooks.CacheClear, Parameters: map[string]any{"pattern": "/api/users:*", "graceful": true}}}
			x.Targets = []string{"cache//api/users:*"}
			x.Rollback, x.Reasons = nil, []string{"all guardrails passed: executing without approval"}
			x.Steps = []recovery.Step{{Action: 0, Type: "CACHE_CLEAR", Phase: "apply", StartedAt: t0, EndedAt: t0.Add(time.Second)}}
			return x
		}, Facts{LastBy: "recoverbot", LastAt: t0.Add(time.Second), LastTo: recovery.Succeeded}, false,
			[]string{"clear keys matching /api/users:* (graceful: expire, no blocking delete)"}, []string{
				"✅ Auto-Recovery Succeeded", "*Runbook:* clear-cache-on-stale-data",
				"clear keys matching /api/users:* (graceful: expire, no blocking delete)",
				"*Rollback Plan:* None ⚠️ (nothing this plan does can be restored)",
				"*Guardrails:*\n• all guardrails passed: executing without approval",
				"*Status:* ⚙️ Executed without approval: every guardrail passed · ✅ Recovery succeeded at <!date^1795781041^{time}|12:04 UTC>",
				"🏷️ Mark as false action",
			}, []string{"Approve & Execute", "↩️ Roll back", "Why approval"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := c.x()
			desc := describe
			if c.desc != nil {
				desc = c.desc
			}
			text, blocks := Message(View{X: x, Describe: desc, Facts: c.facts, Paused: c.pause, Signer: sign})
			checkLimits(t, blocks, MaxBlocks, true)
			golden(t, c.name, map[string]any{"text": text, "blocks": blocks})
			seen := visibleText(t, blocks)
			for _, line := range c.mustSee {
				if !strings.Contains(seen, line) {
					t.Errorf("a person must see %q; the message shows:\n%s", line, seen)
				}
			}
			for _, line := range c.mustNotSee {
				if strings.Contains(seen, line) {
					t.Errorf("the message shows %q, it must not:\n%s", line, seen)
				}
			}
		})
	}
}

// visibleText is what a person reads in blocks: every text object's text
// (headers, sections, fields, buttons, context), one per line, in order.
// Ids, values and URLs are left out.
func visibleText(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var x any
	if err := json.Unmarshal(raw, &x); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			// In the order Slack shows them.
			for _, k := range []string{"title", "text", "fields", "elements", "accessory", "blocks", "close", "submit"} {
				if x, ok := v[k]; ok {
					walk(x, k)
				}
			}
		case []any:
			for _, x := range v {
				walk(x, key)
			}
		case string:
			if key == "text" {
				b.WriteString(v)
				b.WriteByte('\n')
			}
		}
	}
	walk(x, "")
	return b.String()
}

// A plan far beyond Block Kit's limits is cut to fit, and says so.
func TestMessageLongPlanIsCut(t *testing.T) {
	x := pendingRestart()
	x.Event.Summary = strings.Repeat("the <heap> & the stack grow; ", 300)
	x.Actions, x.Targets = nil, nil
	var desc []string
	for i := range 80 {
		params := map[string]any{"deployment": fmt.Sprintf("svc-%02d", i), "note": strings.Repeat("x<&>", 900)}
		x.Actions = append(x.Actions, runbooks.Action{Type: runbooks.RestartPod, Target: runbooks.Target{Deployment: fmt.Sprintf("svc-%02d", i)}, Parameters: params})
		x.Targets = append(x.Targets, fmt.Sprintf("deployment/default/svc-%02d", i))
		desc = append(desc, fmt.Sprintf("restart deployment svc-%02d", i))
	}
	_, blocks := Message(View{X: x, Describe: desc, Signer: testSigner(t)})
	checkLimits(t, blocks, MaxBlocks, true)
	all, _ := json.Marshal(blocks)
	if !bytes.Contains(all, []byte("more action(s) not shown here: see *View Details*")) {
		t.Errorf("cut message has no pointer to View Details")
	}
	if !bytes.Contains(all, []byte(`"block_id":"`+BlockApproval+`"`)) {
		t.Errorf("buttons were cut: %s", all)
	}
	golden(t, "long_plan_cut", map[string]any{"blocks": blocks})
	seen := visibleText(t, blocks)
	for _, line := range []string{"🤖 Auto-Recovery Approval Required", "*Problem:*\nthe &lt;heap&gt; &amp; the stack grow;",
		"restart deployment svc-00", "_…and 79 more action(s) not shown here: see *View Details* or `/recover status 01KB5Z8Q6M3V0R7T9W2X4Y6Z8A`._",
		"✅ Approve & Execute", "❌ Reject", "🔍 View Details"} {
		if !strings.Contains(seen, line) {
			t.Errorf("a person must see %q; the message shows:\n%s", line, seen)
		}
	}

	view := DetailsModal(x, desc, Facts{})
	checkLimits(t, view.Blocks.BlockSet, MaxViewBlocks, false)
}

func TestDetailsModalGolden(t *testing.T) {
	x := pendingRestart()
	x.State, x.ApprovedBy = recovery.Succeeded, "slack:U0APPROVER"
	x.Steps = []recovery.Step{{Action: 0, Type: "RESTART_POD", Phase: "apply", Before: json.RawMessage(`{}`), StartedAt: t0, EndedAt: t0.Add(time.Minute)}}
	view := DetailsModal(x, describe, Facts{ApprovedAt: t0, LastTo: recovery.Succeeded, LastAt: t0.Add(time.Minute)})
	checkLimits(t, view.Blocks.BlockSet, MaxViewBlocks, false)
	if n := utf8.RuneCountInString(view.Title.Text); n > 24 {
		t.Errorf("modal title has %d characters, Slack allows 24", n)
	}
	golden(t, "details_modal", view)
	seen := visibleText(t, view)
	for _, line := range []string{"Recovery plan", "*State:* SUCCEEDED",
		"*Status:* ✅ Approved by <@U0APPROVER> at <!date^1795781040^{time}|12:04 UTC> · ✅ Recovery succeeded at <!date^1795781100^{time}|12:05 UTC>",
		"restart deployment api-gateway (rolling, graceful drain 30s)",
		"*Rollback plan* (runs in this order; each undo restores what its driver observed before acting):",
		"*Guardrail reasons:*\n• runbook restart-pod-memory-leak requires approval",
		"\"summary\": \"Memory at 95% on api-gateway pods: leak suspected (heap &gt; 1.8 GiB &amp; growing)\"",
		"*Steps so far:*\n✅ apply action 1 (RESTART_POD)", "runbook hash `4f1c2b9a7d3e`", "Close"} {
		if !strings.Contains(seen, line) {
			t.Errorf("a person must see %q; the modal shows:\n%s", line, seen)
		}
	}
}

// checkLimits applies Slack's Block Kit limits (the ones internal/slacktest
// enforces too): block count, 3,000 characters per section text, 150 per
// header, and the ~12,000-character JSON size for messages.
func checkLimits(t *testing.T, blocks []slack.Block, maxBlocks int, message bool) {
	t.Helper()
	if len(blocks) > maxBlocks {
		t.Errorf("%d blocks, limit %d", len(blocks), maxBlocks)
	}
	for i, b := range blocks {
		switch b := b.(type) {
		case *slack.SectionBlock:
			if n := utf8.RuneCountInString(b.Text.Text); n > MaxSectionText {
				t.Errorf("block %d: section text %d characters", i, n)
			}
		case *slack.HeaderBlock:
			if n := utf8.RuneCountInString(b.Text.Text); n > MaxHeaderText {
				t.Errorf("block %d: header %d characters", i, n)
			}
		}
	}
	if size := BlocksSize(blocks); message && size > 12000 {
		t.Errorf("blocks JSON is %d bytes; Slack refuses more than about 12,000", size)
	}
}

func golden(t *testing.T, name string, v any) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // readable goldens: <!date…>, & and > as they are
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	path := filepath.Join("testdata", name+".golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./commands -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./commands -update rewrites it after review):\ngot:\n%s", path, got)
	}
}

// Event text reaches Slack escaped: a summary or a reason naming
// "slack:U123" stays text; only a notification's own Actor is a mention.
func TestNoteText(t *testing.T) {
	for _, c := range []struct {
		name string
		note recovery.Notification
		want string
	}{
		{"actor becomes a mention", recovery.Notification{Text: "✅ Approved by slack:U123ABC at 12:04:05", Actor: "slack:U123ABC"},
			"✅ Approved by <@U123ABC> at 12:04:05"},
		{"event text stays text", recovery.Notification{Text: "🚫 runbook r: plan refused: ping slack:U123ABC <!channel>"},
			"🚫 runbook r: plan refused: ping slack:U123ABC &lt;!channel&gt;"},
		{"only the actor, not the same id quoted before it", recovery.Notification{Text: "summary slack:U1ABC; marked by slack:U1ABC", Actor: "slack:U1ABC"},
			"summary slack:U1ABC; marked by <@U1ABC>"},
		{"a non-Slack actor is text", recovery.Notification{Text: "rolled back by cli:alice", Actor: "cli:alice"}, "rolled back by cli:alice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := NoteText(c.note); got != c.want {
				t.Errorf("NoteText = %q, want %q", got, c.want)
			}
		})
	}
}

func TestEventTextIsNeverAMention(t *testing.T) {
	x := pendingRestart()
	x.Event.Summary = "paging slack:U123ABC and <@U0ADMIN>"
	x.Reasons = append(x.Reasons, "value slack:U123ABC from the event")
	x.RequestedBy = "slack:U777REQ"
	_, blocks := Message(View{X: x, Signer: testSigner(t)})
	modal := DetailsModal(x, nil, Facts{})
	for name, v := range map[string]any{"message": blocks, "details": modal} {
		got := sent(t, v)
		for _, bad := range []string{"<@U123ABC>", "<@U0ADMIN>"} {
			if strings.Contains(got, bad) {
				t.Errorf("%s turns event text into the mention %s:\n%s", name, bad, got)
			}
		}
		if !strings.Contains(got, "<@U777REQ>") {
			t.Errorf("%s: requested by is not a mention:\n%s", name, got)
		}
	}
}

// sent is v as JSON with <, > and & unescaped: what Slack reads as mrkdwn.
func sent(t *testing.T, v any) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	// Block types marshal themselves with json.Marshal, which escapes anyway.
	return strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(b.String())
}
