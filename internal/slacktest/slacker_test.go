package slacktest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/shomali11/slacker/v2"
	"github.com/slack-go/slack"
)

// errorLogger is a slacker.Logger that keeps the errors slacker logs (it
// logs failed conversations.info/users.info/chat calls instead of failing).
type errorLogger struct {
	mu     sync.Mutex
	errors []string
}

func (l *errorLogger) Info(...any)           {}
func (l *errorLogger) Infof(string, ...any)  {}
func (l *errorLogger) Debug(...any)          {}
func (l *errorLogger) Debugf(string, ...any) {}
func (l *errorLogger) Error(args ...any)     { l.add(fmt.Sprint(args...)) }
func (l *errorLogger) Errorf(f string, args ...any) {
	l.add(fmt.Sprintf(f, args...))
}
func (l *errorLogger) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errors = append(l.errors, s)
}
func (l *errorLogger) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errors...)
}

func startSlacker(t *testing.T, s *Server, setup func(*slacker.Slacker)) *errorLogger {
	t.Helper()
	log := &errorLogger{}
	bot := slacker.NewClient(s.BotToken(), s.AppToken(), slacker.WithAPIURL(s.APIURL()), slacker.WithLogger(log))
	setup(bot)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bot.Listen(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("slacker Listen: %v", err)
		}
	})
	return log
}

// slacker prepends a built-in "help" command whose pattern matches the word
// help anywhere, so "/recover help" never reaches a "recover help" command.
func TestSlackerBuiltInHelpShadowsCommand(t *testing.T) {
	s := newServer(t)
	ctx := testContext(t)
	var mine atomic.Bool
	startSlacker(t, s, func(bot *slacker.Slacker) {
		bot.AddCommand(&slacker.CommandDefinition{
			Command: "recover help",
			Handler: func(*slacker.CommandContext) { mine.Store(true) },
		})
		bot.AddCommand(&slacker.CommandDefinition{
			Command:     "recover status {id}",
			Description: "Show a plan",
			Handler:     func(*slacker.CommandContext) {},
		})
	})

	id := s.SlashCommand("U1", "C1", "/recover", "help")
	if _, err := s.WaitAck(ctx, id); err != nil {
		t.Fatal(err)
	}
	mustWait(ctx, t, s, "help message", func(s *Server) bool { return len(s.Messages("C1")) == 1 })
	help := s.Messages("C1")[0]
	if !strings.Contains(string(help.Blocks), "*recover* *status* `id` - _Show a plan_") {
		t.Errorf("help blocks = %s, want slacker's built-in help", help.Blocks)
	}
	if mine.Load() {
		t.Errorf(`"recover help" command ran; slacker's built-in help should have matched first`)
	}
}

