package commands

import (
	"context"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/recoverbot/recoverbot/recovery"
)

// verbMarkFalse names the Mark as false action click and /recover false in
// refusals and the audit trail.
const verbMarkFalse = "mark as false"

// ask runs /recover ask <free text>: the engine asks the AI (bounded by its AI
// timeout; the command was acked before this runs: acksFirst) and validates the
// proposal strictly. The plan itself is posted by the notifier like any
// plan; the asker is told privately what came of the question.
func (h *Handler) ask(ctx context.Context, user, question string) (*Reply, error) {
	if question == "" {
		return nil, usagef("`ask` needs a question, like `/recover ask checkout is slow since the deploy`. Usage: %s", usageOf("ask"))
	}
	if h.Engine.Config().Advisor == nil {
		return text("AI planning is off (set ANTHROPIC_API_KEY): nothing was asked. It is turned on in the bot's environment; meanwhile %s makes a plan by hand.", usageOf("plan")), nil
	}
	a, err := h.Engine.Ask(ctx, question, Actor(user))
	if err != nil {
		if recovery.ErrorCode(err) == "" {
			return nil, err // internal: errorReply logs the chain
		}
		// Refused proposals are audited by the engine; an AI that failed or
		// timed out is only logged there. Either way nothing was planned.
		h.log().Info("/recover ask: no plan", "user", user, "err", Redact(err.Error()))
		return text("🤖 %s. Nothing was planned.", esc(sentence(recovery.ErrorMessage(err)))), nil
	}
	why := ""
	if len(a.Reasons) > 0 {
		why = "\n" + bullets(a.Reasons)
	}
	rb := ""
	if x, err := h.Engine.Store().Execution(ctx, a.PlanID); err == nil {
		rb = " (" + esc(x.Runbook) + ")"
	}
	switch a.Decision {
	case recovery.DecideApproval:
		return text("🤖 The AI proposed plan `%s`%s: it is posted in this channel and waits for an approver.%s", a.PlanID, rb, why), nil
	case recovery.DecideDryRun:
		return text("🤖 The AI proposed plan `%s`%s, posted as a would-do report; nothing runs.%s", a.PlanID, rb, why), nil
	case recovery.DecideSuppressed:
		return text("🤖 The AI proposed plan `%s`%s, but it was suppressed.%s", a.PlanID, rb, why), nil
	case recovery.DecideDuplicate:
		return text("🤖 The AI proposed a plan for a target that already has one open or cooling down (`%s`): nothing new was planned.%s", a.DuplicateOf, why), nil
	case recovery.DecideRefused:
		return text("🤖 The AI's plan could not be made safely: nothing was planned.%s", why), nil
	}
	return text("🤖 Plan `%s`: %s.%s", a.PlanID, a.Decision, why), nil
}

// falseAction runs /recover false <execution-id>.
func (h *Handler) falseAction(ctx context.Context, user string, words []string) (*Reply, error) {
	if len(words) != 1 || !validID(words[0]) {
		return nil, usagef("`false` needs exactly one execution id. Usage: %s", usageOf("false"))
	}
	x, err := h.Engine.Store().Execution(ctx, words[0])
	if err != nil {
		return nil, notFound(err, words[0])
	}
	if rep := h.authorize(ctx, &x, user, verbMarkFalse); rep != nil {
		return rep, nil
	}
	if rep := h.markFalse(ctx, &x, user); rep != nil {
		return rep, nil
	}
	return text("🏷️ Marked `%s` (%s) as a false action: it counts in the false-action rate (`/recover stats`), and its message says so.", x.ID, esc(x.Runbook)), nil
}

// markFalse asks the engine to mark x as a false action for an authorized
// user. It returns what to tell the user when nothing was marked, nil when
// it was (the plan message then says so: the notifier re-renders it).
func (h *Handler) markFalse(ctx context.Context, x *recovery.Execution, user string) *Reply {
	if x.FalseAction {
		by := Who(x.FalseBy)
		if x.FalseBy == recovery.FalseByVerification {
			by = "recoverbot, after its verification failed"
		}
		return text("`%s` is already counted as a false action (marked by %s): nothing more was done.", x.ID, by)
	}
	if _, err := h.Engine.MarkFalse(ctx, x.ID, Actor(user)); err != nil {
		return h.clickRefused(ctx, x, user, verbMarkFalse, err)
	}
	return nil
}

// afterFirstWord is the raw text after the sub-command: the free text of
// /recover ask, with Slack's escapes of &, < and > undone.
func afterFirstWord(s string) string {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return ""
	}
	s = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s[i:])
	return strings.TrimSpace(s)
}

// sentence starts s with a capital letter and drops a final period (the
// caller adds its own punctuation).
func sentence(s string) string {
	s = strings.TrimSuffix(strings.TrimSpace(s), ".")
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}
