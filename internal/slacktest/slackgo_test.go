package slacktest

import (
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

func TestSocketModeHelloSlashCommandAndAck(t *testing.T) {
	s := newServer(t)
	ctx := testContext(t)
	sm := startSocket(t, s)

	hello := sm.next(ctx, t, socketmode.EventTypeHello)
	if got, want := hello.Request.ConnectionInfo.AppID, s.AppID(); got != want {
		t.Errorf("hello app_id = %q, want %q", got, want)
	}
	if got := hello.Request.NumConnections; got != 1 {
		t.Errorf("hello num_connections = %d, want 1", got)
	}

	id := s.SlashCommand("U1", "C1", "/recover", "status plan-1")
	evt := sm.next(ctx, t, socketmode.EventTypeSlashCommand)
	cmd, ok := evt.Data.(slack.SlashCommand)
	if !ok {
		t.Fatalf("data = %T, want slack.SlashCommand", evt.Data)
	}
	if evt.Request.EnvelopeID != id || !evt.Request.AcceptsResponsePayload {
		t.Errorf("envelope = %+v, want id %s accepting a response payload", evt.Request, id)
	}
	if cmd.Command != "/recover" || cmd.Text != "status plan-1" || cmd.UserID != "U1" || cmd.UserName != "alice" ||
		cmd.ChannelID != "C1" || cmd.ChannelName != "ops" || cmd.TeamID != s.TeamID() || cmd.APIAppID != s.AppID() {
		t.Errorf("slash command = %+v", cmd)
	}
	if cmd.TriggerID == "" || !strings.HasPrefix(cmd.ResponseURL, s.URL()+"/hooks/commands/") || cmd.IsEnterpriseInstall {
		t.Errorf("trigger_id %q, response_url %q, is_enterprise_install %v", cmd.TriggerID, cmd.ResponseURL, cmd.IsEnterpriseInstall)
	}

	sm.Ack(*evt.Request, map[string]any{"text": "Working on it"})
	payload, err := s.WaitAck(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(payload), `{"text":"Working on it"}`; got != want {
		t.Errorf("ack payload = %s, want %s", got, want)
	}
	// Slack shows an ack payload to the user who ran the command.
	eph := s.Ephemerals("C1", "U1")
	if len(eph) != 1 || eph[0].Text != "Working on it" || eph[0].Source != "ack" {
		t.Errorf("ephemerals = %+v, want the ack text", eph)
	}
}

func TestEnvelopeQueuedUntilConnected(t *testing.T) {
	s := newServer(t)
	ctx := testContext(t)
	id := s.SlashCommand("U1", "C1", "/recover", "")

	sm := startSocket(t, s)
	sm.next(ctx, t, socketmode.EventTypeHello)
	evt := sm.next(ctx, t, socketmode.EventTypeSlashCommand)
	sm.Ack(*evt.Request)
	payload, err := s.WaitAck(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if payload != nil {
		t.Errorf("ack payload = %s, want none", payload)
	}
}

func TestWebAPIRoundTrip(t *testing.T) {
	s := newServer(t)
	s.AddUserGroup("S1", "U1", "U2")
	api := newAPI(s)

	auth, err := api.AuthTest()
	if err != nil {
		t.Fatal(err)
	}
	if auth.UserID != s.BotUserID() || auth.BotID != s.BotID() || auth.TeamID != s.TeamID() {
		t.Errorf("auth.test = %+v", auth)
	}

	blocks := []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "*Plan* p-1", false, false), nil, nil),
		slack.NewActionBlock("",
			slack.NewButtonBlockElement("approve", "p-1", slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false)),
		),
	}
	ch, ts, err := api.PostMessage("C1", slack.MsgOptionText("plan p-1", false), slack.MsgOptionBlocks(blocks...))
	if err != nil {
		t.Fatal(err)
	}
	if ch != "C1" || ts == "" {
		t.Fatalf("postMessage = %q, %q", ch, ts)
	}
	_, replyTS, err := api.PostMessage("C1", slack.MsgOptionText("step 1 done", false), slack.MsgOptionTS(ts))
	if err != nil {
		t.Fatal(err)
	}
	// A reply to a reply lands in the parent's thread, as in Slack.
	if _, _, err := api.PostMessage("C1", slack.MsgOptionText("step 2 done", false), slack.MsgOptionTS(replyTS)); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := api.UpdateMessage("C1", ts, slack.MsgOptionText("plan p-1: approved", false), slack.MsgOptionBlocks([]slack.Block{}...)); err != nil {
		t.Fatal(err)
	}
	ephTS, err := api.PostEphemeral("C1", "U2", slack.MsgOptionText("You are not an approver", false))
	if err != nil || ephTS == "" {
		t.Fatalf("postEphemeral = %q, %v", ephTS, err)
	}
	members, err := api.GetUserGroupMembers("S1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(members, ",") != "U1,U2" {
		t.Errorf("usergroup members = %v", members)
	}
	if _, err := api.GetUserGroupMembers("S404"); err == nil || err.Error() != "no_such_subteam" {
		t.Errorf("unknown usergroup error = %v, want no_such_subteam", err)
	}
	view, err := api.OpenView(s.NewTriggerID("U1"), slack.ModalViewRequest{
		Type:       slack.VTModal,
		Title:      slack.NewTextBlockObject(slack.PlainTextType, "Reject plan", false, false),
		Submit:     slack.NewTextBlockObject(slack.PlainTextType, "Reject", false, false),
		CallbackID: "reject",
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewInputBlock("reason", slack.NewTextBlockObject(slack.PlainTextType, "Reason", false, false), nil,
				slack.NewPlainTextInputBlockElement(nil, "reason_input")),
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if view.ID == "" || view.CallbackID != "reject" || view.AppID != s.AppID() {
		t.Errorf("views.open view = %+v", view.View)
	}
	info, err := api.GetConversationInfo(&slack.GetConversationInfoInput{ChannelID: "C1"})
	if err != nil || info.Name != "ops" {
		t.Errorf("conversations.info = %+v, %v", info, err)
	}
	u, err := api.GetUserInfo("U2")
	if err != nil || u.Name != "bob" || u.Profile.DisplayName != "bob" {
		t.Errorf("users.info = %+v, %v", u, err)
	}
	bot, err := api.GetBotInfo(s.BotID())
	if err != nil || bot.AppID != s.AppID() || bot.UserID != s.BotUserID() {
		t.Errorf("bots.info = %+v, %v", bot, err)
	}

	msgs := s.Messages("C1")
	if len(msgs) != 1 {
		t.Fatalf("top-level messages = %d, want 1", len(msgs))
	}
	m := msgs[0]
	if m.Text != "plan p-1: approved" || len(m.History) != 2 || m.History[0].Text != "plan p-1" || m.ReplyCount != 2 {
		t.Errorf("message = %+v", m)
	}
	if got := string(m.Blocks); got != "[]" {
		t.Errorf("blocks after update with an empty array = %s, want []", got)
	}
	if !strings.Contains(string(m.History[0].Blocks), `"block_id"`) {
		t.Errorf("stored blocks lack generated block_ids: %s", m.History[0].Blocks)
	}
	thread := s.Thread("C1", ts)
	if len(thread) != 2 || thread[1].Text != "step 2 done" || thread[1].ThreadTS != ts {
		t.Errorf("thread = %+v", thread)
	}
	if views := s.Views(); len(views) != 1 || views[0].User != "U1" || views[0].Title != "Reject plan" {
		t.Errorf("views = %+v", views)
	}
	calls := s.Calls("chat.postMessage")
	if len(calls) != 3 || calls[0].Params["channel"] != "C1" || !strings.Contains(string(calls[0].Blocks), `"action_id":"approve"`) {
		t.Errorf("chat.postMessage calls = %+v", calls)
	}
}

func TestWebAPIErrors(t *testing.T) {
	s := newServer(t)
	api := newAPI(s)
	section := func(n int) slack.Block {
		return slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, strings.Repeat("x", n), false, false), nil, nil)
	}
	repeat := func(n int, b func() slack.Block) []slack.Block {
		out := make([]slack.Block, n)
		for i := range out {
			out[i] = b()
		}
		return out
	}
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"51 blocks is invalid_blocks", func() error {
			_, _, err := api.PostMessage("C1", slack.MsgOptionBlocks(repeat(51, func() slack.Block { return slack.NewDividerBlock() })...))
			return err
		}, "invalid_blocks"},
		{"50 blocks is accepted", func() error {
			_, _, err := api.PostMessage("C1", slack.MsgOptionBlocks(repeat(50, func() slack.Block { return slack.NewDividerBlock() })...))
			return err
		}, ""},
		{"section text over 3000 is invalid_blocks", func() error {
			_, _, err := api.PostMessage("C1", slack.MsgOptionBlocks(section(3001)))
			return err
		}, "invalid_blocks"},
		{"section text of 3000 is accepted", func() error {
			_, _, err := api.PostMessage("C1", slack.MsgOptionBlocks(section(3000)))
			return err
		}, ""},
		{"blocks over 12000 chars is msg_blocks_too_long", func() error {
			_, _, err := api.PostMessage("C1", slack.MsgOptionBlocks(repeat(5, func() slack.Block { return section(2500) })...))
			return err
		}, "msg_blocks_too_long"},
		{"update is validated too", func() error {
			_, ts, err := api.PostMessage("C1", slack.MsgOptionText("x", false))
			if err != nil {
				return err
			}
			_, _, _, err = api.UpdateMessage("C1", ts, slack.MsgOptionBlocks(repeat(5, func() slack.Block { return section(2500) })...))
			return err
		}, "msg_blocks_too_long"},
		{"no text and no blocks is no_text", func() error {
			_, _, err := api.PostMessage("C1", slack.MsgOptionText("", false))
			return err
		}, "no_text"},
		{"unknown channel is channel_not_found", func() error {
			_, _, err := api.PostMessage("C404", slack.MsgOptionText("x", false))
			return err
		}, "channel_not_found"},
		{"update of a missing message is message_not_found", func() error {
			_, _, _, err := api.UpdateMessage("C1", "1.000001", slack.MsgOptionText("x", false))
			return err
		}, "message_not_found"},
		{"unknown token is invalid_auth", func() error {
			_, err := slack.New("xoxb-wrong", slack.OptionAPIURL(s.APIURL())).AuthTest()
			return err
		}, "invalid_auth"},
		{"app token on chat.postMessage is not_allowed_token_type", func() error {
			_, _, err := slack.New(s.AppToken(), slack.OptionAPIURL(s.APIURL())).PostMessage("C1", slack.MsgOptionText("x", false))
			return err
		}, "not_allowed_token_type"},
		{"bot token on apps.connections.open is not_allowed_token_type", func() error {
			_, _, err := slack.New("x", slack.OptionAPIURL(s.APIURL()), slack.OptionAppLevelToken(s.BotToken())).StartSocketModeContext(t.Context())
			return err
		}, "not_allowed_token_type"},
		{"unknown method is unknown_method", func() error {
			_, err := api.GetUserPresence("U1")
			return err
		}, "unknown_method"},
		{"unknown trigger is invalid_trigger_id", func() error {
			_, err := api.OpenView("1.2.3", slack.ModalViewRequest{Type: slack.VTModal, Title: slack.NewTextBlockObject(slack.PlainTextType, "x", false, false)})
			return err
		}, "invalid_trigger_id"},
		{"a trigger works once", func() error {
			trig := s.NewTriggerID("U1")
			v := slack.ModalViewRequest{Type: slack.VTModal, Title: slack.NewTextBlockObject(slack.PlainTextType, "x", false, false)}
			if _, err := api.OpenView(trig, v); err != nil {
				return err
			}
			_, err := api.OpenView(trig, v)
			return err
		}, "exchanged_trigger_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("error = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTriggerExpires(t *testing.T) {
	var now atomic.Int64 // unix nanoseconds
	now.Store(time.Unix(1_700_000_000, 0).UnixNano())
	s := newServer(t, WithClock(func() time.Time { return time.Unix(0, now.Load()) }))
	trig := s.NewTriggerID("U1")
	now.Add(int64(3*time.Second + time.Millisecond))
	_, err := newAPI(s).OpenView(trig, slack.ModalViewRequest{Type: slack.VTModal, Title: slack.NewTextBlockObject(slack.PlainTextType, "x", false, false)})
	if err == nil || err.Error() != "expired_trigger_id" {
		t.Errorf("error = %v, want expired_trigger_id", err)
	}
}

func TestFailNext(t *testing.T) {
	s := newServer(t)
	api := newAPI(s)

	s.FailNext("chat.postMessage", 1, 1500*time.Millisecond)
	_, _, err := api.PostMessage("C1", slack.MsgOptionText("x", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) {
		t.Fatalf("error = %v (%T), want *slack.RateLimitedError", err, err)
	}
	if rl.RetryAfter != 2*time.Second {
		t.Errorf("RetryAfter = %v, want 2s (Slack sends whole seconds)", rl.RetryAfter)
	}
	if _, _, err := api.PostMessage("C1", slack.MsgOptionText("x", false)); err != nil {
		t.Errorf("call after the injected failures: %v", err)
	}

	s.FailNextWith("usergroups.users.list", 2, "ratelimited")
	for range 2 {
		if _, err := api.GetUserGroupMembers("S1"); err == nil || err.Error() != "ratelimited" {
			t.Errorf("error = %v, want ratelimited", err)
		}
	}
	calls := s.Calls("chat.postMessage")
	if len(calls) != 2 || calls[0].Status != 429 || calls[0].Error != "ratelimited" || calls[1].Error != "" {
		t.Errorf("calls = %+v", calls)
	}
}

func TestClickAndResponseURL(t *testing.T) {
	s := newServer(t)
	ctx := testContext(t)
	api := newAPI(s)
	sm := startSocket(t, s)

	_, parentTS, err := api.PostMessage("C1", slack.MsgOptionText("plan", false))
	if err != nil {
		t.Fatal(err)
	}
	_, ts, err := api.PostMessage("C1", slack.MsgOptionTS(parentTS), slack.MsgOptionBlocks(
		slack.NewActionBlock("plan-actions",
			slack.NewButtonBlockElement("approve", "p-1", slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false)).WithStyle(slack.StylePrimary),
		),
	))
	if err != nil {
		t.Fatal(err)
	}

	id := s.Click("U2", "C1", ts, "approve", "plan-actions", "p-1")
	evt := sm.next(ctx, t, socketmode.EventTypeInteractive)
	cb, ok := evt.Data.(slack.InteractionCallback)
	if !ok {
		t.Fatalf("data = %T", evt.Data)
	}
	if cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) != 1 {
		t.Fatalf("callback = %+v", cb)
	}
	a := cb.ActionCallback.BlockActions[0]
	if a.ActionID != "approve" || a.BlockID != "plan-actions" || a.Value != "p-1" || a.Type != "button" || a.Text.Text != "Approve" {
		t.Errorf("action = %+v", a)
	}
	if cb.User.ID != "U2" || cb.Channel.ID != "C1" || cb.TriggerID == "" || cb.ResponseURL == "" {
		t.Errorf("user %q channel %q trigger %q response_url %q", cb.User.ID, cb.Channel.ID, cb.TriggerID, cb.ResponseURL)
	}
	if cb.Container.MessageTs != ts || cb.Container.ThreadTs != parentTS || cb.Message.Timestamp != ts || len(cb.Message.Blocks.BlockSet) != 1 {
		t.Errorf("container = %+v, message ts %q with %d blocks", cb.Container, cb.Message.Timestamp, len(cb.Message.Blocks.BlockSet))
	}
	// As from Slack: block_actions carry no top-level message_ts.
	if cb.MessageTs != "" {
		t.Errorf("message_ts = %q, want empty", cb.MessageTs)
	}
	sm.Ack(*evt.Request)
	if _, err := s.WaitAck(ctx, id); err != nil {
		t.Fatal(err)
	}

	if _, _, err := api.PostMessage("", slack.MsgOptionReplaceOriginal(cb.ResponseURL), slack.MsgOptionText("Approved by bob", false)); err != nil {
		t.Fatalf("response_url replace: %v", err)
	}
	m, _ := s.Message("C1", ts)
	if m.Text != "Approved by bob" || len(m.History) != 2 || m.ThreadTS != parentTS {
		t.Errorf("replaced message = %+v", m)
	}
	if _, _, err := api.PostMessage("", slack.MsgOptionResponseURL(cb.ResponseURL, slack.ResponseTypeEphemeral), slack.MsgOptionText("only you", false)); err != nil {
		t.Fatalf("response_url ephemeral: %v", err)
	}
	if eph := s.Ephemerals("C1", "U2"); len(eph) != 1 || eph[0].Text != "only you" {
		t.Errorf("ephemerals = %+v", eph)
	}
	if got := len(s.Calls("response_url")); got != 2 {
		t.Errorf("response_url calls = %d, want 2", got)
	}
}

