package bot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/recovery"
)

var _ recovery.LaneNotifier = (*SlackNotifier)(nil)

// slackPoster is the part of the Web API the notifier calls (*slack.Client).
type slackPoster interface {
	PostMessageContext(ctx context.Context, channelID string, options ...slack.MsgOption) (string, string, error)
	UpdateMessageContext(ctx context.Context, channelID, timestamp string, options ...slack.MsgOption) (string, string, string, error)
}

// planSource is what the notifier asks the engine while rendering.
type planSource interface {
	Describe(actions []recovery.Action) []string
	Paused() bool
	Breaker() string
	Freezes() []recovery.Freeze
}

// SlackNotifier delivers outbox notifications to the incident channel: a
// plan becomes a root message, each state change re-renders that message
// (chat.update) and is told in its thread, each step is a thread reply,
// notices are channel messages.
//
// "repeats" (duplicates folded into the plan; the engine emits at most one
// every few seconds per plan) and "explain" (an AI explanation was added)
// only re-render the root message: an alert storm is one message whose
// count moves, never a reply per event. A plan never announced (a
// suppressed one: those are summarized) gets no root for them. Any other
// notification of an execution re-renders the root too when what it shows
// changed (a step that marks it as a false action, say): the hash of the
// last rendering is kept with the delivery record, so an unchanged root
// costs no chat.update.
//
// Exactly once, as far as it can be: for each execution the store keeps
// (key commands.SettingMessagePrefix+id) the root message's channel and ts
// and the last outbox seq delivered. A notification at or below that seq was
// delivered before a crash or a failed outbox ack and is skipped. The
// remaining window is a crash between Slack's answer and that record's
// commit (one fsync, about a millisecond): the next start posts that one
// message again (for NotifyLane, the replies of that lane). A Slack call that
// timed out without an answer may also have been posted; it is retried, so it
// may appear twice. chat.update is idempotent and never duplicates.
//
// 429 answers return an error with RetryAfter, so the courier waits as long as
// Slack asks and retries the same notification; order within a plan's thread
// is kept because the courier delivers each plan's notifications in order,
// one at a time (recovery.Courier). A refused token waits the same way. An
// answer about the message itself (invalid_blocks, msg_too_long,
// channel_not_found, …, see refusedForGood) is Permanent: the courier
// dead-letters that message and goes on.
type SlackNotifier struct {
	API     slackPoster
	Store   recovery.Store
	Engine  planSource
	Signer  *commands.Signer
	Channel string
	// CallTimeout bounds each Web API call (default 10s).
	CallTimeout time.Duration
	Log         *slog.Logger

	mu    sync.Mutex
	cache map[string]*msgRecord // by execution id ("" for notices)
	// shown is the pause flag and breaker reason the open plan messages
	// last showed (only a notice's delivery touches it: the courier delivers
	// each notice alone).
	shown banners
}

// banners are the bot-wide states plan messages show.
type banners struct {
	paused  bool
	breaker string
	freezes string // the ids and ends of the freezes holding
}

// freezeKey identifies a set of freezes for banners.
func freezeKey(fs []recovery.Freeze) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.ID + "@" + f.End.UTC().Format(time.RFC3339) + ";")
	}
	return b.String()
}

// msgRecord is where an execution's messages live and how far delivery got.
type msgRecord struct {
	Channel string `json:"channel,omitempty"`
	TS      string `json:"ts,omitempty"`
	Seq     uint64 `json:"seq"`
	// Hash identifies the root message's last rendering (text and blocks).
	Hash string `json:"hash,omitempty"`
	// dirty: delivered, but the record is not persisted yet.
	dirty bool
}

const noticeKey = "slack:notice"

// rateLimited is a 429 with the wait Slack asked for; the courier honours it.
type rateLimited struct {
	err  error
	wait time.Duration
}

func (e *rateLimited) Error() string             { return e.err.Error() }
func (e *rateLimited) Unwrap() error             { return e.err }
func (e *rateLimited) RetryAfter() time.Duration { return e.wait }

var errSlackCallTimeout = errors.New("slack web api call timed out")

