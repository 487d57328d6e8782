package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/slack-go/slack"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/internal/slacktest"
	"github.com/recoverbot/recoverbot/recovery"
)

// publishes records views.publish calls in memory, for the pacing test
// (which runs in a synctest bubble, where no socket may be opened).
type publishes struct {
	mu    sync.Mutex
	calls []string // "user:text of the first block"
}

func (p *publishes) PublishViewContext(_ context.Context, user string, v slack.HomeTabViewRequest, _ string) (*slack.ViewResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, user+":"+v.Blocks.BlockSet[0].(*slack.SectionBlock).Text.Text)
	return &slack.ViewResponse{}, nil
}

func (p *publishes) all() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

// A storm of changes makes one republish round per gap, each to every
// viewer and showing the latest state; an open publishes at once, for the
// opener only; the viewers remembered are bounded.
func TestHomeRepublishCoalesced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var state atomic.Int64
		var renders atomic.Int64
		rec := &publishes{}
		h := newHomeTab(rec, func(context.Context) (slack.HomeTabViewRequest, error) {
			renders.Add(1)
			b := slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, fmt.Sprint("state ", state.Load()), false, false), nil, nil)
			return slack.HomeTabViewRequest{Type: slack.VTHomeTab, Blocks: slack.Blocks{BlockSet: []slack.Block{b}}}, nil
		}, time.Second, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan struct{})
		go func() { defer close(done); h.run(ctx) }()

		h.opened("U1")
		synctest.Wait()
		h.opened("U2")
		synctest.Wait()
		if got, want := strings.Join(rec.all(), " "), "U1:state 0 U2:state 0"; got != want {
			t.Fatalf("after two opens: %s, want %s", got, want)
		}

		state.Store(1)
		h.noted(recovery.Notification{Kind: recovery.NoteState})
		synctest.Wait() // the first round runs at once, then waits out its gap
		for i := range 1000 {
			state.Store(int64(2 + i))
			h.noted(recovery.Notification{Kind: recovery.NoteState})
			h.noted(recovery.Notification{Kind: recovery.NoteStep}) // a thread reply: the Home does not change
		}
		synctest.Wait()
		if got, want := strings.Join(rec.all()[2:], " "), "U1:state 1 U2:state 1"; got != want {
			t.Fatalf("during the gap: %s, want only the first round %s", got, want)
		}
		time.Sleep(h.every)
		synctest.Wait()
		if got, want := strings.Join(rec.all()[2:], " "), "U1:state 1 U2:state 1 U1:state 1001 U2:state 1001"; got != want {
			t.Fatalf("1,001 changes published as %s, want two rounds %s", got, want)
		}
		if n := renders.Load(); n != 4 { // two opens, two rounds
			t.Errorf("%d renders, want 4", n)
		}

		// A step alone asks for nothing.
		time.Sleep(h.every)
		h.noted(recovery.Notification{Kind: recovery.NoteStep})
		synctest.Wait()
		if n := len(rec.all()); n != 6 {
			t.Errorf("%d publishes after a step notification, want still 6", n)
		}

		for i := range homeMaxViewers + 10 {
			time.Sleep(time.Millisecond) // distinct open times: the oldest is forgotten first
			h.remember(fmt.Sprintf("W%03d", i))
		}
		viewers := h.current()
		if len(viewers) != homeMaxViewers || viewers[0] != "W010" {
			t.Errorf("%d viewers from %s, want the %d most recent from W010", len(viewers), viewers[0], homeMaxViewers)
		}
		time.Sleep(homeViewerTTL + time.Minute)
		if v := h.current(); len(v) != 0 {
			t.Errorf("viewers not seen for %s still kept current: %v", homeViewerTTL, v)
		}
		cancel()
		<-done
		if err := h.wait(t.Context()); err != nil {
			t.Error(err)
		}
	})
}

// homeShows waits until user's App Home contains every want.
func (h *slackHarness) homeShows(user string, want ...string) slacktest.View {
	h.t.Helper()
	var v slacktest.View
	h.waitFor(fmt.Sprintf("%s's Home to show %q", user, want), func(s *slacktest.Server) bool {
		var ok bool
		if v, ok = s.HomeTab(user); !ok {
			return false
		}
		text := blocksText(v.Blocks)
		for _, w := range want {
			if !strings.Contains(text, w) {
				return false
			}
		}
		return true
	})
	return v
}

// homeButton finds a button's value in a Home view.
func homeButton(t *testing.T, v slacktest.View, blockID, actionID string) string {
	t.Helper()
	var blocks []struct {
		BlockID  string `json:"block_id"`
		Elements []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
		} `json:"elements"`
	}
	if err := json.Unmarshal(v.Blocks, &blocks); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		for _, e := range b.Elements {
			if b.BlockID == blockID && e.ActionID == actionID {
				return e.Value
			}
		}
	}
	t.Fatalf("no %s button in block %s of the Home: %s", actionID, blockID, v.Blocks)
	return ""
}

