package commands

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/recoverbot/recoverbot/recovery"
)

// homeWith builds a Home around the playbook's pending restart: a second
// plan awaiting approval, one verifying, two finished, and the metrics
// computed from them.
func homeWith(t *testing.T, paused bool, breaker string) Home {
	t.Helper()
	second := pendingRestart()
	second.ID, second.Runbook = "01KB5Z9A0000000000000000B2", "failover-upstream"
	second.Targets = []string{"upstream/payments-api", "upstream/payments-api-dr"}
	second.Reasons = []string{"blast-radius breaker open: every plan needs a human"}
	verifying := pendingRestart()
	verifying.ID, verifying.State, verifying.ApprovedBy = "01KB5Z7000000000000000000C", recovery.Verifying, "slack:U0APPROVER"
	succeeded := pendingRestart()
	succeeded.ID, succeeded.State, succeeded.Decision, succeeded.Runbook = "01KB5Z6000000000000000000D", recovery.Succeeded, recovery.DecideAuto, "clear-cache-on-stale-data"
	succeeded.Targets = []string{"cache/default/api/users:*"}
	succeeded.CreatedAt = t0.Add(-time.Hour)
	rejected := pendingRestart()
	rejected.ID, rejected.State = "01KB5Z5000000000000000000E", recovery.Rejected
	rejected.CreatedAt = t0.Add(-2 * time.Hour)
	all := []recovery.Execution{*second, *pendingRestart(), *verifying, *succeeded, *rejected}
	return Home{
		Pending:  []recovery.Execution{*second, *pendingRestart()},
		Running:  []recovery.Execution{*verifying},
		Finished: []recovery.Execution{*succeeded, *rejected},
		Paused:   paused, Breaker: breaker, Mode: recovery.ModeFull,
		Stats:  recovery.ComputeStats(all, t0.Add(-HomeStatsWindow), t0.Add(time.Minute)),
		At:     t0.Add(time.Minute),
		Signer: testSigner(t),
	}
}

func TestHomeViewGolden(t *testing.T) {
	sign := testSigner(t)
	cases := []struct {
		name                string
		home                Home
		mustSee, mustNotSee []string
	}{
		{"home_busy_paused_breaker", frozen(homeWith(t, true, "11 automatic executions within 1h0m0s")), []string{
			"recoverbot", "Mode `full` · as of <!date^1795781100^{time}|12:05 UTC>",
			"⏸️ *Paused*: no new plan is made until an approver runs `/recover resume`.",
			"🚨 *Blast-radius breaker open* (11 automatic executions within 1h0m0s)",
			"🧊 *1 freeze* (plans in scope wait for approval):\n• `fz_01KB5Z9000000000000000000F` runbook failover-upstream until <!date^1795784400^{time}|13:00 UTC> — deploying payments (by U0ALICE)",
			"*Awaiting approval (2)*",
			"*failover-upstream* · `01KB5Z9A0000000000000000B2`",
			"*Targets:* `upstream/payments-api`, `upstream/payments-api-dr`",
			"*restart-pod-memory-leak* · `01KB5Z8Q6M3V0R7T9W2X4Y6Z8A`",
			"*Event:* CAPACITY_WARNING (WARNING): Memory at 95% on api-gateway pods: leak suspected (heap &gt; 1.8 GiB &amp; growing)",
			"*Targets:* `deployment/default/api-gateway`",
			"⏰ times out <!date^1795781340^{time}|12:09 UTC>: after that, nothing runs",
			"✅ Approve & Execute", "❌ Reject", "🔍 View Details",
			"*Running and verifying (1)*\n• `01KB5Z7000000000000000000C` restart-pod-memory-leak · *VERIFYING*",
			"*Last 10 finished*\n• `01KB5Z6000000000000000000D` clear-cache-on-stale-data · *SUCCEEDED*",
			"· `cache/default/api/users:*`",
			"• `01KB5Z5000000000000000000E` restart-pod-memory-leak · *REJECTED*",
			"*Success metrics*\n```Success metrics, last 24h",
			"auto-heal rate",
		}, []string{"▶️ *Active*", "Nothing awaits approval", "↩️ Roll back", "deployment//"}},
		{"home_quiet", Home{Mode: recovery.ModeDryRun, At: t0, Signer: sign,
			Stats: recovery.ComputeStats(nil, t0.Add(-HomeStatsWindow), t0)}, []string{
			"▶️ *Active*: events are planned, and plans run under the usual guardrails.",
			"*Awaiting approval (0)*", "Nothing awaits approval.",
			"*Running and verifying (0)*\n_Nothing is running._",
			"*Last 10 finished*\n_Nothing has finished yet._",
			"No incidents in this window yet.",
		}, []string{"Paused", "breaker", "Approve & Execute"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := HomeView(c.home)
			if v.Type != slack.VTHomeTab {
				t.Errorf("view type %q, want home", v.Type)
			}
			checkLimits(t, v.Blocks.BlockSet, MaxViewBlocks, false)
			checkBlockIDs(t, v.Blocks.BlockSet)
			// The blocks as a slice: slack.Blocks' own MarshalJSON would
			// escape <, > and & and make the golden file unreadable.
			golden(t, c.name, map[string]any{"type": v.Type, "callback_id": v.CallbackID, "blocks": v.Blocks.BlockSet})
			seen := visibleText(t, v)
			for _, line := range c.mustSee {
				if !strings.Contains(seen, line) {
					t.Errorf("a person must see %q; the Home shows:\n%s", line, seen)
				}
			}
			for _, line := range c.mustNotSee {
				if strings.Contains(seen, line) {
					t.Errorf("the Home shows %q, it must not:\n%s", line, seen)
				}
			}
		})
	}
}