// Notify implements recovery.Notifier.
func (n *SlackNotifier) Notify(ctx context.Context, note recovery.Notification, x *recovery.Execution) error {
	key := noticeKey
	if !note.IsNotice() {
		key = commands.SettingMessagePrefix + note.ExecutionID
	}
	rec, err := n.record(ctx, key)
	if err != nil {
		return err
	}
	if note.Seq <= rec.Seq {
		// Delivered already (before a crash, or before a failed ack).
		if rec.dirty {
			return n.save(ctx, key, rec)
		}
		return nil
	}
	next := *rec
	if err := n.deliver(ctx, note, x, &next, nil); err != nil {
		if next.TS != rec.TS {
			// A root message was posted before the failure: keep where it
			// is (seq unchanged), so the retry threads under it instead of
			// posting another one.
			next.Seq, next.dirty = rec.Seq, true
			n.mu.Lock()
			n.cache[key] = &next
			n.mu.Unlock()
			if serr := n.save(ctx, key, &next); serr != nil {
				n.log().Warn("could not record the root message", "key", key, "err", serr)
			}
		}
		return n.classify(err)
	}
	next.Seq, next.dirty = note.Seq, true
	n.mu.Lock()
	n.cache[key] = &next
	n.mu.Unlock()
	return n.save(ctx, key, &next)
}

// NotifyLane implements recovery.LaneNotifier: notes are one execution's, in
// outbox order, and x is that execution as it stands now, the same for all of
// them. So its root message is rendered (and updated, if it changed) once,
// however many notes there are, each note's thread reply is posted in order,
// and the delivery record is saved once, after the last: per note, one Web API
// call and no store access. A crash before that save posts the lane's replies
// again at the next start; Notify's window is one message.
func (n *SlackNotifier) NotifyLane(ctx context.Context, notes []recovery.Notification, x *recovery.Execution) (int, error) {
	if x == nil || len(notes) == 0 || notes[0].IsNotice() {
		for i, note := range notes {
			if err := n.Notify(ctx, note, x); err != nil {
				return i, err
			}
		}
		return len(notes), nil
	}
	key := commands.SettingMessagePrefix + notes[0].ExecutionID
	rec, err := n.record(ctx, key)
	if err != nil {
		return 0, err
	}
	next := *rec
	sync := &rootSync{}
	for _, note := range notes {
		sync.force = sync.force || note.Kind == recovery.NoteState
	}
	delivered, derr := 0, error(nil)
	for _, note := range notes {
		if note.Seq > next.Seq {
			if derr = n.deliver(ctx, note, x, &next, sync); derr != nil {
				break
			}
			next.Seq = note.Seq
		}
		delivered++
	}
	if next != *rec || next.dirty {
		// Kept dirty in memory first: if the save fails, the retry skips
		// what was posted and saves again (Notify).
		next.dirty = true
		n.mu.Lock()
		n.cache[key] = &next
		n.mu.Unlock()
		if err := n.save(ctx, key, &next); err != nil {
			if derr != nil {
				n.log().Warn("could not record the messages posted", "key", key, "err", err)
				return delivered, n.classify(derr)
			}
			return 0, err // retried: what was posted is skipped, the save made again
		}
	}
	if derr != nil {
		return delivered, n.classify(derr)
	}
	return delivered, nil
}

// rootSync is how NotifyLane has a lane's notes share one rendering of the
// root message: done once it was posted or synced, force if any of the notes
// is a state change.
type rootSync struct{ done, force bool }