func TestSlackerSlashCommandsAndInteractions(t *testing.T) {
	s := newServer(t)
	ctx := testContext(t)

	type clicked struct {
		messageTS, containerTS, actionID, value, user, trigger, responseURL string
	}
	clicks := make(chan clicked, 1)
	unsupported := make(chan *slack.InteractionCallback, 1)
	var statusCmd atomic.Pointer[slack.SlashCommand]

	log := startSlacker(t, s, func(bot *slacker.Slacker) {
		// Replacing the help definition is how "/recover help" reaches our
		// handler; its Command is matched like any other.
		bot.Help(&slacker.CommandDefinition{
			Command: "recover help",
			Handler: func(c *slacker.CommandContext) {
				_, _ = c.Response().Reply("Usage: /recover status <id>", slacker.WithEphemeral())
			},
		})
		bot.AddCommand(&slacker.CommandDefinition{
			Command: "recover status {id}",
			Handler: func(c *slacker.CommandContext) {
				// Data is *slack.SlashCommand or *slackevents.AppMentionEvent
				// (or *slackevents.MessageEvent), by where the text came from.
				if cmd, ok := c.Event().Data.(*slack.SlashCommand); ok {
					statusCmd.Store(cmd)
				}
				id := c.Request().Param("id")
				_, _ = c.Response().ReplyBlocks([]slack.Block{
					slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "Plan "+id, false, false), nil, nil),
					slack.NewActionBlock("plan-actions",
						slack.NewButtonBlockElement("approve", id, slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false))),
				})
			},
		})
		bot.AddCommand(&slacker.CommandDefinition{
			Command: "recover reject {id}",
			Handler: func(c *slacker.CommandContext) {
				cmd := c.Event().Data.(*slack.SlashCommand)
				_, err := c.SlackClient().OpenViewContext(c.Context(), cmd.TriggerID, slack.ModalViewRequest{
					Type:            slack.VTModal,
					Title:           slack.NewTextBlockObject(slack.PlainTextType, "Reject plan", false, false),
					PrivateMetadata: c.Request().Param("id"),
				})
				if err != nil {
					c.Logger().Errorf("views.open: %v", err)
				}
			},
		})
		bot.AddCommand(&slacker.CommandDefinition{
			Command: "recover deny {id}",
			Handler: func(c *slacker.CommandContext) {
				_, _ = c.Response().ReplyError(errors.New("You are not an approver"), slacker.WithEphemeral())
			},
		})
		bot.UnsupportedInteractionHandler(func(c *slacker.InteractionContext) { unsupported <- c.Callback() })
		bot.AddInteraction(&slacker.InteractionDefinition{
			BlockID: "plan-actions",
			Handler: func(c *slacker.InteractionContext) {
				cb := c.Callback()
				a := cb.ActionCallback.BlockActions[0]
				_, _ = c.Response().Reply("Approved", slacker.WithReplace(cb.Container.MessageTs))
				// WithInThread threads on callback.MessageTs, which Slack
				// leaves empty for block_actions: this lands top-level.
				_, _ = c.Response().Reply("Executing", slacker.WithInThread(true))
				clicks <- clicked{cb.MessageTs, cb.Container.MessageTs, a.ActionID, a.Value, cb.User.ID, cb.TriggerID, cb.ResponseURL}
			},
		})
	})

	t.Run("help reaches our handler", func(t *testing.T) {
		id := s.SlashCommand("U1", "C1", "/recover", "help")
		if _, err := s.WaitAck(ctx, id); err != nil {
			t.Fatal(err)
		}
		mustWait(ctx, t, s, "help ephemeral", func(s *Server) bool { return len(s.Ephemerals("C1", "U1")) == 1 })
		if got := s.Ephemerals("C1", "U1")[0].Text; got != "Usage: /recover status <id>" {
			t.Errorf("help = %q", got)
		}
	})

	var planTS string
	t.Run("status posts the plan", func(t *testing.T) {
		id := s.SlashCommand("U1", "C1", "/recover", "status p-7")
		payload, err := s.WaitAck(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if payload != nil {
			t.Errorf("slacker ack payload = %s, want none", payload)
		}
		mustWait(ctx, t, s, "plan message", func(s *Server) bool { return len(s.Messages("C1")) == 1 })
		m := s.Messages("C1")[0]
		planTS = m.TS
		if !strings.Contains(string(m.Blocks), `"block_id":"plan-actions"`) || m.ThreadTS != "" {
			t.Errorf("plan message = %+v", m)
		}
		cmd := statusCmd.Load()
		if cmd.TriggerID == "" || cmd.ResponseURL == "" {
			t.Errorf("slash command in handler = %+v", cmd)
		}
	})

	t.Run("approve click is routed by block_id", func(t *testing.T) {
		id := s.Click("U2", "C1", planTS, "approve", "plan-actions", "p-7")
		if _, err := s.WaitAck(ctx, id); err != nil {
			t.Fatal(err)
		}
		var got clicked
		select {
		case got = <-clicks:
		case <-ctx.Done():
			t.Fatal("interaction handler not called")
		}
		want := clicked{"", planTS, "approve", "p-7", "U2", got.trigger, got.responseURL}
		if got != want || got.trigger == "" || got.responseURL == "" {
			t.Errorf("click = %+v, want %+v", got, want)
		}
		mustWait(ctx, t, s, "plan replaced and follow-up posted", func(s *Server) bool { return len(s.Messages("C1")) == 2 })
		plan, _ := s.Message("C1", planTS)
		if plan.Text != "Approved" || len(plan.History) != 2 {
			t.Errorf("plan after click = %+v", plan)
		}
		if follow := s.Messages("C1")[1]; follow.Text != "Executing" || follow.ThreadTS != "" {
			t.Errorf("follow-up = %+v, want top-level (slacker quirk)", follow)
		}
	})

	t.Run("reject opens a modal with the trigger_id", func(t *testing.T) {
		id := s.SlashCommand("U1", "C1", "/recover", "reject p-7")
		if _, err := s.WaitAck(ctx, id); err != nil {
			t.Fatal(err)
		}
		mustWait(ctx, t, s, "modal", func(s *Server) bool { return len(s.Views()) == 1 })
		if v := s.Views()[0]; v.User != "U1" || v.PrivateMetadata != "p-7" {
			t.Errorf("view = %+v", v)
		}
	})

	t.Run("view_submission goes to the unsupported-interaction handler", func(t *testing.T) {
		v := s.Views()[0]
		id := s.SubmitView("U1", v.ID, nil)
		if _, err := s.WaitAck(ctx, id); err != nil {
			t.Fatal(err)
		}
		select {
		case cb := <-unsupported:
			if cb.Type != slack.InteractionTypeViewSubmission || cb.View.PrivateMetadata != "p-7" {
				t.Errorf("callback = %+v", cb)
			}
		case <-ctx.Done():
			t.Fatal("unsupported-interaction handler not called")
		}
		// slacker acks before the handler runs, with no payload: the modal
		// always closes; response_action errors cannot be returned.
		if !s.Views()[0].Closed {
			t.Errorf("modal still open after slacker's bare ack")
		}
	})

	t.Run("ReplyError ignores WithEphemeral", func(t *testing.T) {
		before := len(s.Messages("C1"))
		id := s.SlashCommand("U2", "C1", "/recover", "deny p-7")
		if _, err := s.WaitAck(ctx, id); err != nil {
			t.Fatal(err)
		}
		mustWait(ctx, t, s, "error message", func(s *Server) bool { return len(s.Messages("C1")) == before+1 })
		m := s.Messages("C1")[before]
		if !strings.Contains(string(m.Attachments), "You are not an approver") {
			t.Errorf("error message = %+v", m)
		}
		if got := len(s.Ephemerals("C1", "U2")); got != 0 {
			t.Errorf("ephemerals = %d, want 0: the error went to the channel", got)
		}
	})

	t.Run("app mention is a command too", func(t *testing.T) {
		id, _ := s.AppMention("U2", "C1", "recover status p-8")
		if _, err := s.WaitAck(ctx, id); err != nil {
			t.Fatal(err)
		}
		mustWait(ctx, t, s, "plan message", func(s *Server) bool {
			msgs := s.Messages("C1")
			return strings.Contains(string(msgs[len(msgs)-1].Blocks), "Plan p-8")
		})
	})

	// Every command (slash or mention) costs conversations.info and
	// users.info before matching; slacker never calls auth.test.
	if got := len(s.Calls("conversations.info")); got != 5 {
		t.Errorf("conversations.info calls = %d, want 5", got)
	}
	if got := len(s.Calls("users.info")); got != 5 {
		t.Errorf("users.info calls = %d, want 5", got)
	}
	if got := len(s.Calls("auth.test")); got != 0 {
		t.Errorf("auth.test calls = %d, want 0", got)
	}
	if errs := log.all(); len(errs) > 0 {
		t.Errorf("slacker logged errors: %q", errs)
	}
}
