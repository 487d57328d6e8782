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

// Router connects a Handler to Slack. Who acknowledges what (the one rule,
// decided by the bot's socket loop, bot/socket.go):
//
//   - Slash commands and clicks never reach slacker, which acks every
//     envelope before any handler runs (so a crash in between would lose an
//     acknowledged click). The socket loop hands them to Slash and Interact
//     with the envelope's ack, and Router sends it once the Handler has
//     decided: its decision committed to the store, or a refusal (also an
//     answer). Then it replies. Commit, ack, then reply: a bot that dies
//     before the ack leaves the envelope unacknowledged, Slack redelivers it
//     (retry_attempt > 0), and the redelivery is decided by whatever the store
//     says now (a click already approved gets "already approved", nothing
//     more). The one exception is /recover ask (acksFirst).
//   - Messages (app_mention, DMs) stay on slacker's path and are acked by
//     it on receipt, like every Events API envelope. Its command matcher is
//     unanchored and its built-in help answers any text containing the word
//     "help". So the whole of "recover …" is one definition, installed as
//     the help command (slacker tries it first): "recover <args>". The
//     Handler parses the text itself, anchored, word by word.
//   - Each request runs with a deadline on a context that outlives a
//     cancelled Listen, so a decision being persisted is not cut halfway.
//   - Slack redelivers an envelope it holds unacknowledged with the same
//     payload, so Router keys on what is unique in it: a slash command's
//     trigger_id, a click's trigger_id and action_ts, a message's channel and
//     ts. A live redelivery of a request still being decided waits for that
//     decision and is acked with it; one of a request already answered is
//     acked at once; neither is handled twice.
//   - Clicks decide on the plan blocks only (BlockApproval, BlockOutcome, and
//     the App Home's per-plan blocks, HomeBlock, marked Home); Handler.Click
//     switches on the action id.
//   - chat.postEphemeral needs the bot in the channel; replies go to the
//     response_url (works anywhere, shown only to the user), with
//     chat.postEphemeral as fallback.
type Router struct {
	Handler *Handler
	// Timeout bounds the work of one command or click (default 20s).
	Timeout time.Duration
	// OnDuplicate, when set, is called with the key of each redelivered
	// envelope dropped (tests and metrics).
	OnDuplicate func(key string)
	Log         *slog.Logger

	dedup    Dedup
	mu       sync.Mutex
	deciding map[string]*deciding // keys being decided
	running  sync.WaitGroup
}

// AckWindow is how long Slack waits for an ack before it shows the user an
// error and redelivers the envelope. A decision that takes longer is still
// acked only once decided (its redelivery waits for it); the log says so.
const AckWindow = 3 * time.Second