// deliver delivers one note. sync, when set (NotifyLane), has the root
// rendered at most once for all the notes sharing it.
func (n *SlackNotifier) deliver(ctx context.Context, note recovery.Notification, x *recovery.Execution, rec *msgRecord, sync *rootSync) error {
	notice := note.IsNotice()
	if notice || x == nil {
		// A notice, or an execution that no longer exists: a channel message.
		_, _, err := n.post(ctx, n.Channel, slack.MsgOptionText(commands.NoteText(note), false))
		if err == nil && notice {
			n.refreshBanners(ctx)
		}
		return err
	}
	rootOnly := note.Kind == recovery.NoteRepeats || note.Kind == recovery.NoteExplain
	switch {
	case rec.TS == "" && rootOnly:
		// Never announced (a suppressed plan: summarized, not posted), so
		// there is nothing to update; the count and the explanation live
		// on the execution and show if its root is ever posted.
		return nil
	case rec.TS == "":
		// The root message: the plan, rendered as it stands now (a late
		// delivery shows the latest state, which later updates keep). A
		// step or state of a plan posted while offline gets a root first.
		if err := n.postRoot(ctx, x, rec); err != nil {
			return err
		}
		if sync != nil {
			sync.done = true // rendered as x stands, which every note of the lane shares
		}
		if note.Kind == recovery.NotePlan {
			return nil
		}
	case note.Kind == recovery.NotePlan:
		return nil // posted before; the record only lacked the seq
	case sync != nil && sync.done:
		// The root already shows x for this lane.
	default:
		// A state change always re-renders; anything else only when the
		// rendering changed.
		force := note.Kind == recovery.NoteState
		if sync != nil {
			force, sync.done = sync.force, true
		}
		if err := n.syncRoot(ctx, x, rec, force); err != nil {
			return err
		}
	}
	if rootOnly {
		return nil
	}
	opts := []slack.MsgOption{slack.MsgOptionText(commands.NoteText(note), false), slack.MsgOptionTS(rec.TS)}
	switch note.State {
	case recovery.Failed, recovery.RollbackFailed, recovery.Interrupted:
		opts = append(opts, slack.MsgOptionBroadcast()) // bad news reaches the channel, not only the thread
	}
	_, _, err := n.post(ctx, rec.Channel, opts...)
	if isMissingMessage(err) {
		// The root was deleted: start a new one, then tell the thread.
		rec.TS = ""
		if err := n.postRoot(ctx, x, rec); err != nil {
			return err
		}
		opts[1] = slack.MsgOptionTS(rec.TS)
		_, _, err = n.post(ctx, rec.Channel, opts...)
	}
	return err
}

// rendering is a root message as it would be sent now.
type rendering struct {
	text   string
	blocks []slack.Block
	hash   string
}

func (n *SlackNotifier) render(ctx context.Context, x *recovery.Execution) (rendering, error) {
	audit, err := n.Store.Audit(ctx, x.ID)
	if err != nil {
		return rendering{}, fmt.Errorf("read audit of %s: %w", x.ID, err)
	}
	text, blocks := commands.Message(commands.View{X: x, Describe: n.Engine.Describe(x.Actions),
		Facts: commands.FactsFrom(audit), Paused: n.Engine.Paused(), Breaker: n.Engine.Breaker(), Freezes: n.Engine.Freezes(), Signer: n.Signer})
	h := sha256.New()
	h.Write([]byte(text))
	h.Write([]byte{0})
	_ = json.NewEncoder(h).Encode(blocks)
	return rendering{text: text, blocks: blocks, hash: hex.EncodeToString(h.Sum(nil)[:12])}, nil
}

func (n *SlackNotifier) postRoot(ctx context.Context, x *recovery.Execution, rec *msgRecord) error {
	r, err := n.render(ctx, x)
	if err != nil {
		return err
	}
	ch, ts, err := n.post(ctx, n.Channel, slack.MsgOptionText(r.text, false), slack.MsgOptionBlocks(r.blocks...))
	if isBlocksRefused(err) {
		n.log().Error("Slack refused the plan message's blocks; posting it as text", "plan", x.ID, "err", err)
		ch, ts, err = n.post(ctx, n.Channel, slack.MsgOptionText(textOnly(x), false))
	}
	if err != nil {
		return err
	}
	rec.Channel, rec.TS, rec.Hash = ch, ts, r.hash
	return nil
}

