package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

// Engine is what the commands need from the recovery engine
// (*recovery.Engine implements it).
type Engine interface {
	Approve(ctx context.Context, id, actor string) (recovery.Execution, error)
	Reject(ctx context.Context, id, actor string) (recovery.Execution, error)
	Rollback(ctx context.Context, id, actor string) (recovery.Execution, error)
	// DeclineRollback keeps the target as it is when an automatic rollback
	// awaits approval (Rollback approves it).
	DeclineRollback(ctx context.Context, id, actor string) (recovery.Execution, error)
	Pause(ctx context.Context, actor string) error
	Resume(ctx context.Context, actor string) error
	Paused() bool
	Freeze(ctx context.Context, r recovery.FreezeRequest) (recovery.Freeze, error)
	Unfreeze(ctx context.Context, id string, all bool, actor string) ([]recovery.Freeze, error)
	// Freezes are the freezes holding now, ad-hoc and recurring.
	Freezes() []recovery.Freeze
	// Breaker says why the blast-radius breaker is open ("" when closed);
	// Resume closes it.
	Breaker() string
	// Ask turns a free-text question into an AI plan awaiting approval,
	// waiting for the AI at most the engine's AI timeout.
	Ask(ctx context.Context, question, requestedBy string) (recovery.Answer, error)
	MarkFalse(ctx context.Context, id, actor string) (recovery.Execution, error)
	PlanManual(ctx context.Context, runbook string, values map[string]any, requestedBy string) (recovery.Answer, error)
	Preview(runbook string, values map[string]any, requestedBy string) (recovery.Plan, error)
	Describe(actions []recovery.Action) []string
	RecordRefusal(ctx context.Context, executionID, actor, reason string) error
	ApprovalRule(rb *runbooks.Runbook) string
	RateUse(runbook string) (used, limit int)
	Stats(ctx context.Context, window time.Duration) (recovery.Stats, error)
	Store() recovery.Store
	Runbooks() *runbooks.Set
	Config() recovery.Config
}

var _ Engine = (*recovery.Engine)(nil)

// Slack is the part of the Web API the handlers call (*slack.Client).
type Slack interface {
	GroupMembers
	PostMessageContext(ctx context.Context, channelID string, options ...slack.MsgOption) (string, string, error)
	PostEphemeralContext(ctx context.Context, channelID, userID string, options ...slack.MsgOption) (string, error)
	OpenViewContext(ctx context.Context, triggerID string, view slack.ModalViewRequest) (*slack.ViewResponse, error)
}

var _ Slack = (*slack.Client)(nil)

// Handler answers /recover and the buttons of plan messages. Command and
// Click decide and act; what they return is shown only to the person who
// asked (ephemeral). Neither ever runs an action itself: they ask the engine,
// which persists the decision before anything runs.
type Handler struct {
	Engine    Engine
	Slack     Slack
	Channel   string // the incident channel: the only one commands and clicks are taken from
	Approvers *Approvers
	Signer    *Signer
	Log       *slog.Logger
}

// Request is one /recover command.
type Request struct {
	User, Channel, Text string
	ResponseURL         string
	TriggerID           string
}

// Click is one button press on a plan message, or on a plan in the App
// Home.
type Click struct {
	User, Channel, MessageTS string
	ActionID, BlockID, Value string
	TriggerID, ResponseURL   string
	// Home is set for a click in the bot's App Home tab: a view the bot
	// published to that user, which has no channel. Every other check (the
	// signature, the approvers, the engine's) applies as in the channel.
	Home bool
}

// Reply is an answer only its reader sees.
type Reply struct {
	Text   string
	Blocks []slack.Block
	// Redeliver says the decision's outcome is unknown here
	// (recovery.Undecided: this replica's write was fenced, or the store did
	// not answer): the request is left unacknowledged for Slack to deliver
	// again, and nothing is told (Router.serve). Text is for a request that
	// was acknowledged before it was decided (a message, /recover ask).
	Redeliver bool
}

// undecided is the reply to a request whose decision hit recovery.Undecided.
func (h *Handler) undecided(what string, err error) *Reply {
	h.log().Warn(what+": outcome unknown on this replica; left for Slack to deliver again", "err", Redact(err.Error()))
	return &Reply{Redeliver: true, Text: "recoverbot could not tell whether this was done (this replica stopped leading, or its store did not answer): check `/recover status` in a moment and try again if needed."}
}