func TestViewSubmission(t *testing.T) {
	s := newServer(t)
	ctx := testContext(t)
	api := newAPI(s)
	sm := startSocket(t, s)

	resp, err := api.OpenView(s.NewTriggerID("U1"), slack.ModalViewRequest{
		Type:            slack.VTModal,
		Title:           slack.NewTextBlockObject(slack.PlainTextType, "Reject", false, false),
		Submit:          slack.NewTextBlockObject(slack.PlainTextType, "Reject", false, false),
		CallbackID:      "reject",
		PrivateMetadata: "p-1",
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewInputBlock("reason", slack.NewTextBlockObject(slack.PlainTextType, "Reason", false, false), nil,
				slack.NewPlainTextInputBlockElement(nil, "reason_input")),
		}},
	})
	if err != nil {
		t.Fatal(err)
	}

	submit := func(reason string, ack any) {
		t.Helper()
		id := s.SubmitView("U1", resp.ID, map[string]map[string]string{"reason": {"reason_input": reason}})
		evt := sm.next(ctx, t, socketmode.EventTypeInteractive)
		cb := evt.Data.(slack.InteractionCallback)
		if cb.Type != slack.InteractionTypeViewSubmission || cb.View.CallbackID != "reject" || cb.View.PrivateMetadata != "p-1" {
			t.Errorf("callback = %+v", cb)
		}
		if got := cb.View.State.Values["reason"]["reason_input"].Value; got != reason {
			t.Errorf("submitted reason = %q, want %q", got, reason)
		}
		if ack == nil {
			sm.Ack(*evt.Request)
		} else {
			sm.Ack(*evt.Request, ack)
		}
		if _, err := s.WaitAck(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	submit("", slack.NewErrorsViewSubmissionResponse(map[string]string{"reason": "Give a reason"}))
	if v := s.Views(); v[0].Closed {
		t.Errorf("view closed after an errors response")
	}
	submit("flapping alert", nil)
	if v := s.Views(); !v[0].Closed {
		t.Errorf("view open after a bare ack")
	}
}

func TestEventsAPIAndRedeliver(t *testing.T) {
	s := newServer(t)
	ctx := testContext(t)
	sm := startSocket(t, s)

	id, ts := s.AppMention("U1", "C1", "recover status p-1")
	for attempt := range 2 {
		evt := sm.next(ctx, t, socketmode.EventTypeEventsAPI)
		ev := evt.Data.(slackevents.EventsAPIEvent)
		mention, ok := ev.InnerEvent.Data.(*slackevents.AppMentionEvent)
		if !ok {
			t.Fatalf("inner event = %T", ev.InnerEvent.Data)
		}
		want := "<@" + s.BotUserID() + "> recover status p-1"
		if mention.Text != want || mention.User != "U1" || mention.Channel != "C1" || mention.TimeStamp != ts {
			t.Errorf("app_mention = %+v", mention)
		}
		if evt.Request.EnvelopeID != id || evt.Request.RetryAttempt != attempt {
			t.Errorf("envelope %s retry_attempt %d, want %s %d", evt.Request.EnvelopeID, evt.Request.RetryAttempt, id, attempt)
		}
		if attempt == 1 && evt.Request.RetryReason != "timeout" {
			t.Errorf("retry_reason = %q, want timeout", evt.Request.RetryReason)
		}
		sm.Ack(*evt.Request)
		if _, err := s.WaitAck(ctx, id); err != nil {
			t.Fatal(err)
		}
		if attempt == 0 {
			s.Redeliver(id)
		}
	}
	if got := len(s.Acks(id)); got != 2 {
		t.Errorf("acks = %d, want 2", got)
	}

	// A raw inner event is wrapped in an event_callback.
	s.EventsAPI(map[string]any{"type": "app_mention", "user": "U2", "text": "hi", "channel": "C1", "ts": "1.000002"})
	evt := sm.next(ctx, t, socketmode.EventTypeEventsAPI)
	ev := evt.Data.(slackevents.EventsAPIEvent)
	if ev.Type != slackevents.CallbackEvent || ev.TeamID != s.TeamID() || ev.APIAppID != s.AppID() {
		t.Errorf("outer event = %+v", ev)
	}
	if m, ok := s.Message("C1", ts); !ok || m.User != "U1" || m.BotID != "" {
		t.Errorf("mention message = %+v, %v", m, ok)
	}
}

func TestReconnects(t *testing.T) {
	// slack-go's watchdog: reconnect when no ping arrived for a whole
	// interval, checked on a ticker of that interval.
	s := newServer(t, WithPingInterval(20*time.Millisecond))
	ctx := testContext(t)
	sm := startSocket(t, s, socketmode.OptionPingInterval(300*time.Millisecond))
	sm.next(ctx, t, socketmode.EventTypeHello)

	t.Run("disconnect message", func(t *testing.T) {
		s.Disconnect("")
		if err := s.WaitConnections(ctx, 2); err != nil {
			t.Fatal(err)
		}
		// slack-go acts on disconnect itself and never emits it as an event.
		for {
			select {
			case evt := <-sm.Events:
				if evt.Type == socketmode.EventTypeDisconnect {
					t.Fatalf("got a disconnect event")
				}
				if evt.Type != socketmode.EventTypeHello {
					continue
				}
			case <-ctx.Done():
				t.Fatal("no hello on the new socket")
			}
			break
		}
	})
	t.Run("dropped socket", func(t *testing.T) {
		s.DropConnections()
		if err := s.WaitConnections(ctx, 3); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("half-open socket", func(t *testing.T) {
		s.SilenceConnections()
		// Sent while only the silent socket exists: delivered on the next.
		id := s.SlashCommand("U1", "C1", "/recover", "status")
		if err := s.WaitConnections(ctx, 4); err != nil {
			t.Fatal(err)
		}
		evt := sm.next(ctx, t, socketmode.EventTypeSlashCommand)
		sm.Ack(*evt.Request)
		if _, err := s.WaitAck(ctx, id); err != nil {
			t.Fatal(err)
		}
	})
	mustWait(ctx, t, s, "old sockets closed", func(s *Server) bool { return s.Connections() == 1 })
	if got := len(s.Calls("apps.connections.open")); got != 4 {
		t.Errorf("apps.connections.open calls = %d, want 4", got)
	}
}

func TestRawHTTP(t *testing.T) {
	s := newServer(t)
	post := func(path, ctype, body string, header map[string]string) map[string]any {
		t.Helper()
		req, err := newRequest(t, s.URL()+path, ctype, body, header)
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	tests := []struct {
		name    string
		path    string
		ctype   string
		body    string
		header  map[string]string
		wantErr string
	}{
		{"json body with bearer", "/api/chat.postMessage", "application/json", `{"channel":"C1","text":"hi","blocks":[{"type":"divider"}]}`,
			map[string]string{"Authorization": "Bearer " + s.BotToken()}, ""},
		{"form body with token field", "/api/chat.postMessage", "application/x-www-form-urlencoded", "token=" + s.BotToken() + "&channel=C1&text=hi", nil, ""},
		{"no token", "/api/auth.test", "application/x-www-form-urlencoded", "", nil, "not_authed"},
		{"unknown method", "/api/foo.bar", "application/x-www-form-urlencoded", "token=" + s.BotToken(), nil, "unknown_method"},
		{"bad block type", "/api/chat.postMessage", "application/json", `{"channel":"C1","blocks":[{"type":"nope"}]}`,
			map[string]string{"Authorization": "Bearer " + s.BotToken()}, "invalid_blocks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := post(tt.path, tt.ctype, tt.body, tt.header)
			if tt.wantErr == "" && got["ok"] != true {
				t.Errorf("response = %v, want ok", got)
			}
			if tt.wantErr != "" && got["error"] != tt.wantErr {
				t.Errorf("response = %v, want error %s", got, tt.wantErr)
			}
		})
	}
	calls := s.Calls("chat.postMessage")
	if string(calls[0].Blocks) != `[{"type":"divider"}]` {
		t.Errorf("recorded JSON blocks = %s", calls[0].Blocks)
	}
}

func newRequest(t *testing.T, url, ctype, body string, header map[string]string) (map[string]any, error) {
	t.Helper()
	req, err := httpRequest(t.Context(), url, ctype, body, header)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(req, &out)
}
