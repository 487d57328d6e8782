package slacktest

import (
	"testing"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

// The App Home as slack-go sees it: views.publish keeps one Home per user
// (duplicate block ids refused, as Slack does), app_home_opened parses into
// slackevents.AppHomeOpenedEvent with the Home view, and a click in the Home
// is a block_actions callback with a view container, the home view, and no
// channel or response_url.
func TestAppHome(t *testing.T) {
	s := newServer(t)
	ctx := testContext(t)
	api := newAPI(s)
	c := startSocket(t, s)
	c.next(ctx, t, socketmode.EventTypeHello)

	btn := slack.NewButtonBlockElement("approve", "p-1.sig", slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false))
	view := func(blockIDs ...string) slack.HomeTabViewRequest {
		var blocks []slack.Block
		for _, id := range blockIDs {
			blocks = append(blocks, slack.NewActionBlock(id, btn))
		}
		return slack.HomeTabViewRequest{Type: slack.VTHomeTab, Blocks: slack.Blocks{BlockSet: blocks}}
	}
	if _, err := api.PublishViewContext(ctx, "U1", view("plan:p-1", "plan:p-1"), ""); err == nil || err.Error() != "invalid_arguments" {
		t.Fatalf("a Home with a block_id twice: %v, want invalid_arguments", err)
	}
	if _, ok := s.HomeTab("U1"); ok {
		t.Fatal("a refused Home was stored")
	}

	open := s.AppHomeOpened("U1")
	ev := c.next(ctx, t, socketmode.EventTypeEventsAPI)
	c.Ack(*ev.Request)
	inner, ok := ev.Data.(slackevents.EventsAPIEvent).InnerEvent.Data.(*slackevents.AppHomeOpenedEvent)
	if !ok || inner.User != "U1" || inner.Tab != "home" || inner.Channel == "" || inner.View.ID != "" {
		t.Fatalf("first app_home_opened: %+v (before any publish it carries no view)", inner)
	}
	if _, err := s.WaitAck(ctx, open); err != nil {
		t.Fatal(err)
	}

	if _, err := api.PublishViewContext(ctx, "U1", view("plan:p-1", "plan:p-2"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := api.PublishViewContext(ctx, "U1", view("plan:p-1"), ""); err != nil {
		t.Fatal(err)
	}
	home, ok := s.HomeTab("U1")
	if !ok || home.Type != "home" || home.Updates != 1 || home.User != "U1" {
		t.Fatalf("HomeTab: %+v %v, want U1's home updated once", home, ok)
	}
	if len(s.Calls("views.publish")) != 3 {
		t.Errorf("%d views.publish calls recorded, want 3", len(s.Calls("views.publish")))
	}

	s.AppHomeOpened("U1")
	ev = c.next(ctx, t, socketmode.EventTypeEventsAPI)
	c.Ack(*ev.Request)
	if inner := ev.Data.(slackevents.EventsAPIEvent).InnerEvent.Data.(*slackevents.AppHomeOpenedEvent); inner.View.ID != home.ID || inner.View.Type != slack.VTHomeTab {
		t.Errorf("second app_home_opened carries view %q (%s), want %s", inner.View.ID, inner.View.Type, home.ID)
	}

	s.ClickHome("U1", "approve", "plan:p-1", "p-1.sig")
	ev = c.next(ctx, t, socketmode.EventTypeInteractive)
	c.Ack(*ev.Request)
	cb := ev.Data.(slack.InteractionCallback)
	a := cb.ActionCallback.BlockActions
	if cb.Type != slack.InteractionTypeBlockActions || cb.Container.Type != "view" || cb.Container.ViewID != home.ID ||
		cb.View.Type != slack.VTHomeTab || cb.Channel.ID != "" || cb.ResponseURL != "" || cb.TriggerID == "" || cb.User.ID != "U1" ||
		len(a) != 1 || a[0].ActionID != "approve" || a[0].BlockID != "plan:p-1" || a[0].Value != "p-1.sig" {
		t.Errorf("Home click: %+v", cb)
	}
	defer func() {
		if recover() == nil {
			t.Error("a click on a button the Home does not have was delivered")
		}
	}()
	s.ClickHome("U1", "approve", "plan:p-2", "p-2.sig")
}