func text(format string, args ...any) *Reply { return &Reply{Text: fmt.Sprintf(format, args...)} }

func (h *Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}

func (h *Handler) now() time.Time { return h.Engine.Config().Clock.Now() }

// Command runs one /recover sub-command. A wrong sub-command or argument
// gets a usage line naming what was wrong; nothing else happens.
func (h *Handler) Command(ctx context.Context, r Request) *Reply {
	words := split(r.Text)
	sub := ""
	if len(words) > 0 {
		sub, words = strings.ToLower(words[0]), words[1:]
	}
	if r.Channel != h.Channel {
		if mutating(sub) {
			h.refuse(ctx, "", r.User, fmt.Sprintf("/recover %s from channel %s, not the incident channel %s", sub, r.Channel, h.Channel))
		}
		return text("recoverbot only takes commands in <#%s>: run `/recover %s` there.", h.Channel, esc(sub))
	}
	var rep *Reply
	var err error
	switch sub {
	case "", "help":
		rep = h.help()
	case "runbooks":
		rep, err = h.runbooks(ctx, words)
	case "plan":
		rep, err = h.plan(ctx, r.User, words)
	case "dryrun", "dry-run":
		rep, err = h.dryrun(ctx, r.User, words)
	case "rollback":
		rep, err = h.rollback(ctx, r.User, words)
	case "status":
		rep, err = h.status(ctx, words)
	case "history":
		rep, err = h.history(ctx, words)
	case "pause", "resume":
		rep, err = h.pause(ctx, r.User, sub == "pause", words)
	case "freeze":
		rep, err = h.freeze(ctx, r.User, words)
	case "unfreeze":
		rep, err = h.unfreeze(ctx, r.User, words)
	case "freezes":
		rep, err = h.freezes(words)
	case "stats":
		rep, err = h.stats(ctx, words)
	case "ask":
		rep, err = h.ask(ctx, r.User, afterFirstWord(r.Text))
	case "false":
		rep, err = h.falseAction(ctx, r.User, words)
	default:
		err = usagef("`%s` is not a /recover sub-command. Try one of: %s.", esc(sub), subList())
	}
	if err != nil {
		return h.errorReply(err, "/recover "+sub)
	}
	return rep
}

// acksFirst reports whether a /recover command is acknowledged before it is
// decided: only ask, whose decision waits on the AI for longer than Slack's
// 3s ack window (AckWindow). Its ack promises only that the question was
// received: a bot that dies while the AI thinks loses the question, with no
// plan made (the asker sees no answer and asks again); a plan the AI
// proposes is committed, posted and approved like any other. Every other
// command is acked once decided.
func acksFirst(text string) bool {
	words := split(text)
	return len(words) > 0 && strings.ToLower(words[0]) == "ask"
}

func mutating(sub string) bool {
	switch sub {
	case "plan", "rollback", "pause", "resume", "freeze", "unfreeze", "ask", "false":
		return true
	}
	return false
}

func subList() string {
	var names []string
	for _, u := range usage {
		names = append(names, "`"+strings.Fields(u.cmd)[0]+"`")
	}
	return strings.Join(names, ", ")
}

func (h *Handler) help() *Reply {
	var b strings.Builder
	fmt.Fprintf(&b, "*recoverbot* — `/recover <sub-command>` in <#%s>:\n", h.Channel)
	for _, u := range usage {
		fmt.Fprintf(&b, "• `%s` — %s\n", esc(u.cmd), u.what)
	}
	b.WriteString("Plans that need approval are posted here with *Approve & Execute*, *Reject* and *View Details*; each execution is reported in its message's thread.")
	return &Reply{Text: b.String()}
}

func noArgs(sub string, words []string) error {
	if len(words) > 0 {
		return usagef("`%s` takes no arguments (got `%s`). Usage: %s", sub, esc(strings.Join(words, " ")), usageOf(sub))
	}
	return nil
}

