package commands

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
)

// offlineSlack refuses every Web API call: the fuzzed commands must answer
// through their Reply, whatever Slack does.
type offlineSlack struct{}

var errOffline = errors.New("slack is not reachable in this test")

func (offlineSlack) GetUserGroupMembersContext(context.Context, string) ([]string, error) {
	return nil, errOffline
}
func (offlineSlack) PostMessageContext(context.Context, string, ...slack.MsgOption) (string, string, error) {
	return "", "", errOffline
}
func (offlineSlack) PostEphemeralContext(context.Context, string, string, ...slack.MsgOption) (string, error) {
	return "", errOffline
}
func (offlineSlack) OpenViewContext(context.Context, string, slack.ModalViewRequest) (*slack.ViewResponse, error) {
	return nil, errOffline
}

// FuzzSlashCommand sends arbitrary /recover text through the real handler and
// engine: never a panic, always a reply that says something, and no driver is
// ever called (plans from chat always wait for approval).
func FuzzSlashCommand(f *testing.F) {
	for _, s := range []string{
		"", "help", "runbooks", "plan restart-pod-memory-leak", "plan clear-cache-on-stale-data route=/api/users",
		"plan clear-cache-on-stale-data route=*", "plan open-circuit-breaker upstream=a;b", "dryrun failover-upstream-degraded upstream=x backup_service=y",
		"dryrun 01M8DMRDN7D95K7JJM9JEHGW6B", "rollback", "rollback ../../etc", "status", "status 01M8", "history 0", "history 51 2",
		"pause now", "resume", "stats 7d", "stats forever", "ask", "false", "false x y", "plan a=b=c", "plan x ===",
		"plan clear-cache-on-stale-data route=&lt;script&gt;", "PLAN  Clear-Cache-On-Stale-Data", "plan \u201cquoted\u201d route=/a",
		strings.Repeat("plan ", 500), "plan clear-cache-on-stale-data " + strings.Repeat("k=v ", 200),
	} {
		f.Add(s)
	}
	books, err := runbooks.LoadDefaults()
	if err != nil {
		f.Fatal(err)
	}
	db, err := store.Open(filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = db.Close() })
	drv := logdriver.New(nil)
	cfg := recovery.DefaultConfig()
	cfg.Mode = recovery.ModeFull
	eng := recovery.New(cfg, db, books, drv.All())
	if err := eng.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = eng.Close(context.Background()) })
	signer, err := NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		f.Fatal(err)
	}
	h := &Handler{Engine: eng, Slack: offlineSlack{}, Channel: "C1", Signer: signer,
		Approvers: NewApprovers([]string{"U1"}, offlineSlack{}, time.Minute, time.Now)}
	f.Fuzz(func(t *testing.T, text string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rep := h.Command(ctx, Request{User: "U1", Channel: "C1", Text: text})
		if rep == nil || strings.TrimSpace(rep.Text) == "" && len(rep.Blocks) == 0 {
			t.Fatalf("/recover %q: an empty reply", text)
		}
		if n := len(drv.Calls()); n != 0 {
			t.Fatalf("/recover %q: %d driver calls, want none", text, n)
		}
	})
}