// The Home's buttons are the channel message's: the same action ids and
// signed values, under a block id naming the plan, which HomeBlock knows.
func TestHomeButtonsAreTheMessages(t *testing.T) {
	h := homeWith(t, false, "")
	x := &h.Pending[1]
	_, msg := Message(View{X: x, Signer: h.Signer})
	want := map[string]string{}
	for _, b := range msg {
		if a, ok := b.(*slack.ActionBlock); ok {
			for _, e := range a.Elements.ElementSet {
				btn := e.(*slack.ButtonBlockElement)
				want[btn.ActionID] = btn.Value
			}
		}
	}
	var got map[string]string
	for _, b := range HomeView(h).Blocks.BlockSet {
		a, ok := b.(*slack.ActionBlock)
		if !ok || a.BlockID != HomeBlockID(BlockApproval, x.ID) {
			continue
		}
		if !HomeBlock(a.BlockID) {
			t.Errorf("HomeBlock(%q) = false", a.BlockID)
		}
		got = map[string]string{}
		for _, e := range a.Elements.ElementSet {
			btn := e.(*slack.ButtonBlockElement)
			got[btn.ActionID] = btn.Value
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(want) != 3 {
		t.Errorf("Home buttons %v, want the message's %v", got, want)
	}
	if id, err := h.Signer.Verify(ActionApprove, got[ActionApprove]); err != nil || id != x.ID {
		t.Errorf("Home Approve value verifies as %q, %v", id, err)
	}
	for _, id := range []string{BlockApproval, BlockOutcome, BlockApproval + ":", "other:" + x.ID} {
		if HomeBlock(id) {
			t.Errorf("HomeBlock(%q) = true", id)
		}
	}
}

// Many plans awaiting approval still fit a view: the first ones are listed
// with their buttons, the rest counted; long lists are cut at a line.
func TestHomeViewManyPlansFits(t *testing.T) {
	h := homeWith(t, true, "breaker")
	h.Pending, h.Running = nil, nil
	for i := range 45 {
		x := pendingRestart()
		x.ID = fmt.Sprintf("01KB5Z8Q6M3V0R7T9W2X4Y%04d", i)
		x.Event.Summary = strings.Repeat("<&> ", 400)
		x.Targets = []string{strings.Repeat("deployment/default/very-long-name-", 20)}
		h.Pending = append(h.Pending, *x)
		h.Running = append(h.Running, *x)
	}
	v := HomeView(h)
	checkLimits(t, v.Blocks.BlockSet, MaxViewBlocks, false)
	checkBlockIDs(t, v.Blocks.BlockSet)
	seen := visibleText(t, v)
	for _, want := range []string{
		fmt.Sprintf("_…and %d more not shown here: `/recover status` lists them all._", 45-homePendingShown),
		"more: `/recover history` lists them._",
	} {
		if !strings.Contains(seen, want) {
			t.Errorf("the Home must say %q", want)
		}
	}
	raw, _ := json.Marshal(v)
	if n := strings.Count(string(raw), `"action_id":"approve_recovery"`); n != homePendingShown {
		t.Errorf("%d Approve buttons, want %d", n, homePendingShown)
	}
}

// checkBlockIDs fails on a block_id used twice: Slack refuses such a view.
func checkBlockIDs(t *testing.T, blocks []slack.Block) {
	t.Helper()
	seen := map[string]bool{}
	for _, b := range blocks {
		var v struct {
			BlockID string `json:"block_id"`
		}
		raw, _ := json.Marshal(b)
		_ = json.Unmarshal(raw, &v)
		id := v.BlockID
		if id == "" {
			continue
		}
		if seen[id] {
			t.Errorf("block_id %q used twice", id)
		}
		seen[id] = true
	}
}

// frozen adds a freeze of one runbook to h: the Home says what holds the bot.
func frozen(h Home) Home {
	h.Freezes = []recovery.Freeze{{ID: "fz_01KB5Z9000000000000000000F", Reason: "deploying payments", Runbook: "failover-upstream",
		Start: t0.Add(-5 * time.Minute), End: time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC), By: "U0ALICE"}}
	return h
}