func (h *Handler) runbooks(_ context.Context, words []string) (*Reply, error) {
	if err := noArgs("runbooks", words); err != nil {
		return nil, err
	}
	var b strings.Builder
	all := h.Engine.Runbooks().All()
	fmt.Fprintf(&b, "*%d runbook%s* (mode `%s`, first match wins, in this order):\n", len(all), plural(len(all)), h.Engine.Config().Mode)
	for _, rb := range all {
		used, limit := h.Engine.RateUse(rb.Name)
		fmt.Fprintf(&b, "\n*%s*", esc(rb.Name))
		if rb.Description != "" {
			fmt.Fprintf(&b, " — %s", esc(rb.Description))
		}
		fmt.Fprintf(&b, "\n• Trigger: %s\n", triggerText(rb))
		var acts []string
		for _, a := range rb.Actions {
			s := string(a.Type)
			if a.Operation != "" {
				s += " " + a.Operation
			}
			if a.Resource != "" {
				s += " " + a.Resource
			}
			acts = append(acts, esc(s))
		}
		fmt.Fprintf(&b, "• Actions: %s\n", strings.Join(acts, ", "))
		fmt.Fprintf(&b, "• Approval: %s\n", esc(h.Engine.ApprovalRule(rb)))
		fmt.Fprintf(&b, "• Approvers: %s\n", approverList(h.Approvers.For(rb), len(rb.Approvers) > 0))
		fmt.Fprintf(&b, "• This hour: %d of %d used, %d left\n", used, limit, max(limit-used, 0))
	}
	return &Reply{Text: cut(b.String(), 38000)}, nil
}

func triggerText(rb *runbooks.Runbook) string {
	parts := []string{"`" + string(rb.Trigger.EventType) + "`"}
	var conds []string
	for _, c := range rb.Trigger.Conditions {
		switch {
		case c.Min != nil && c.Max != nil:
			conds = append(conds, fmt.Sprintf("%v ≤ %s ≤ %v", *c.Min, c.Key, *c.Max))
		case c.Min != nil:
			conds = append(conds, fmt.Sprintf("%s ≥ %v", c.Key, *c.Min))
		case c.Max != nil:
			conds = append(conds, fmt.Sprintf("%s ≤ %v", c.Key, *c.Max))
		case c.AnyOf != nil:
			conds = append(conds, fmt.Sprintf("%s in %v", c.Key, c.AnyOf))
		default:
			conds = append(conds, fmt.Sprintf("%s = %v", c.Key, c.Equals))
		}
	}
	if len(conds) > 0 {
		parts = append(parts, "when "+esc(strings.Join(conds, ", ")))
	}
	return strings.Join(parts, " ")
}

func approverList(ids []string, own bool) string {
	if len(ids) == 0 {
		return "nobody (set RECOVERBOT_SLACK_APPROVERS): approvals are refused"
	}
	var out []string
	for _, id := range ids {
		if strings.HasPrefix(id, "S") {
			out = append(out, "<!subteam^"+id+">")
		} else {
			out = append(out, "<@"+id+">")
		}
	}
	s := strings.Join(out, ", ")
	if own {
		s += " (this runbook's own list)"
	}
	return s
}

func (h *Handler) plan(ctx context.Context, user string, words []string) (*Reply, error) {
	if len(words) == 0 {
		return nil, usagef("`plan` needs a runbook name. Usage: %s. Runbooks: %s.", usageOf("plan"), h.runbookNames())
	}
	name := words[0]
	if h.Engine.Runbooks().Get(name) == nil {
		return nil, usagef("No runbook named `%s`. Runbooks: %s.", esc(name), h.runbookNames())
	}
	values, err := parseValues("plan", words[1:])
	if err != nil {
		return nil, err
	}
	a, err := h.Engine.PlanManual(ctx, name, values, Actor(user))
	if err != nil {
		return nil, err
	}
	why := ""
	if len(a.Reasons) > 0 {
		why = "\n" + bullets(a.Reasons)
	}
	switch a.Decision {
	case recovery.DecideApproval:
		return text("Plan `%s` (%s) is posted in this channel and waits for an approver.%s", a.PlanID, esc(name), why), nil
	case recovery.DecideDryRun:
		return text("Dry run: plan `%s` (%s) is posted as a would-do report; nothing runs.%s", a.PlanID, esc(name), why), nil
	case recovery.DecideSuppressed:
		return text("Not planned: plan `%s` was suppressed.%s", a.PlanID, why), nil
	case recovery.DecideDuplicate:
		return text("Not planned: a plan for the same target is open or cooling down (`%s`).%s", a.DuplicateOf, why), nil
	case recovery.DecideRefused:
		return text("Refused: the plan could not be made safely; nothing runs.%s\nGive the missing values as `key=value`: %s", why, usageOf("plan")), nil
	}
	return text("Plan `%s`: %s.%s", a.PlanID, a.Decision, why), nil
}