// syncRoot re-renders the root message; unless force is set, only when the
// rendering differs from the one last sent.
func (n *SlackNotifier) syncRoot(ctx context.Context, x *recovery.Execution, rec *msgRecord, force bool) error {
	r, err := n.render(ctx, x)
	if err != nil {
		return err
	}
	if !force && r.hash == rec.Hash {
		return nil
	}
	err = n.update(ctx, rec, slack.MsgOptionText(r.text, false), slack.MsgOptionBlocks(r.blocks...))
	if isBlocksRefused(err) {
		n.log().Error("Slack refused the plan message's blocks; showing it as text", "plan", x.ID, "err", err)
		err = n.update(ctx, rec, slack.MsgOptionText(textOnly(x), false), slack.MsgOptionBlocks([]slack.Block{}...))
	}
	if isMissingMessage(err) {
		rec.TS = ""
		return n.postRoot(ctx, x, rec)
	}
	if err == nil {
		rec.Hash = r.hash
	}
	return err
}

// refreshBanners re-renders the messages of plans awaiting approval when the
// pause flag, the blast-radius breaker or the freezes changed (all are
// announced by notices: pause, resume, the breaker tripping, freeze,
// unfreeze), so every open plan says whether the bot is paused, whether the
// breaker holds it and which freezes cover it. A freeze that runs out is
// not announced: its banner names its end until the plan's next update. Best effort: a
// failure is logged and the next notification of each plan renders it
// anyway.
func (n *SlackNotifier) refreshBanners(ctx context.Context) {
	now := banners{paused: n.Engine.Paused(), breaker: n.Engine.Breaker(), freezes: freezeKey(n.Engine.Freezes())}
	if now == n.shown {
		return
	}
	n.shown = now
	xs, err := n.Store.Executions(ctx, recovery.ExecutionFilter{State: recovery.PendingApproval, Limit: 50})
	if err != nil {
		n.log().Warn("list plans to show the pause or the breaker", "err", err)
		return
	}
	for i := range xs {
		key := commands.SettingMessagePrefix + xs[i].ID
		rec, err := n.record(ctx, key)
		if err != nil || rec.TS == "" {
			continue
		}
		r := *rec
		if err := n.syncRoot(ctx, &xs[i], &r, false); err != nil {
			n.log().Warn("show the pause or the breaker on a plan message", "plan", xs[i].ID, "err", commands.Redact(err.Error()))
		}
		if r.TS != rec.TS || r.Hash != rec.Hash {
			r.dirty = true
			n.mu.Lock()
			n.cache[key] = &r
			n.mu.Unlock()
			_ = n.save(ctx, key, &r)
		}
	}
}

// textOnly is the plan without blocks, for when Slack refuses the blocks.
func textOnly(x *recovery.Execution) string {
	s := fmt.Sprintf("%s: plan %s (%s) is %s.", "recoverbot", x.ID, x.Runbook, x.State)
	if x.State == recovery.PendingApproval {
		s += fmt.Sprintf(" Buttons could not be shown: approve with `recoverbot approve %s` or reject with `recoverbot reject %s`.", x.ID, x.ID)
	}
	return s
}

func (n *SlackNotifier) post(ctx context.Context, channel string, opts ...slack.MsgOption) (string, string, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, n.callTimeout(), errSlackCallTimeout)
	defer cancel()
	return n.API.PostMessageContext(ctx, channel, opts...)
}

func (n *SlackNotifier) update(ctx context.Context, rec *msgRecord, opts ...slack.MsgOption) error {
	ctx, cancel := context.WithTimeoutCause(ctx, n.callTimeout(), errSlackCallTimeout)
	defer cancel()
	_, _, _, err := n.API.UpdateMessageContext(ctx, rec.Channel, rec.TS, opts...)
	return err
}

func (n *SlackNotifier) callTimeout() time.Duration {
	if n.CallTimeout > 0 {
		return n.CallTimeout
	}
	return 10 * time.Second
}

// classify turns a Slack 429, a refused token and an outage into errors the
// courier waits on, and Slack's answers refusing a message for good into
// Permanent ones. What is left (other answers about the message) counts as an
// attempt.
func (n *SlackNotifier) classify(err error) error {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		wait := rl.RetryAfter
		if wait <= 0 {
			wait = time.Second
		}
		return &rateLimited{err: err, wait: wait}
	}
	redacted := fmt.Errorf("slack: %s", commands.Redact(err.Error()))
	if slackDown(err) {
		return &unavailable{redacted}
	}
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		switch se.Err {
		case "not_in_channel", "channel_not_found", "is_archived":
			n.log().Error("cannot post to the incident channel: invite the bot (/invite @recoverbot) or fix RECOVERBOT_SLACK_CHANNEL; the message is dead-lettered",
				"channel", n.Channel, "err", se.Err)
			return &refused{redacted}
		case "invalid_auth", "token_revoked", "account_inactive", "not_authed":
			// The whole API is closed to the bot, not this message: wait
			// (not an attempt, see recovery.Courier), never dead-letter.
			n.log().Error("Slack refuses the bot token; notifications wait until it is fixed", "err", se.Err)
			return &rateLimited{err: redacted, wait: authRetry}
		}
		if refusedForGood[se.Err] {
			return &refused{redacted}
		}
	}
	return redacted
}