// The App Home, against the in-repo Slack server: published when a person
// opens it, with the plan awaiting approval and its buttons; a click there
// goes through the same checks as in the channel (a forged value and a
// non-approver are refused, privately, in the incident channel, and
// audited); an approver's click runs the plan, and every open Home is
// republished as the plan moves and when the bot is paused.
func TestSlackAppHome(t *testing.T) {
	h := newSlackHarness(t, harnessConfig{})
	id, root := h.pending(memoryLeak())

	ack := h.srv.AppHomeOpened(bystander)
	_, err := h.srv.WaitAck(h.ctx, ack)
	h.must(err, "ack of app_home_opened")
	home := h.homeShows(bystander, "*Awaiting approval (1)*", "`"+id+"`", "*Targets:* `deployment/default/api-gateway`",
		"*Running and verifying (0)*", "_Nothing is running._", "*Last 10 finished*", "_Nothing has finished yet._",
		"*Success metrics*", "▶️ *Active*")
	if home.Type != "home" {
		t.Fatalf("published a %q view, want home", home.Type)
	}
	block := commands.HomeBlockID(commands.BlockApproval, id)
	value := homeButton(t, home, block, commands.ActionApprove)
	if value != buttonValue(t, root, commands.ActionApprove) {
		t.Errorf("the Home's Approve value %q differs from the message's", value)
	}

	// A value the bot did not sign: refused and audited, nothing runs.
	before := len(h.srv.Ephemerals(incident, bystander))
	_, err = h.srv.WaitAck(h.ctx, h.srv.ClickHome(bystander, commands.ActionApprove, block, id+".forged"))
	h.must(err, "ack of forged click")
	if e := h.nextEphemeral(bystander, incident, before, "forged Home click"); !strings.Contains(e.Text, "not one recoverbot made") {
		t.Errorf("forged Home click answered %q", e.Text)
	}
	// A non-approver: the same refusal as in the channel, privately.
	before = len(h.srv.Ephemerals(incident, bystander))
	_, err = h.srv.WaitAck(h.ctx, h.srv.ClickHome(bystander, commands.ActionApprove, block, value))
	h.must(err, "ack of bystander click")
	if e := h.nextEphemeral(bystander, incident, before, "bystander Home click"); e.Text != "You are not an approver for restart-pod-memory-leak." {
		t.Errorf("bystander's Home click answered %q, want the approver refusal", e.Text)
	}
	if got := h.refusals(id); len(got) != 1 || !strings.Contains(got[0], "slack:"+bystander+" refused: approve: "+bystander+" is not an approver") {
		t.Errorf("refusals audited: %q", got)
	}
	if n := h.applies(); n != 0 {
		t.Fatalf("%d driver applies after refused Home clicks", n)
	}

	// View Details from the Home opens the modal, as in the channel.
	_, err = h.srv.WaitAck(h.ctx, h.srv.ClickHome(bystander, commands.ActionDetails, block, homeButton(t, home, block, commands.ActionDetails)))
	h.must(err, "ack of details click")
	h.waitFor("details modal", func(s *slacktest.Server) bool {
		for _, v := range s.Views() {
			if v.Type == "modal" && v.User == bystander {
				return true
			}
		}
		return false
	})

	// An approver approves from their own Home: the plan runs, and both
	// Homes are republished with it finished.
	_, err = h.srv.WaitAck(h.ctx, h.srv.AppHomeOpened(approver))
	h.must(err, "ack of approver's app_home_opened")
	mine := h.homeShows(approver, "`"+id+"`")
	_, err = h.srv.WaitAck(h.ctx, h.srv.ClickHome(approver, commands.ActionApprove, block, homeButton(t, mine, block, commands.ActionApprove)))
	h.must(err, "ack of approver's Home click")
	h.rootShows(root.TS, "Recovery succeeded")
	for _, u := range []string{bystander, approver} {
		v := h.homeShows(u, "*Awaiting approval (0)*", "*Last 10 finished*", "• `"+id+"` restart-pod-memory-leak · *SUCCEEDED*")
		if strings.Contains(string(v.Blocks), block) {
			t.Errorf("%s's Home still has the approved plan's buttons", u)
		}
	}
	if x, err := h.db.Execution(h.ctx, id); err != nil || x.ApprovedBy != commands.Actor(approver) {
		t.Errorf("approved by %q (%v), want %s", x.ApprovedBy, err, commands.Actor(approver))
	}

	// A pause is shown on every open Home.
	h.command(approver, incident, "pause")
	h.homeShows(bystander, "⏸️ *Paused*")
	h.homeShows(approver, "⏸️ *Paused*")

	// Slack took every view the bot published (block ids unique, limits kept).
	for _, c := range h.srv.Calls("views.publish") {
		if c.Error != "" {
			t.Errorf("views.publish for %s failed: %s", c.Params["user_id"], c.Error)
		}
	}
}

// The Messages tab opening publishes nothing.
func TestSlackAppHomeMessagesTabIgnored(t *testing.T) {
	h := newSlackHarness(t, harnessConfig{})
	id := h.srv.EventsAPI(map[string]any{"type": "app_home_opened", "user": bystander, "channel": "D2", "tab": "messages", "event_ts": "1.000001"})
	_, err := h.srv.WaitAck(h.ctx, id)
	h.must(err, "ack")
	// The Home tab opening right after is published: had the Messages one
	// been taken, it would have been published first.
	_, err = h.srv.WaitAck(h.ctx, h.srv.AppHomeOpened(approver))
	h.must(err, "ack")
	h.homeShows(approver, "*Awaiting approval (0)*")
	h.close() // handlers finish
	for _, c := range h.srv.Calls("views.publish") {
		if c.Params["user_id"] == bystander {
			t.Errorf("published a Home for %s, who opened the Messages tab", bystander)
		}
	}
}
