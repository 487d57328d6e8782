package recovery

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// planText is the plain-text announcement of a new plan (the log notifier prints
// it; the Slack notifier renders blocks from the execution instead).
func (e *Engine) planText(x *Execution) string {
	var b strings.Builder
	switch x.State {
	case PendingApproval:
		fmt.Fprintf(&b, "🤖 Approval required: plan %s", x.ID)
	case DryRun:
		fmt.Fprintf(&b, "🧪 Dry run: plan %s", x.ID)
	case Suppressed:
		fmt.Fprintf(&b, "🚫 Suppressed: plan %s", x.ID)
	default:
		fmt.Fprintf(&b, "⚙️ Auto-executing: plan %s", x.ID)
	}
	fmt.Fprintf(&b, " · runbook %s · event %s · confidence %.0f%%", x.Runbook, x.Event.Type, x.Event.Confidence*100)
	if x.Event.Summary != "" {
		fmt.Fprintf(&b, "\nProblem: %s", x.Event.Summary)
	}
	if x.AI != nil {
		fmt.Fprintf(&b, "\n%s", aiNote(x.AI))
	}
	for _, r := range x.Reasons {
		fmt.Fprintf(&b, "\nWhy: %s", r)
	}
	verb := "Planned"
	if x.State == DryRun {
		verb = "Would do"
	}
	for i, line := range e.Describe(x.Actions) {
		fmt.Fprintf(&b, "\n%s %d: %s", verb, i+1, line)
	}
	if len(x.Rollback) > 0 {
		b.WriteString("\nRollback plan: available")
	} else {
		b.WriteString("\nRollback plan: none")
	}
	if !x.Deadline.IsZero() {
		fmt.Fprintf(&b, "\nDeadline: %s", x.Deadline.UTC().Format("2006-01-02 15:04:05 MST"))
	}
	return b.String()
}

// Describe says, per action, what its driver would do. It calls nothing.
func (e *Engine) Describe(actions []Action) []string {
	out := make([]string, len(actions))
	for i, a := range actions {
		d, err := e.drivers.For(a)
		if err != nil {
			out[i] = fmt.Sprintf("%s %s (%v)", a.Type, FormatParams(a.Parameters), err)
			continue
		}
		out[i] = d.Describe(a)
	}
	return out
}

// FormatParams renders parameters as sorted key=value pairs.
func FormatParams(p map[string]any) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v, _ := json.Marshal(p[k])
		parts[i] = k + "=" + string(v)
	}
	return strings.Join(parts, " ")
}