// authRetry is how often delivery retries while Slack refuses the token.
const authRetry = 30 * time.Second

// refusedForGood are Slack errors about the message itself (its content,
// size or channel): sending it again gives the same answer, so the courier
// dead-letters it instead of blocking the messages behind it.
var refusedForGood = map[string]bool{
	"invalid_blocks": true, "invalid_blocks_format": true, "msg_blocks_too_long": true,
	"msg_too_long": true, "no_text": true, "invalid_arguments": true, "too_many_attachments": true,
	"invalid_attachments": true, "restricted_action": true, "cannot_reply_to_message": true,
}

// slackDown reports whether err says Slack could not be reached or did not
// answer: no connection, a timeout (ours or the network's) or a 5xx. Such an
// error says nothing about the message, so it is never an attempt.
func slackDown(err error) bool {
	var sc slack.StatusCodeError
	if errors.As(err, &sc) {
		return sc.Code >= 500
	}
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errSlackCallTimeout)
}

// unavailable is an outage of Slack (see slackDown).
type unavailable struct{ err error }

func (e *unavailable) Error() string     { return e.err.Error() }
func (e *unavailable) Unwrap() error     { return e.err }
func (e *unavailable) Unavailable() bool { return true }

// refused is a Slack answer that will not change on a retry.
type refused struct{ err error }

func (e *refused) Error() string   { return e.err.Error() }
func (e *refused) Unwrap() error   { return e.err }
func (e *refused) Permanent() bool { return true }

func isMissingMessage(err error) bool {
	var se slack.SlackErrorResponse
	return errors.As(err, &se) && (se.Err == "message_not_found" || se.Err == "cant_update_message")
}

func isBlocksRefused(err error) bool {
	var se slack.SlackErrorResponse
	if !errors.As(err, &se) {
		return false
	}
	switch se.Err {
	case "invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long", "msg_too_long":
		return true
	}
	return false
}

func (n *SlackNotifier) record(ctx context.Context, key string) (*msgRecord, error) {
	n.mu.Lock()
	if n.cache == nil {
		n.cache = map[string]*msgRecord{}
	}
	rec, ok := n.cache[key]
	n.mu.Unlock()
	if ok {
		return rec, nil
	}
	rec = &msgRecord{}
	b, err := n.Store.Setting(ctx, key)
	switch {
	case errors.Is(err, recovery.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", key, err)
	default:
		if err := json.Unmarshal(b, rec); err != nil {
			return nil, fmt.Errorf("read %s: %w", key, err)
		}
	}
	n.mu.Lock()
	if len(n.cache) >= 4096 {
		// The store stays authoritative, except for records not saved yet:
		// dropping one would post its messages again.
		kept := map[string]*msgRecord{}
		for k, r := range n.cache {
			if r.dirty {
				kept[k] = r
			}
		}
		n.cache = kept
	}
	n.cache[key] = rec
	n.mu.Unlock()
	return rec, nil
}

func (n *SlackNotifier) save(ctx context.Context, key string, rec *msgRecord) error {
	b, _ := json.Marshal(rec)
	if err := n.Store.PutSetting(ctx, key, b); err != nil {
		// Kept dirty in memory: the retry skips Slack and saves again.
		return fmt.Errorf("record delivery of %s: %w", key, err)
	}
	n.mu.Lock()
	rec.dirty = false
	n.mu.Unlock()
	return nil
}

func (n *SlackNotifier) log() *slog.Logger {
	if n.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return n.Log
}