func (h *Handler) runbookNames() string {
	var names []string
	for _, rb := range h.Engine.Runbooks().All() {
		names = append(names, "`"+esc(rb.Name)+"`")
	}
	return strings.Join(names, ", ")
}

func (h *Handler) dryrun(ctx context.Context, user string, words []string) (*Reply, error) {
	if len(words) == 0 {
		return nil, usagef("`dryrun` needs a runbook name or a plan id. Usage: %s", usageOf("dryrun"))
	}
	name := words[0]
	values, err := parseValues("dryrun", words[1:])
	if err != nil {
		return nil, err
	}
	if h.Engine.Runbooks().Get(name) != nil {
		p, err := h.Engine.Preview(name, values, Actor(user))
		if err != nil {
			return nil, err
		}
		if p.Decision == recovery.DecideRefused {
			return text("Dry run of `%s`: the plan would be refused, nothing would run.\n%s\nGive the missing values as `key=value`: %s",
				esc(name), bullets(p.Reasons), usageOf("dryrun")), nil
		}
		now := h.now()
		x := &recovery.Execution{Plan: p, State: recovery.DryRun, CreatedAt: now, UpdatedAt: now}
		x.Reasons = append([]string{"decision if planned now: " + string(p.Decision)}, p.Reasons...)
		return h.preview(x, "Dry run of runbook "+name), nil
	}
	if !validID(name) {
		return nil, usagef("`%s` is neither a runbook nor a plan id. Usage: %s", esc(name), usageOf("dryrun"))
	}
	x, err := h.Engine.Store().Execution(ctx, name)
	if errors.Is(err, recovery.ErrNotFound) {
		return nil, usagef("No runbook or plan named `%s`. Runbooks: %s.", esc(name), h.runbookNames())
	}
	if err != nil {
		return nil, err
	}
	if len(values) > 0 {
		return nil, usagef("key=value pairs go with a runbook name, not with plan `%s`: it already has its values. Usage: %s", esc(name), usageOf("dryrun"))
	}
	return h.preview(&x, "Dry run of plan "+x.ID), nil
}

// preview renders a would-do report (no buttons: nothing can be run from it).
func (h *Handler) preview(x *recovery.Execution, title string) *Reply {
	_, blocks := Message(View{X: x, Describe: h.Engine.Describe(x.Actions), Paused: h.Engine.Paused()})
	blocks[0] = slack.NewHeaderBlock(plain(cut("🧪 "+title+": nothing was executed", MaxHeaderText)))
	return &Reply{Text: "🧪 " + title + ": nothing was executed", Blocks: blocks}
}

func (h *Handler) rollback(ctx context.Context, user string, words []string) (*Reply, error) {
	if len(words) != 1 || !validID(words[0]) {
		return nil, usagef("`rollback` needs exactly one execution id. Usage: %s", usageOf("rollback"))
	}
	id := words[0]
	x, err := h.Engine.Store().Execution(ctx, id)
	if err != nil {
		return nil, notFound(err, id)
	}
	if rep := h.authorize(ctx, &x, user, "rollback"); rep != nil {
		return rep, nil
	}
	if _, err := h.Engine.Rollback(ctx, id, Actor(user)); err != nil {
		h.refuse(ctx, id, user, "rollback refused: "+recovery.ErrorMessage(err))
		return nil, err
	}
	return text("↩️ Rolling back `%s` (%s): progress in its thread.", id, esc(x.Runbook)), nil
}

func notFound(err error, id string) error {
	if errors.Is(err, recovery.ErrNotFound) {
		return recovery.Errorf(recovery.CodeNotFound, "No execution `%s`.", id)
	}
	return err
}

