package commands

import (
	"fmt"
	"strconv"
	"strings"
)

// UsageError is a command the bot could not understand; its message names
// what was wrong and how to write it.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Usage lines, one per sub-command, in help order.
var usage = []struct{ cmd, what string }{
	{"help", "this list"},
	{"runbooks", "each runbook: trigger, actions, approval rule, executions left this hour"},
	{"plan <runbook> [key=value …]", "make a plan from chat with those context values; it always waits for approval"},
	{"dryrun <runbook|plan-id> [key=value …]", "the full would-do report; changes nothing"},
	{"rollback <execution-id>", "undo a finished execution (approvers only)"},
	{"status [id]", "the bot's state, or one execution"},
	{"history [n]", "the last n executions (default 10, at most 50)"},
	{"pause", "stop making new plans until resumed (approvers only)"},
	{"resume", "make plans again (approvers only)"},
	{"freeze <duration> <reason> [--runbook R] [--target T]", "until the duration (like 90m) ends, plans in scope never run by themselves: they wait for approval (approvers only)"},
	{"unfreeze <freeze-id>|--all", "end a freeze now (approvers only)"},
	{"freezes", "the freezes holding now, ad-hoc and recurring"},
	{"stats [window]", "auto-heal rate, MTTR and false-action rate beside their targets (default window 24h, or e.g. 7d)"},
	{"ask <free text>", "ask the AI for a plan (needs ANTHROPIC_API_KEY on the bot); it always waits for approval"},
	{"false <execution-id>", "mark an execution as a false action: it should not have run (approvers only)"},
}

func usageOf(sub string) string {
	for _, u := range usage {
		if u.cmd == sub || strings.HasPrefix(u.cmd, sub+" ") {
			return "`/recover " + esc(u.cmd) + "`"
		}
	}
	return "`/recover help`"
}

// split turns the text of a slash command into words. Slack sends &, < and >
// escaped; they are unescaped so values reach the engine as typed (the
// engine's template checks refuse unsafe ones).
func split(text string) []string {
	text = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(text)
	// Phones and Slack's editor turn quotes curly; nobody means them.
	text = strings.NewReplacer("“", "", "”", "", "‘", "", "’", "").Replace(text)
	return strings.Fields(text)
}

// parseValues reads key=value words into context values. Numbers stay
// strings: templates render them as text and conditions are not applied to
// a plan asked for by name.
func parseValues(sub string, words []string) (map[string]any, error) {
	if len(words) == 0 {
		return nil, nil
	}
	out := make(map[string]any, len(words))
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		switch {
		case !ok:
			return nil, usagef("`%s` is not a key=value pair. Usage: %s", esc(w), usageOf(sub))
		case !validKey(k):
			return nil, usagef("`%s`: a key is letters, digits, `_`, `-` or `.` (1 to 64 of them). Usage: %s", esc(w), usageOf(sub))
		case v == "":
			return nil, usagef("`%s` has no value. Usage: %s", esc(w), usageOf(sub))
		}
		if _, dup := out[k]; dup {
			return nil, usagef("`%s` is given twice. Usage: %s", esc(k), usageOf(sub))
		}
		out[k] = v
	}
	return out, nil
}

func validKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// parseCount reads history's optional n.
func parseCount(words []string) (int, error) {
	switch len(words) {
	case 0:
		return 10, nil
	case 1:
		n, err := strconv.Atoi(words[0])
		if err != nil || n < 1 || n > 50 {
			return 0, usagef("`%s` is not a number from 1 to 50. Usage: %s", esc(words[0]), usageOf("history"))
		}
		return n, nil
	}
	return 0, usagef("`history` takes at most one number. Usage: %s", usageOf("history"))
}

// validID is what an execution id may look like: the engine's ids are 26
// base32 characters; anything printable and short is looked up, the rest is
// a usage error rather than a store query.
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
