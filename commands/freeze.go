package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

// /recover freeze DURATION REASON [--runbook R] [--target T],
// /recover unfreeze ID|--all and /recover freezes. Freezing and lifting are
// approvers' decisions (the global list, like pause); the engine persists,
// audits and announces them.

// parseFreeze reads freeze's words: a duration, then the reason, with
// --runbook and --target anywhere (also as --flag=value).
func parseFreeze(words []string) (recovery.FreezeRequest, error) {
	var r recovery.FreezeRequest
	var rest []string
	for i := 0; i < len(words); i++ {
		w := words[i]
		name, val, hasVal := strings.Cut(w, "=")
		var dst *string
		switch name {
		case "--runbook":
			dst = &r.Runbook
		case "--target":
			dst = &r.Target
		default:
			if strings.HasPrefix(w, "--") {
				return r, usagef("`%s` is not an option of `freeze`: use `--runbook` or `--target`. Usage: %s", esc(w), usageOf("freeze"))
			}
			rest = append(rest, w)
			continue
		}
		if !hasVal {
			if i+1 == len(words) {
				return r, usagef("`%s` needs a value. Usage: %s", esc(w), usageOf("freeze"))
			}
			i++
			val = words[i]
		}
		if *dst != "" {
			return r, usagef("`%s` is given twice. Usage: %s", name, usageOf("freeze"))
		}
		*dst = val
	}
	if len(rest) < 2 {
		return r, usagef("`freeze` needs a duration and a reason. Usage: %s", usageOf("freeze"))
	}
	d, err := time.ParseDuration(rest[0])
	if err != nil {
		return r, usagef("`%s` is not a duration (like `90m` or `2h`). Usage: %s", esc(rest[0]), usageOf("freeze"))
	}
	r.Duration, r.Reason = d, strings.Join(rest[1:], " ")
	return r, nil
}

func (h *Handler) freeze(ctx context.Context, user string, words []string) (*Reply, error) {
	r, err := parseFreeze(words)
	if err != nil {
		return nil, err
	}
	if rep := h.permitGlobal(ctx, user, "freeze"); rep != nil {
		return rep, nil
	}
	r.Actor = Actor(user)
	f, err := h.Engine.Freeze(ctx, r)
	if err != nil {
		return nil, err
	}
	return text("🧊 Frozen: %s until %s (`%s`). Plans in scope wait for approval; `/recover unfreeze %s` ends it early.",
		esc(f.Scope()), SlackTime(f.End), f.ID, f.ID), nil
}

func (h *Handler) unfreeze(ctx context.Context, user string, words []string) (*Reply, error) {
	if len(words) != 1 || words[0] != "--all" && !validFreezeID(words[0]) {
		return nil, usagef("`unfreeze` takes one freeze id (from `/recover freezes`) or `--all`. Usage: %s", usageOf("unfreeze"))
	}
	if rep := h.permitGlobal(ctx, user, "unfreeze"); rep != nil {
		return rep, nil
	}
	all := words[0] == "--all"
	id := words[0]
	if all {
		id = ""
	}
	ended, err := h.Engine.Unfreeze(ctx, id, all, Actor(user))
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(ended))
	for i, f := range ended {
		ids[i] = "`" + f.ID + "`"
	}
	return text("🔥 Lifted %s. Plans already waiting still need their approval.", strings.Join(ids, ", ")), nil
}

func (h *Handler) freezes(words []string) (*Reply, error) {
	if err := noArgs("freezes", words); err != nil {
		return nil, err
	}
	fs := h.Engine.Freezes()
	if len(fs) == 0 {
		return text("No freeze holds: plans run under the usual guardrails."), nil
	}
	return &Reply{Text: freezeLines(fs)}, nil
}

// freezeLines lists freezes for /recover freezes and /recover status.
func freezeLines(fs []recovery.Freeze) string {
	var b strings.Builder
	fmt.Fprintf(&b, "🧊 *%d freeze%s* (plans in scope wait for approval):\n", len(fs), plural(len(fs)))
	for _, f := range fs {
		by := "by " + Who(f.By)
		if f.Window != "" {
			by = "recurring window from the config file"
		}
		fmt.Fprintf(&b, "• `%s` %s until %s — %s (%s)\n", f.ID, esc(f.Scope()), SlackTime(f.End), esc(f.Reason), by)
	}
	return strings.TrimRight(b.String(), "\n")
}

// validFreezeID is what a freeze id may look like: fz_… from the engine, or
// window:NAME for a recurring window (which the engine refuses to lift,
// saying why).
func validFreezeID(s string) bool {
	if name, ok := strings.CutPrefix(s, "window:"); ok {
		return name != "" && len(name) <= 64 && printable(name)
	}
	return validID(s)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// permitGlobal asks the approver policy (Approvers.Permit, the one approver
// rule) whether user may take verb on the whole bot: pause, resume, freeze,
// unfreeze. A refusal is audited and answered; nil means go on.
func (h *Handler) permitGlobal(ctx context.Context, user, verb string) *Reply {
	err := h.Approvers.Permit(ctx, SlackUser(user), verb, nil, nil) // the global list
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotApprover):
		h.refuse(ctx, "", user, verb+": not an approver")
		return text("You are not an approver: only approvers can %s recoverbot.", verb)
	}
	h.refuse(ctx, "", user, verb+": approvers could not be checked: "+permitCause(err).Error())
	return text("Could not check whether you are an approver (Slack did not answer): nothing was done. Try again.")
}