func (h *Handler) status(ctx context.Context, words []string) (*Reply, error) {
	switch {
	case len(words) > 1 || len(words) == 1 && !validID(words[0]):
		return nil, usagef("`status` takes at most one execution id. Usage: %s", usageOf("status"))
	case len(words) == 1:
		x, err := h.Engine.Store().Execution(ctx, words[0])
		if err != nil {
			return nil, notFound(err, words[0])
		}
		return &Reply{Text: executionText(&x)}, nil
	}
	cfg := h.Engine.Config()
	var b strings.Builder
	paused := "no"
	if h.Engine.Paused() {
		paused = "*yes*: no new plan is made until `/recover resume`"
	}
	fmt.Fprintf(&b, "*recoverbot* · mode `%s` · paused: %s · approval timeout %s · auto threshold %.0f%%\n",
		cfg.Mode, paused, cfg.ApprovalTimeout, cfg.AutoThreshold*100)
	if why := h.Engine.Breaker(); why != "" {
		fmt.Fprintf(&b, "🚨 *Blast-radius breaker: OPEN* (%s): every plan needs a human's approval until an approver runs `/recover resume`\n", esc(why))
	} else {
		fmt.Fprintf(&b, "Blast-radius breaker: closed (trips on more than %d automatic executions within %s, or more than %d targets failing within %s)\n",
			cfg.BlastMaxAuto, cfg.BlastWindow, cfg.BlastMaxTargets, cfg.BlastTargetWindow)
	}
	if fs := h.Engine.Freezes(); len(fs) > 0 {
		b.WriteString(freezeLines(fs) + "\n")
	} else {
		b.WriteString("Freezes: none\n")
	}
	if cfg.Advisor != nil {
		b.WriteString("AI planning: on (`/recover ask`); every AI plan waits for approval\n")
	} else {
		b.WriteString("AI planning: off (set ANTHROPIC_API_KEY)\n")
	}
	st := h.Engine.Store()
	for _, g := range []struct {
		title  string
		states []recovery.State
	}{
		{"Awaiting approval", []recovery.State{recovery.PendingApproval}},
		{"Running", RunningStates},
	} {
		var xs []recovery.Execution
		for _, s := range g.states {
			got, err := st.Executions(ctx, recovery.ExecutionFilter{State: s, Limit: 20})
			if err != nil {
				return nil, err
			}
			xs = append(xs, got...)
		}
		fmt.Fprintf(&b, "*%s:* %d\n", g.title, len(xs))
		for _, x := range xs {
			b.WriteString("• " + lineOf(&x) + "\n")
		}
	}
	return &Reply{Text: strings.TrimRight(b.String(), "\n")}, nil
}

// RunningStates are what /recover status and the App Home list as running:
// approved and not finished, verifying included.
var RunningStates = []recovery.State{recovery.Approved, recovery.Executing, recovery.RollingBack, recovery.Verifying}

func lineOf(x *recovery.Execution) string {
	s := fmt.Sprintf("`%s` %s · *%s* · made %s", x.ID, esc(x.Runbook), x.State, SlackTime(x.CreatedAt))
	if x.State == recovery.PendingApproval && !x.Deadline.IsZero() {
		s += " · times out " + SlackTime(x.Deadline)
	}
	return s
}

func executionText(x *recovery.Execution) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*Plan `%s`* · %s · *%s*\n", x.ID, esc(x.Runbook), x.State)
	fmt.Fprintf(&b, "Event %s (%s), confidence %.0f%%: %s\n", x.Event.Type, x.Event.Severity, x.Event.Confidence*100, problemText(x.Event.Summary, 300))
	fmt.Fprintf(&b, "Made %s", SlackTime(x.CreatedAt))
	if x.RequestedBy != "" {
		fmt.Fprintf(&b, ", requested by %s", Who(x.RequestedBy))
	}
	if x.ApprovedBy != "" {
		fmt.Fprintf(&b, "; approved by %s", Who(x.ApprovedBy))
	}
	if x.State == recovery.PendingApproval && !x.Deadline.IsZero() {
		fmt.Fprintf(&b, "; times out %s", SlackTime(x.Deadline))
	}
	b.WriteString("\n")
	if x.AI != nil {
		b.WriteString(AIText(x.AI, 1<<20) + "\n")
	}
	if x.Explanation != "" {
		b.WriteString(explanationText(x.Explanation, 1500) + "\n")
	}
	if x.Repeats > 0 {
		fmt.Fprintf(&b, "Repeats: %s\n", SeenMore(x.Repeats))
	}
	for i := range x.Actions {
		a := x.Actions[i]
		target := ""
		if i < len(x.Targets) {
			target = x.Targets[i]
		}
		fmt.Fprintf(&b, "%d. %s `%s` %s\n", i+1, a.Type, esc(target), esc(recovery.FormatParams(a.Parameters)))
	}
	if len(x.Reasons) > 0 {
		b.WriteString("Guardrails:\n" + bullets(x.Reasons) + "\n")
	}
	if len(x.Steps) > 0 {
		b.WriteString("Steps:\n" + stepLines(x) + "\n")
	}
	if x.Error != "" {
		fmt.Fprintf(&b, "Error: %s\n", esc(x.Error))
	}
	if x.VerifyQuery != "" {
		fmt.Fprintf(&b, "Verify: %s", queryText(x))
		if x.LastVerify != "" {
			fmt.Fprintf(&b, ", last seen: %s", verifyValue(x.LastVerify))
		}
		b.WriteString("\n")
	}
	if s := falseText(x); s != "" {
		b.WriteString(s + "\n")
	}
	if x.CanRollBack() {
		fmt.Fprintf(&b, "Can be rolled back: `/recover rollback %s`\n", x.ID)
	}
	if x.CanMarkFalse() {
		fmt.Fprintf(&b, "Should it not have run? `/recover false %s` (approvers)\n", x.ID)
	}
	return cut(strings.TrimRight(b.String(), "\n"), 38000)
}

