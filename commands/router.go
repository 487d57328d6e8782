package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/shomali11/slacker/v2"
	"github.com/slack-go/slack"
)

// Router connects a Handler to slacker v2, working around what slacker does
// (see internal/slacktest/doc.go):
//
//   - Its command matcher is unanchored and its built-in help answers any
//     text containing the word "help". So the whole of /recover is one
//     definition, installed as the help command (slacker tries it first):
//     "recover <args>". The Handler parses the slash command's own text,
//     anchored, word by word.
//   - It acks every envelope before any handler runs, and runs each handler
//     in its own goroutine: handlers never hold up the socket reader, and
//     Router adds a per-request deadline on a context that outlives a
//     cancelled Listen, so a decision being persisted is not cut halfway.
//   - It does not deduplicate envelopes Slack redelivers (retry_attempt > 0)
//     and hides envelope ids from handlers. A redelivery carries the same
//     payload, so Router keys on what is unique in it: a slash command's
//     trigger_id, a click's trigger_id and action_ts, a message's channel and
//     ts. A second delivery is dropped (it was already acked by slacker).
//   - Interactions route on block_id only; Router sends both plan blocks to
//     Handler.Click, which switches on the action id. The App Home's plan
//     blocks (HomeBlockID) arrive through the unsupported-interaction
//     handler and go to the same Click, marked Home.
//   - ReplyError ignores WithEphemeral, and chat.postEphemeral needs the bot in
//     the channel; replies go to the response_url (works anywhere, shown only
//     to the user), with chat.postEphemeral as fallback.
type Router struct {
	Handler *Handler
	// Timeout bounds the work of one command or click (default 20s).
	Timeout time.Duration
	// OnDuplicate, when set, is called with the key of each redelivered
	// envelope dropped (tests and metrics).
	OnDuplicate func(key string)
	Log         *slog.Logger

	dedup   Dedup
	running sync.WaitGroup
}

// Register installs the /recover command and the plan buttons on bot.
func (r *Router) Register(bot *slacker.Slacker) {
	bot.Help(&slacker.CommandDefinition{
		Command:     "recover <args>",
		Description: "recoverbot: /recover help lists the sub-commands",
		HideHelp:    true,
		Handler:     r.onCommand,
	})
	bot.UnsupportedCommandHandler(r.onCommand)
	for _, id := range []string{BlockApproval, BlockOutcome} {
		bot.AddInteraction(&slacker.InteractionDefinition{BlockID: id, Handler: r.onClick})
	}
	bot.UnsupportedInteractionHandler(func(c *slacker.InteractionContext) {
		// The App Home's plan buttons have per-plan block ids, which
		// slacker's exact block_id match cannot route.
		if cb := c.Callback(); len(cb.ActionCallback.BlockActions) > 0 && HomeBlock(cb.ActionCallback.BlockActions[0].BlockID) {
			r.onClick(c)
			return
		}
		// Modal closes and anything without a known block: nothing to do.
		r.log().Debug("ignored interaction", "type", c.Callback().Type)
	})
}

// Wait blocks until running commands and clicks finish, or ctx ends.
func (r *Router) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { r.running.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("slack handlers still running: %w", context.Cause(ctx))
	}
}

func (r *Router) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

var errRequestTimeout = errors.New("slack request took too long")

