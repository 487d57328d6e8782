package slacktest

import (
	"strings"
	"testing"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// Press clicks only what the message shows, with the value the app gave the
// button, and answers anything else with an error instead of a panic.
func TestPressSendsTheButtonsOwnValue(t *testing.T) {
	s := newServer(t)
	ctx := testContext(t)
	api := newAPI(s)
	sm := startSocket(t, s)
	_, ts, err := api.PostMessage("C1", slack.MsgOptionBlocks(
		slack.NewActionBlock("plan-actions",
			slack.NewButtonBlockElement("approve", "signed-p-1", slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false)).WithStyle(slack.StylePrimary),
		),
	))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, user, channel, ts, block, action, want string }{
		{"unknown user", "U9", "C1", ts, "plan-actions", "approve", `unknown user "U9"`},
		{"unknown channel", "U1", "C9", ts, "plan-actions", "approve", `unknown channel "C9"`},
		{"no such message", "U1", "C1", "1.000001", "plan-actions", "approve", "no message 1.000001"},
		{"no such button", "U1", "C1", ts, "plan-actions", "reject", "has no button reject in block plan-actions"},
		{"a button of another block", "U1", "C1", ts, "other", "approve", "has no button approve"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := s.Press(c.user, c.channel, c.ts, c.block, c.action); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	// A refused press sent nothing: the first envelope the app gets is the
	// press below.
	id, err := s.Press("U2", "C1", ts, "plan-actions", "approve")
	if err != nil {
		t.Fatal(err)
	}
	evt := sm.next(ctx, t, socketmode.EventTypeInteractive)
	cb := evt.Data.(slack.InteractionCallback)
	a := cb.ActionCallback.BlockActions[0]
	if a.Value != "signed-p-1" || a.ActionID != "approve" || a.Text.Text != "Approve" || cb.User.ID != "U2" || cb.Container.MessageTs != ts {
		t.Errorf("action = %+v by %s on %s", a, cb.User.ID, cb.Container.MessageTs)
	}
	sm.Ack(*evt.Request)
	if _, err := s.WaitAck(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// CloseView closes only the user's own open modal, and delivers view_closed
// only when the app asked for it (notify_on_close).
func TestCloseView(t *testing.T) {
	s := newServer(t)
	ctx := testContext(t)
	api := newAPI(s)
	sm := startSocket(t, s)
	open := func(notify bool) string {
		t.Helper()
		v, err := api.OpenView(s.NewTriggerID("U1"), slack.ModalViewRequest{Type: slack.VTModal,
			Title: slack.NewTextBlockObject(slack.PlainTextType, "Details", false, false), NotifyOnClose: notify, CallbackID: "details"})
		if err != nil {
			t.Fatal(err)
		}
		return v.ID
	}
	quiet, loud := open(false), open(true)

	if _, err := s.CloseView("U2", quiet); err == nil {
		t.Error("bob closed alice's modal")
	}
	if _, err := s.CloseView("U1", "V404"); err == nil {
		t.Error("closed a modal that does not exist")
	}
	id, err := s.CloseView("U1", quiet)
	if err != nil || id != "" {
		t.Fatalf("close without notify_on_close: envelope %q, %v; want none", id, err)
	}
	if _, err := s.CloseView("U1", quiet); err == nil {
		t.Error("closed the same modal twice")
	}
	id, err = s.CloseView("U1", loud)
	if err != nil || id == "" {
		t.Fatalf("close with notify_on_close: envelope %q, %v; want one", id, err)
	}
	evt := sm.next(ctx, t, socketmode.EventTypeInteractive)
	cb := evt.Data.(slack.InteractionCallback)
	if cb.Type != slack.InteractionTypeViewClosed || cb.View.ID != loud || cb.User.ID != "U1" || cb.View.CallbackID != "details" {
		t.Errorf("callback = %s view %s by %s", cb.Type, cb.View.ID, cb.User.ID)
	}
	sm.Ack(*evt.Request)
	for _, v := range s.Views() {
		if !v.Closed {
			t.Errorf("view %s still open", v.ID)
		}
	}
}