func (h *Handler) history(ctx context.Context, words []string) (*Reply, error) {
	n, err := parseCount(words)
	if err != nil {
		return nil, err
	}
	xs, err := h.Engine.Store().Executions(ctx, recovery.ExecutionFilter{Limit: n})
	if err != nil {
		return nil, err
	}
	if len(xs) == 0 {
		return text("No executions yet."), nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*The last %d execution%s, newest first:*\n", len(xs), plural(len(xs)))
	for _, x := range xs {
		b.WriteString("• " + lineOf(&x) + "\n")
	}
	return &Reply{Text: strings.TrimRight(b.String(), "\n")}, nil
}

func (h *Handler) pause(ctx context.Context, user string, on bool, words []string) (*Reply, error) {
	sub := map[bool]string{true: "pause", false: "resume"}[on]
	if err := noArgs(sub, words); err != nil {
		return nil, err
	}
	if rep := h.permitGlobal(ctx, user, sub); rep != nil {
		return rep, nil
	}
	breaker := h.Engine.Breaker()
	var err error
	switch {
	case on && h.Engine.Paused():
		return text("recoverbot is already paused."), nil
	case !on && !h.Engine.Paused() && breaker == "":
		return text("recoverbot is already running."), nil
	}
	if on {
		err = h.Engine.Pause(ctx, Actor(user))
	} else {
		// Resume is also the human decision that closes the blast-radius
		// breaker (the engine resets it).
		err = h.Engine.Resume(ctx, Actor(user))
	}
	if err != nil {
		return nil, err
	}
	switch {
	case on:
		return text("⏸️ Paused: no new plan is made until `/recover resume`. Plans already waiting can still be approved or rejected."), nil
	case breaker != "":
		return text("▶️ Resumed, and the blast-radius breaker is closed (it had tripped: %s). Plans may run unattended again under the usual guardrails; plans already waiting still need their approval.", esc(breaker)), nil
	}
	return text("▶️ Resumed: events are planned again."), nil
}

func (h *Handler) stats(ctx context.Context, words []string) (*Reply, error) {
	window, label := 24*time.Hour, "24h"
	switch len(words) {
	case 0:
	case 1:
		w := strings.ToLower(words[0])
		d, err := time.ParseDuration(w)
		if days, ok := strings.CutSuffix(w, "d"); ok {
			var n int
			if _, e := fmt.Sscanf(days, "%d", &n); e == nil && fmt.Sprint(n) == days {
				d, err = time.Duration(n)*24*time.Hour, nil
			}
		}
		if err != nil || d < time.Minute || d > 90*24*time.Hour {
			return nil, usagef("`%s` is not a window from 1m to 90d (like `24h` or `7d`). Usage: %s", esc(words[0]), usageOf("stats"))
		}
		window, label = d, w
	default:
		return nil, usagef("`stats` takes at most one window. Usage: %s", usageOf("stats"))
	}
	s, err := h.Engine.Stats(ctx, window)
	if err != nil {
		return nil, err
	}
	return text("```%s```", esc(strings.TrimRight(s.Text(label), "\n"))), nil
}

// Click handles a button on a plan message: the value must carry the bot's
// signature for that very action, the click must come from the incident
// channel, and Approve, Reject and Roll back need an approver. Every refusal
// is audited; nothing runs unless all checks pass.
func (h *Handler) Click(ctx context.Context, c Click) *Reply {
	switch c.ActionID {
	case ActionApprove, ActionReject, ActionDetails, ActionRollback, ActionMarkFalse, ActionKeep:
	default:
		h.log().Warn("ignored click on an unknown action", "action_id", c.ActionID, "block_id", c.BlockID)
		return nil
	}
	id, err := h.Signer.Verify(c.ActionID, c.Value)
	if err != nil {
		h.refuse(ctx, "", c.User, fmt.Sprintf("button %s with a value recoverbot did not sign: %q", c.ActionID, cut(c.Value, 120)))
		return text("This button's value is not one recoverbot made (altered or forged): nothing was done, and the attempt is recorded.")
	}
	if c.Channel != h.Channel && !c.Home {
		h.refuse(ctx, id, c.User, fmt.Sprintf("button %s clicked in channel %s, not the incident channel %s", c.ActionID, c.Channel, h.Channel))
		return text("recoverbot only takes clicks in <#%s>: nothing was done.", h.Channel)
	}
	x, err := h.Engine.Store().Execution(ctx, id)
	if err != nil {
		return h.errorReply(notFound(err, id), "click "+c.ActionID)
	}
	actor := Actor(c.User)
	switch c.ActionID {
	case ActionDetails:
		audit, err := h.Engine.Store().Audit(ctx, id)
		if err != nil {
			return h.errorReply(err, "details")
		}
		if _, err := h.Slack.OpenViewContext(ctx, c.TriggerID, DetailsModal(&x, h.Engine.Describe(x.Actions), FactsFrom(audit))); err != nil {
			h.log().Warn("views.open failed", "plan", id, "err", Redact(err.Error()))
			return text("Could not open the details (%s): `/recover status %s` shows the plan.", esc(slackCode(err)), id)
		}
		return nil
	case ActionApprove:
		if rep := h.authorize(ctx, &x, c.User, "approve"); rep != nil {
			return rep
		}
		if _, err := h.Engine.Approve(ctx, id, actor); err != nil {
			return h.clickRefused(ctx, &x, c.User, "approve", err)
		}
	case ActionReject:
		if rep := h.authorize(ctx, &x, c.User, "reject"); rep != nil {
			return rep
		}
		if _, err := h.Engine.Reject(ctx, id, actor); err != nil {
			return h.clickRefused(ctx, &x, c.User, "reject", err)
		}
	case ActionRollback:
		if rep := h.authorize(ctx, &x, c.User, "rollback"); rep != nil {
			return rep
		}
		if _, err := h.Engine.Rollback(ctx, id, actor); err != nil {
			return h.clickRefused(ctx, &x, c.User, "rollback", err)
		}
	case ActionKeep:
		if rep := h.authorize(ctx, &x, c.User, "keep as is"); rep != nil {
			return rep
		}
		if _, err := h.Engine.DeclineRollback(ctx, id, actor); err != nil {
			return h.clickRefused(ctx, &x, c.User, "keep as is", err)
		}
	case ActionMarkFalse:
		if rep := h.authorize(ctx, &x, c.User, verbMarkFalse); rep != nil {
			return rep
		}
		if rep := h.markFalse(ctx, &x, c.User); rep != nil {
			return rep
		}
	}
	// Success says nothing privately: the plan message itself changes
	// (one writer, the notifier, so it never shows a stale state).
	return nil
}

// authorize checks that user may approve, reject or roll back x; it returns
// the refusal to show, or nil. Approving a plan whose runbook is no longer
// loaded is refused (its approver list is unknown); rejecting or rolling it
// back falls back to the global list, since both only stop or undo.
func (h *Handler) authorize(ctx context.Context, x *recovery.Execution, user, verb string) *Reply {
	// The rule is Permit's, shared with the admin API; the words are Slack's.
	err := h.Approvers.Permit(ctx, SlackUser(user), verb, x, h.Engine.Runbooks().Get(x.Runbook))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrRunbookGone):
		h.refuse(ctx, x.ID, user, fmt.Sprintf("%s: runbook %s is no longer loaded, so its approvers are unknown", verb, x.Runbook))
		return text("Runbook %s is no longer loaded, so nobody can approve this plan: nothing was done. Make a new plan with `/recover plan`.", esc(x.Runbook))
	case errors.Is(err, ErrNotApprover):
		h.refuse(ctx, x.ID, user, fmt.Sprintf("%s: %s is not an approver for %s", verb, user, x.Runbook))
		return text("You are not an approver for %s.", esc(x.Runbook))
	}
	cause := permitCause(err)
	h.log().Warn("approver check failed", "plan", x.ID, "user", user, "err", Redact(cause.Error()))
	h.refuse(ctx, x.ID, user, verb+": approvers could not be checked: "+Redact(cause.Error()))
	return text("Could not check whether you are an approver for %s (Slack did not answer): nothing was done. Try again.", esc(x.Runbook))
}