// run does one request's work on its own deadline, recovering a panic so
// one bad request cannot take the bot down.
func (r *Router) run(parent context.Context, what string, work func(ctx context.Context)) {
	r.running.Add(1)
	defer r.running.Done()
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeoutCause(context.WithoutCancel(parent), timeout, errRequestTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			r.log().Error("slack handler panicked", "what", what, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	work(ctx)
}

func (r *Router) duplicate(key string) bool {
	if key == "" || !r.dedup.Seen(key) {
		return false
	}
	r.log().Info("dropped a redelivered Slack envelope", "key", Redact(key))
	if r.OnDuplicate != nil {
		r.OnDuplicate(key)
	}
	return true
}

func (r *Router) onCommand(c *slacker.CommandContext) {
	ev := c.Event()
	req := Request{User: ev.UserID, Channel: ev.ChannelID}
	var key string
	if sc, ok := ev.Data.(*slack.SlashCommand); ok {
		req.Text, req.ResponseURL, req.TriggerID = sc.Text, sc.ResponseURL, sc.TriggerID
		if sc.Command != "/recover" {
			req.Text = "" // only /recover is ours: answer with help
		}
		if sc.TriggerID != "" {
			key = "slash:" + sc.TriggerID
		}
	} else {
		if c.Request() != nil && c.Request().Properties() != nil {
			req.Text = c.Request().Param("args")
		}
		if ev.TimeStamp != "" {
			key = "message:" + ev.ChannelID + ":" + ev.TimeStamp
		}
	}
	if r.duplicate(key) {
		return
	}
	r.run(c.Context(), "command", func(ctx context.Context) {
		if rep := r.Handler.Command(ctx, req); rep != nil {
			r.respond(ctx, rep, req.Channel, req.User, req.ResponseURL)
		}
	})
}

func (r *Router) onClick(c *slacker.InteractionContext) {
	cb := c.Callback()
	if cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) == 0 {
		return
	}
	a := cb.ActionCallback.BlockActions[0]
	if cb.TriggerID != "" || a.ActionTs != "" {
		if r.duplicate("click:" + cb.TriggerID + ":" + a.ActionTs) {
			return
		}
	}
	click := Click{
		User: cb.User.ID, Channel: cb.Channel.ID,
		// Slack leaves the top-level message_ts empty for block_actions.
		MessageTS: cb.Container.MessageTs,
		ActionID:  a.ActionID, BlockID: a.BlockID, Value: a.Value,
		TriggerID: cb.TriggerID, ResponseURL: cb.ResponseURL,
		Home: cb.Container.Type == "view" && cb.View.Type == slack.VTHomeTab,
	}
	replyIn := click.Channel
	if click.Home {
		// A Home tab has no channel and Slack gives no response_url there:
		// the private reply goes to the incident channel.
		replyIn = r.Handler.Channel
	}
	r.run(c.Context(), "click", func(ctx context.Context) {
		if rep := r.Handler.Click(ctx, click); rep != nil {
			r.respond(ctx, rep, replyIn, click.User, click.ResponseURL)
		}
	})
}

// respond shows rep to user only: through the response_url, else
// chat.postEphemeral.
func (r *Router) respond(ctx context.Context, rep *Reply, channel, user, responseURL string) {
	opts := []slack.MsgOption{slack.MsgOptionText(rep.Text, false)}
	if len(rep.Blocks) > 0 {
		opts = append(opts, slack.MsgOptionBlocks(rep.Blocks...))
	}
	api := r.Handler.Slack
	if responseURL != "" {
		_, _, err := api.PostMessageContext(ctx, "", append(opts, slack.MsgOptionResponseURL(responseURL, slack.ResponseTypeEphemeral))...)
		if err == nil {
			return
		}
		r.log().Warn("response_url reply failed; trying chat.postEphemeral", "err", Redact(err.Error()))
	}
	if _, err := api.PostEphemeralContext(ctx, channel, user, opts...); err != nil {
		r.log().Error("could not reply", "user", user, "channel", channel, "err", Redact(err.Error()))
	}
}

// Dedup remembers keys for a while: Seen reports whether a key was seen in
// the last TTL, and remembers it. Bounded: at most Max keys are kept (the
// oldest go first), so a flood cannot grow it without limit.
type Dedup struct {
	TTL time.Duration // default 15 minutes: longer than Slack's retry window
	Max int           // default 10,000
	Now func() time.Time

	mu    sync.Mutex
	seen  map[string]time.Time
	order []seenKey // oldest first
}

type seenKey struct {
	key string
	at  time.Time
}

// Seen reports whether key was seen within TTL and records it.
func (d *Dedup) Seen(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if d.Now != nil {
		now = d.Now()
	}
	ttl, limit := d.TTL, d.Max
	if ttl <= 0 {
		ttl = 15 * time.Minute
	}
	if limit <= 0 {
		limit = 10000
	}
	if d.seen == nil {
		d.seen = map[string]time.Time{}
	}
	if at, ok := d.seen[key]; ok && now.Sub(at) < ttl {
		return true
	}
	for len(d.order) > 0 {
		o := d.order[0]
		if now.Sub(o.at) < ttl && len(d.order) < limit {
			break
		}
		if d.seen[o.key].Equal(o.at) {
			delete(d.seen, o.key)
		}
		d.order = d.order[1:]
	}
	d.seen[key] = now
	d.order = append(d.order, seenKey{key, now})
	return false
}
