package long

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/internal/slacktest"
	"github.com/recoverbot/recoverbot/test/harness"
)

// TestAckCrashKill9 runs the real binary against internal/slacktest and
// kill -9s it at the moment its ack of an Approve click reaches Slack,
// before Slack takes it: the ack is lost with the process. The bot acks a
// click only after the approval is committed, so:
//
//   - after the restart the plan is still approved (the approval was durable
//     before the ack was sent): it is not PENDING_APPROVAL;
//   - Slack redelivers the click (retry_attempt 1) and the new process
//     answers it from the store ("already approved … nothing more was done",
//     or "INTERRUPTED now: nothing was done" when the kill caught the run),
//     and acks it;
//   - the audit trail has exactly one approval.
//
// Had the bot acked first (as slacker does), the kill would find no approval
// in the store.
func TestAckCrashKill9(t *testing.T) {
	requireLong(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	books, err := filepath.Abs(filepath.Join("testdata", "runbooks"))
	if err != nil {
		t.Fatal(err)
	}
	var b *harness.Bot
	var armed atomic.Bool
	srv := slacktest.New(slacktest.WithOnAck(func(a slacktest.Ack) {
		// The ack is in Slack's hands but not taken yet: kill the bot now.
		if a.Type == "interactive" && armed.CompareAndSwap(true, false) {
			b.Kill9()
		}
	}))
	t.Cleanup(srv.Close)
	srv.AddUser("U1", "alice")
	srv.AddChannel("C1", "incident")

	addr := harness.FreeAddr(t)
	b = &harness.Bot{Bin: harness.Binary(t), Addr: addr, LogPath: filepath.Join(dir, "bot.log"), Env: map[string]string{
		"RECOVERBOT_LISTEN":          addr,
		"RECOVERBOT_DATA":            filepath.Join(dir, "bot.db"),
		"RECOVERBOT_MODE":            "full",
		"RECOVERBOT_DRIVERS":         "log",
		"RECOVERBOT_RUNBOOKS":        books,
		"RECOVERBOT_SLACK_CHANNEL":   "C1",
		"RECOVERBOT_SLACK_APPROVERS": "U1",
		"SLACK_BOT_TOKEN":            srv.BotToken(),
		"SLACK_APP_TOKEN":            srv.AppToken(),
		"SLACK_API_URL":              srv.APIURL(),
	}}
	t.Cleanup(b.Kill9)
	a := harness.NewAPI(addr, 2)

	b.Start(t)
	must(t, srv.WaitConnections(ctx, 1), "socket")
	body, _ := json.Marshal(map[string]any{"id": "ack-crash-1", "type": "RATE_LIMIT_BREACH", "severity": "WARNING",
		"confidence": 0.9, "summary": "ack crash", "data": map[string]any{}, "context": map[string]any{"client": "c1"}})
	code, resp, err := a.Do(ctx, "POST", "/v1/events", body)
	var ans harness.Answer
	if err != nil || code/100 != 2 || json.Unmarshal(resp, &ans) != nil || ans.Decision != "approval" {
		t.Fatalf("POST /v1/events: %d %s %v, want a plan awaiting approval", code, resp, err)
	}
	var root slacktest.Message
	must(t, srv.WaitFor(ctx, func(s *slacktest.Server) bool {
		for _, m := range s.Messages("C1") {
			if strings.Contains(m.Text, ans.PlanID) && approveValue(m) != "" {
				root = m
				return true
			}
		}
		return false
	}), "the plan's message")

	armed.Store(true)
	srv.LoseNextAck("interactive")
	click := srv.Click("U1", "C1", root.TS, commands.ActionApprove, commands.BlockApproval, approveValue(root))
	must(t, srv.WaitFor(ctx, func(s *slacktest.Server) bool { return slices.Contains(s.LostAcks(), click) }), "the approval's ack")
	if armed.Load() {
		t.Fatal("the ack was lost but the bot was not killed")
	}

	b.Start(t)
	var x harness.Execution
	must(t, a.GetJSON(ctx, "/v1/executions/"+ans.PlanID, &x), "the plan after the kill")
	if x.Execution.State == "PENDING_APPROVAL" {
		t.Fatalf("after kill -9 at the ack the plan is PENDING_APPROVAL: the click was acked before its approval was durable")
	}
	must(t, srv.WaitConnections(ctx, 2), "the restarted bot's socket")
	if got := srv.RedeliverUnacked(); !slices.Equal(got, []string{click}) {
		t.Fatalf("unacked envelopes = %q, want the click %s", got, click)
	}
	_, err = srv.WaitAck(ctx, click)
	must(t, err, "ack of the redelivered click")
	must(t, srv.WaitFor(ctx, func(s *slacktest.Server) bool { return len(s.Ephemerals("C1", "U1")) > 0 }), "a reply to the redelivery")
	// The store answers: approved already, or INTERRUPTED when the kill
	// caught the run (start-up interrupts APPROVED and EXECUTING plans).
	if got := srv.Ephemerals("C1", "U1")[0].Text; !strings.Contains(got, ans.PlanID) || !strings.Contains(got, "nothing was done") && !strings.Contains(got, "nothing more was done") {
		t.Errorf("reply to the redelivered click = %q, want the plan's state and that nothing was done", got)
	}
	must(t, a.GetJSON(ctx, "/v1/executions/"+ans.PlanID, &x), "the plan after the redelivery")
	approvals := 0
	for _, r := range x.Audit {
		if r.To == "APPROVED" {
			approvals++
		}
	}
	if approvals != 1 {
		t.Errorf("%d approvals in the audit trail, want 1: %+v", approvals, x.Audit)
	}
	harness.Report(t, "ack crash: killed at the ack, plan %s was %s after the restart; the redelivery was answered from the store", ans.PlanID, x.Execution.State)
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// approveValue is the value of the message's Approve button, "" when it has
// none.
func approveValue(m slacktest.Message) string {
	var blocks []struct {
		Elements []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
		} `json:"elements"`
	}
	if json.Unmarshal(m.Blocks, &blocks) != nil {
		return ""
	}
	for _, b := range blocks {
		for _, e := range b.Elements {
			if e.ActionID == commands.ActionApprove {
				return e.Value
			}
		}
	}
	return ""
}