// clickRefused explains why the engine refused a click (already decided,
// deadline passed, four-eyes…) and audits it.
func (h *Handler) clickRefused(ctx context.Context, x *recovery.Execution, user, verb string, err error) *Reply {
	var m *recovery.MoveError
	msg := ""
	switch {
	case recovery.Undecided(err):
		return h.undecided("slack "+verb, err) // nothing to audit: the store decides the redelivery
	case errors.As(err, &m):
		now, _ := h.Engine.Store().Execution(ctx, x.ID)
		msg = movedText(&now, verb)
	case recovery.ErrorCode(err) == "":
		h.log().Error("slack "+verb, "plan", x.ID, "err", Redact(err.Error()))
		msg = "Internal error: nothing was done (see the bot's log)."
	default:
		msg = esc(recovery.ErrorMessage(err)) + ": nothing was done."
	}
	h.refuse(ctx, x.ID, user, verb+" refused: "+recovery.ErrorMessage(err))
	return &Reply{Text: msg}
}

// movedText says what happened to a plan someone clicked too late.
func movedText(x *recovery.Execution, verb string) string {
	switch {
	case x.WasApproved() && verb != "approve" && verb != "reject":
		return fmt.Sprintf("Plan `%s` is %s now: nothing more was done.", x.ID, x.State)
	case x.WasApproved():
		return fmt.Sprintf("Plan `%s` was already approved by %s: it runs once, nothing more was done.", x.ID, Who(x.ApprovedBy))
	}
	switch x.State {
	case recovery.Rejected:
		return fmt.Sprintf("Plan `%s` was rejected: it will not run, nothing was done.", x.ID)
	case recovery.Expired:
		return fmt.Sprintf("Plan `%s` timed out before approval: not executed, nothing was done.", x.ID)
	case recovery.Cancelled:
		return fmt.Sprintf("Plan `%s` was cancelled (the alert resolved): nothing was done.", x.ID)
	}
	return fmt.Sprintf("Plan `%s` is %s now: nothing was done.", x.ID, x.State)
}