// Register installs "recover <args>" for messages on bot. Slash commands and
// clicks come through Slash and Interact instead.
func (r *Router) Register(bot *slacker.Slacker) {
	bot.Help(&slacker.CommandDefinition{
		Command:     "recover <args>",
		Description: "recoverbot: /recover help lists the sub-commands",
		HideHelp:    true,
		Handler:     r.onMessage,
	})
	bot.UnsupportedCommandHandler(r.onMessage)
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

func (r *Router) dropped(key string) {
	r.log().Info("dropped a redelivered Slack envelope", "key", Redact(key))
	if r.OnDuplicate != nil {
		r.OnDuplicate(key)
	}
}

// deciding is a request being decided: done is closed when it ends, and
// acked then says whether it was acknowledged.
type deciding struct {
	done  chan struct{}
	acked bool
}

// answered is a request decided and acknowledged before.
var answered = func() *deciding {
	d := &deciding{done: make(chan struct{}), acked: true}
	close(d.done)
	return d
}()

// begin claims key for a new decision. For a key seen before it reports dup
// and returns that earlier request, whose done is closed once it ended.
func (r *Router) begin(key string) (earlier *deciding, dup bool) {
	if key == "" {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.dedup.Seen(key) {
		if r.deciding == nil {
			r.deciding = map[string]*deciding{}
		}
		r.deciding[key] = &deciding{done: make(chan struct{})}
		return nil, false
	}
	if d := r.deciding[key]; d != nil {
		return d, true
	}
	return answered, true
}

// end ends the decision of key: acked, or left unacknowledged (then key is
// forgotten, so that Slack's next delivery of it is decided again).
func (r *Router) end(key string, acked bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := r.deciding[key]; d != nil {
		d.acked = acked
		close(d.done)
		delete(r.deciding, key)
	}
	if !acked {
		r.dedup.Forget(key)
	}
}

// serve is the order of one slash command or click: decide, ack, reply.
// handle decides (the engine commits before it returns) and says what to
// tell the user; ack is sent right after it returns, or first when
// ackFirst. A panicking handler is acked too: it has ended, and its
// redelivery would only be dropped here. A reply marked Redeliver (the
// decision's outcome is unknown here: recovery.Undecided) is neither acked
// nor shown: Slack delivers the envelope again, to whichever replica leads,
// and the store decides it there. A redelivery of key arriving meanwhile is
// acked when the first delivery is (and left alone when it is not), and not
// handled.
func (r *Router) serve(parent context.Context, what, key string, ackFirst bool, ack func(), handle func(context.Context) *Reply, to replyTo) {
	if earlier, dup := r.begin(key); dup {
		r.dropped(key)
		select {
		case <-earlier.done:
			if earlier.acked {
				ack()
			}
		case <-parent.Done():
			// Shutting down: left unacknowledged, Slack redelivers it to
			// the next connection, where the store decides it.
		}
		return
	}
	start := time.Now()
	var once sync.Once
	finish := func(acked bool) {
		once.Do(func() {
			if acked {
				ack()
			}
			r.end(key, acked)
			if took := time.Since(start); acked && took > AckWindow {
				r.log().Warn("acked a Slack request after Slack's 3s window: Slack showed the user a timeout and redelivered it; the redelivery was acked with the decision, not decided again",
					"what", what, "took", took.Round(time.Millisecond))
			}
		})
	}
	defer finish(true)
	r.run(parent, what, func(ctx context.Context) {
		if ackFirst {
			finish(true)
		}
		rep := handle(ctx)
		if rep != nil && rep.Redeliver && !ackFirst { // acked first: it can only be told
			r.log().Warn("left a Slack request unacknowledged: its decision's outcome is unknown here; Slack delivers it again", "what", what)
			finish(false)
			return
		}
		finish(true)
		if rep != nil {
			r.respond(ctx, rep, to)
		}
	})
}

// replyTo is where a request's answer goes.
type replyTo struct{ channel, user, responseURL string }

// Slash decides one slash command and acks it (see Router). Only /recover
// is ours: any other command is answered with the help.
func (r *Router) Slash(ctx context.Context, sc slack.SlashCommand, ack func()) {
	req := Request{User: sc.UserID, Channel: sc.ChannelID, Text: sc.Text, ResponseURL: sc.ResponseURL, TriggerID: sc.TriggerID}
	if sc.Command != "/recover" {
		req.Text = ""
	}
	key := ""
	if sc.TriggerID != "" {
		key = "slash:" + sc.TriggerID
	}
	r.serve(ctx, "command", key, acksFirst(req.Text), ack, func(ctx context.Context) *Reply {
		return r.Handler.Command(ctx, req)
	}, replyTo{req.Channel, req.User, req.ResponseURL})
}

// Interact decides one interaction and acks it (see Router). Only button
// presses on the plan blocks decide anything; every other interaction (a
// modal closed or submitted, an unknown block) is acked at once.
func (r *Router) Interact(ctx context.Context, cb slack.InteractionCallback, ack func()) {
	if cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) == 0 {
		r.log().Debug("ignored interaction", "type", cb.Type)
		ack()
		return
	}
	a := cb.ActionCallback.BlockActions[0]
	if a.BlockID != BlockApproval && a.BlockID != BlockOutcome && !HomeBlock(a.BlockID) {
		r.log().Debug("ignored click outside the plan blocks", "block_id", a.BlockID, "action_id", a.ActionID)
		ack()
		return
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
	key := ""
	if cb.TriggerID != "" || a.ActionTs != "" {
		key = "click:" + cb.TriggerID + ":" + a.ActionTs
	}
	r.serve(ctx, "click", key, false, ack, func(ctx context.Context) *Reply {
		return r.Handler.Click(ctx, click)
	}, replyTo{replyIn, click.User, click.ResponseURL})
}

// onMessage runs "recover …" sent as a message (app_mention, DM), which
// slacker acked on receipt. A redelivery is dropped.
func (r *Router) onMessage(c *slacker.CommandContext) {
	ev := c.Event()
	req := Request{User: ev.UserID, Channel: ev.ChannelID}
	if c.Request() != nil && c.Request().Properties() != nil {
		req.Text = c.Request().Param("args")
	}
	if ev.TimeStamp != "" {
		if key := "message:" + ev.ChannelID + ":" + ev.TimeStamp; r.dedup.Seen(key) {
			r.dropped(key)
			return
		}
	}
	r.run(c.Context(), "command", func(ctx context.Context) {
		if rep := r.Handler.Command(ctx, req); rep != nil {
			r.respond(ctx, rep, replyTo{req.Channel, req.User, req.ResponseURL})
		}
	})
}

// respond shows rep to its user only: through the response_url, else
// chat.postEphemeral.
func (r *Router) respond(ctx context.Context, rep *Reply, to replyTo) {
	channel, user, responseURL := to.channel, to.user, to.responseURL
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

// Forget drops key, so that its next delivery is decided again.
func (d *Dedup) Forget(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.seen, key)
}