// refuse audits a refused request. A failure to audit is logged: the
// refusal itself stands either way.
func (h *Handler) refuse(ctx context.Context, id, user, reason string) {
	if err := h.Engine.RecordRefusal(ctx, id, Actor(user), reason); err != nil {
		h.log().Error("audit refusal", "plan", id, "user", user, "reason", reason, "err", err)
	}
}

// errorReply is the one place a command error becomes what the user reads:
// a usage line, or the error's sentence; the chain goes to the log.
func (h *Handler) errorReply(err error, what string) *Reply {
	var u *UsageError
	if errors.As(err, &u) {
		return &Reply{Text: u.Msg}
	}
	if recovery.Undecided(err) {
		return h.undecided(what, err)
	}
	switch recovery.ErrorCode(err) {
	case "":
		h.log().Error(what, "err", Redact(err.Error()))
		return text("Internal error: nothing was done (see the bot's log).")
	case recovery.CodeUnavailable:
		h.log().Warn(what, "err", Redact(err.Error()))
		return text("%s. Try again in a moment.", esc(strings.TrimSuffix(recovery.ErrorMessage(err), ".")))
	}
	return &Reply{Text: esc(recovery.ErrorMessage(err))}
}

// slackCode is the Slack error code of a Web API error, for people.
func slackCode(err error) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return se.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "Slack did not answer"
}

// Redact removes Slack tokens and single-use URLs (response_url hooks,
// socket tickets) from text bound for logs.
func Redact(s string) string {
	for _, p := range []string{"xoxb-", "xoxp-", "xoxa-", "xapp-", "/hooks/", "ticket="} {
		for i := 0; ; {
			j := strings.Index(s[i:], p)
			if j < 0 {
				break
			}
			j += i + len(p)
			k := j
			for k < len(s) && !strings.ContainsRune(" \t\n\"'&)", rune(s[k])) {
				k++
			}
			s = s[:j] + "REDACTED" + s[k:]
			i = j + len("REDACTED")
		}
	}
	return s
}
