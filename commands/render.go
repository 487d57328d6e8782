package commands

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/recoverbot/recoverbot/recovery"
)

// Block Kit limits. Slack documents 50 blocks per message and 3,000
// characters per section text, and refuses blocks whose JSON exceeds about
// 12,000 characters with msg_blocks_too_long even below the documented
// limits; slack-go sends json.Marshal output, which escapes <, > and & as
// six-character \u sequences, so sizes are measured on exactly that encoding.
const (
	MaxBlocks       = 50
	MaxViewBlocks   = 100
	MaxSectionText  = 3000
	MaxHeaderText   = 150
	MaxMessageBytes = 11000 // budget under the ~12,000 Slack enforces, for headroom
	maxSummary      = 1200  // the problem summary in a message; Details shows it all
	maxExplanation  = 700   // of the engine's 1,500; Details shows it all
	// Byte budgets (JSON as sent) for the texts of a message that people, the
	// AI or a driver wrote: <, > and & cost up to ten bytes each once
	// escaped for mrkdwn and JSON, so a character count alone cannot keep
	// the message under MaxMessageBytes. Head and tail stay under about
	// 10,500 bytes whatever they hold, leaving room for one action and the
	// pointer to View Details.
	maxProblemBytes     = 2500
	maxExplanationBytes = 1200
	maxRationaleBytes   = 700
	maxAIParamsBytes    = 900 // the AI plan's parameters and their sources
	maxOutsideBytes     = 600 // what of the runbook's trigger an AI plan is outside of
	maxReasonsBytes     = 1500
	maxStatusBytes      = 1500
)

// View is what a plan message is rendered from: the execution as stored now,
// the drivers' descriptions of its actions (Engine.Describe), who did what
// (from the audit trail), whether the bot is paused, and why the blast-radius
// breaker is open ("" when closed).
type View struct {
	X        *recovery.Execution
	Describe []string
	Facts    Facts
	Paused   bool
	Breaker  string
	// Freezes are the freezes holding now; those covering the plan are
	// shown while it waits for approval.
	Freezes []recovery.Freeze
	// Signer signs button values; nil renders no buttons (ephemeral
	// reports such as /recover dryrun).
	Signer *Signer
}

// Facts are the moments of an execution's life a message names.
type Facts struct {
	ApprovedAt time.Time
	// Last is the latest state change: who moved it where, when and why.
	LastBy     string
	LastAt     time.Time
	LastTo     recovery.State
	LastReason string
	// RollbackBy is who asked for the latest rollback ("" when none was asked).
	RollbackBy string
}

// FactsFrom reads Facts from an execution's audit trail (oldest first).
func FactsFrom(recs []recovery.AuditRecord) Facts {
	var f Facts
	for _, r := range recs {
		if r.To == "" || r.From == r.To {
			continue // refusals, steps, driver reports
		}
		if r.To == recovery.Approved {
			f.ApprovedAt = r.At
		}
		if r.To == recovery.RollingBack {
			f.RollbackBy = r.Actor
		}
		f.LastBy, f.LastAt, f.LastTo, f.LastReason = r.Actor, r.At, r.To, r.Reason
	}
	return f
}

// Message renders the root message of an execution in any state: the
// approval request (buttons, deadline), then, after the fact, who approved
// when, the final status and, when something can be undone, Roll back. The
// result always fits Block Kit's limits: a long plan is cut with a pointer
// to View Details. text is the notification fallback.
func Message(v View) (text string, blocks []slack.Block) {
	x := v.X
	head := []slack.Block{
		slack.NewHeaderBlock(plain(cut(headline(x), MaxHeaderText))),
		section(infoText(x)),
		section(cutEncoded("*Problem:*\n"+problemText(x.Event.Summary, maxSummary), maxProblemBytes)),
	}
	if x.Explanation != "" {
		head = append(head, section(cutEncoded(explanationText(x.Explanation, maxExplanation), maxExplanationBytes)))
	}
	if x.AI != nil {
		head = append(head, slack.NewContextBlock("", mrkdwn(AIText(x.AI, maxRationaleBytes))))
		if t := AIFacts(x.AI, maxOutsideBytes, maxAIParamsBytes); t != "" {
			head = append(head, section(t))
		}
	}
	var tail []slack.Block
	tail = append(tail, section(rollbackText(x)))
	if len(x.Reasons) > 0 {
		tail = append(tail, section(cutEncoded(reasonsHeading(x)+"\n"+bullets(x.Reasons), maxReasonsBytes)))
	}
	if v.Paused {
		tail = append(tail, slack.NewContextBlock("", mrkdwn("⏸️ recoverbot is paused: no new plan is made until someone runs `/recover resume`.")))
	}
	if v.Breaker != "" && x.State == recovery.PendingApproval {
		tail = append(tail, slack.NewContextBlock("", mrkdwn(BreakerBanner(v.Breaker))))
	}
	if x.State == recovery.PendingApproval {
		if b := FreezeBanner(x, v.Freezes); b != "" {
			tail = append(tail, slack.NewContextBlock("", mrkdwn(b)))
		}
	}
	if s := statusText(x, v.Facts); s != "" {
		tail = append(tail, section(cutEncoded("*Status:* "+s, maxStatusBytes)))
	}
	if v.Signer != nil {
		if b := buttons(x, v.Signer); b != nil {
			tail = append(tail, b)
		}
	}
	tail = append(tail, slack.NewContextBlock("", mrkdwn(footer(x))))

	actions := actionSections(x, v.Describe, "*"+actionsHeading(x)+"*")
	blocks = fit(head, actions, tail, MaxBlocks, MaxMessageBytes,
		func(n int) slack.Block {
			return section(fmt.Sprintf("_…and %d more action(s) not shown here: see *View Details* or `/recover status %s`._", n, x.ID))
		})
	return fallback(x), blocks
}

// fit returns head + as many of middle as fit + tail, inside maxBlocks and
// maxBytes (json.Marshal size), with more(n) standing for the n left out.
func fit(head, middle, tail []slack.Block, maxBlocks, maxBytes int, more func(n int) slack.Block) []slack.Block {
	size := 2 // [ ]
	for _, b := range head {
		size += blockSize(b) + 1
	}
	for _, b := range tail {
		size += blockSize(b) + 1
	}
	reserve := blockSize(more(len(middle))) + 1
	room := maxBlocks - len(head) - len(tail)
	var kept []slack.Block
	for i, b := range middle {
		last := i == len(middle)-1
		need := blockSize(b) + 1
		// Keep room for the "more" marker unless this is the last one.
		limitBlocks, limitBytes := room-1, maxBytes-reserve
		if last {
			limitBlocks, limitBytes = room, maxBytes
		}
		if len(kept)+1 > limitBlocks || size+need > limitBytes {
			kept = append(kept, more(len(middle)-i))
			break
		}
		kept = append(kept, b)
		size += need
	}
	out := make([]slack.Block, 0, len(head)+len(kept)+len(tail))
	out = append(out, head...)
	out = append(out, kept...)
	return append(out, tail...)
}

func blockSize(b slack.Block) int {
	j, _ := json.Marshal(b)
	return len(j)
}

// BlocksSize is the size Slack measures: the JSON slack-go sends.
func BlocksSize(blocks []slack.Block) int {
	j, _ := json.Marshal(blocks)
	return len(j)
}

func headline(x *recovery.Execution) string {
	auto := x.Decision == recovery.DecideAuto
	switch x.State {
	case recovery.PendingApproval:
		return "🤖 Auto-Recovery Approval Required"
	case recovery.Approved, recovery.Executing:
		if auto {
			return "⚙️ Auto-Recovery Executing (no approval needed)"
		}
		return "⚙️ Auto-Recovery Executing"
	case recovery.Succeeded:
		return "✅ Auto-Recovery Succeeded"
	case recovery.Verified:
		return "✅ Auto-Recovery Succeeded and Verified"
	case recovery.Verifying:
		return "🔎 Auto-Recovery Verifying"
	case recovery.VerifyFailed:
		return "⚠️ Auto-Recovery Verification Failed"
	case recovery.Failed:
		return "❌ Auto-Recovery Failed"
	case recovery.RollingBack:
		return "↩️ Auto-Recovery Rolling Back"
	case recovery.RolledBack:
		return "↩️ Auto-Recovery Rolled Back"
	case recovery.RollbackFailed:
		return "🔥 Rollback Failed: a human must look"
	case recovery.Rejected:
		return "❌ Auto-Recovery Rejected"
	case recovery.Expired:
		return "⏰ Approval timed out — not executed"
	case recovery.Cancelled:
		return "Cancelled: the alert resolved"
	case recovery.Suppressed:
		return "🚫 Auto-Recovery Suppressed"
	case recovery.DryRun:
		return "🧪 Auto-Recovery Dry Run"
	case recovery.Interrupted:
		return "⚠️ Auto-Recovery Interrupted"
	}
	return "🤖 Auto-Recovery " + string(x.State)
}

func infoText(x *recovery.Execution) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*Event:* %s (%s)\n", esc(string(x.Event.Type)), esc(string(x.Event.Severity)))
	fmt.Fprintf(&b, "*Runbook:* %s\n", esc(x.Runbook))
	switch _, fromEvent := x.Event.Context["source_event"]; {
	case x.AI != nil && fromEvent:
		fmt.Fprintf(&b, "*Confidence:* %.0f%% (event) · AI %.0f%%\n", x.Event.Confidence*100, x.AI.Confidence*100)
	case x.AI != nil:
		fmt.Fprintf(&b, "*Confidence:* AI %.0f%%\n", x.AI.Confidence*100)
	default:
		fmt.Fprintf(&b, "*Confidence:* %.0f%%\n", x.Event.Confidence*100)
	}
	if x.EstimatedRecoveryTime > 0 {
		fmt.Fprintf(&b, "*Est. Recovery Time:* %d minute%s\n", x.EstimatedRecoveryTime, plural(x.EstimatedRecoveryTime))
	} else {
		b.WriteString("*Est. Recovery Time:* not given\n")
	}
	if x.RequestedBy != "" {
		fmt.Fprintf(&b, "*Requested by:* %s\n", Who(x.RequestedBy))
	}
	if x.Repeats > 0 {
		fmt.Fprintf(&b, "*Repeats:* %s (folded into this plan)\n", SeenMore(x.Repeats))
	}
	fmt.Fprintf(&b, "*Plan:* `%s`", esc(x.ID))
	return cut(b.String(), MaxSectionText)
}

// SeenMore says how many duplicate events folded into a plan: "seen 9,999
// more times".
func SeenMore(n int) string {
	if n == 1 {
		return "seen 1 more time"
	}
	return "seen " + thousands(n) + " more times"
}

// thousands writes n with comma separators (9999 → "9,999").
func thousands(n int) string {
	if n < 0 {
		return "-" + thousands(-n)
	}
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// AIText is the line an AI-proposed plan carries: "proposed by AI ·
// confidence 72 % · rationale: …" (the rationale cut to maxBytes as sent),
// and the model that proposed it.
func AIText(a *recovery.AIInfo, maxBytes int) string {
	s := fmt.Sprintf("🤖 proposed by AI · confidence %.0f %% · rationale: %s", a.Confidence*100, cutEncoded(esc(strings.TrimSpace(a.Rationale)), maxBytes))
	if a.Model != "" {
		s += " _(model " + esc(cut(a.Model, 80)) + ")_"
	}
	return s
}

// AIFacts is what an approver must weigh in an AI plan besides its
// rationale: what of the runbook's trigger the event is outside of, and
// each parameter with whether the event or the AI chose it ("" when the
// plan has neither). Each part is cut to its byte budget as sent.
func AIFacts(a *recovery.AIInfo, outsideBytes, paramsBytes int) string {
	var parts []string
	if len(a.OutsideTrigger) > 0 {
		parts = append(parts, cutEncoded("⚠️ *Outside the runbook's trigger:* "+esc(strings.Join(a.OutsideTrigger, "; ")), outsideBytes))
	}
	if len(a.Params) > 0 {
		var ps []string
		for _, p := range a.Params {
			from := "from the event"
			if p.From == recovery.FromAI {
				from = "*chosen by the AI*"
			}
			ps = append(ps, fmt.Sprintf("`%s` = `%s` (%s)", esc(cut(p.Key, 80)), esc(cut(paramValue(p.Value), 200)), from))
		}
		parts = append(parts, cutEncoded("*Parameters:* "+strings.Join(ps, " · "), paramsBytes))
	}
	return strings.Join(parts, "\n")
}

func paramValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func explanationText(text string, max int) string {
	return "🤖 *AI explanation:* " + esc(cut(strings.TrimSpace(text), max))
}

// BreakerBanner is what a plan awaiting approval says while the
// blast-radius breaker is open.
func BreakerBanner(reason string) string {
	return "🚨 *Blast-radius breaker open* (" + esc(cut(reason, 300)) + "): every plan needs a human's approval until an approver runs `/recover resume`."
}

// FreezeBanner names the freezes among fs that cover x ("" when none).
func FreezeBanner(x *recovery.Execution, fs []recovery.Freeze) string {
	var on []string
	for i := range fs {
		if fs[i].CoversPlan(&x.Plan) {
			on = append(on, fmt.Sprintf("`%s` until %s (%s)", fs[i].ID, SlackTime(fs[i].End), esc(cut(fs[i].Reason, 200))))
		}
	}
	if len(on) == 0 {
		return ""
	}
	return "🧊 *Frozen*: " + strings.Join(on, "; ") + ". Nothing here runs by itself; an approver may still approve."
}

func problemText(summary string, max int) string {
	if strings.TrimSpace(summary) == "" {
		return "_(the event gave no summary)_"
	}
	return esc(cut(summary, max)) // event text: never a mention
}

func actionsHeading(x *recovery.Execution) string {
	switch x.State {
	case recovery.PendingApproval:
		return "Planned Actions:"
	case recovery.DryRun:
		return "Would do:"
	case recovery.Suppressed, recovery.Rejected, recovery.Expired, recovery.Cancelled:
		return "Actions (not executed):"
	}
	return "Actions:"
}

// actionSections renders one section per action: type, target, the driver's
// description and the parameters as JSON, each within the section limit.
func actionSections(x *recovery.Execution, describe []string, heading string) []slack.Block {
	out := make([]slack.Block, 0, len(x.Actions))
	for i := range x.Actions {
		var b strings.Builder
		if i == 0 {
			b.WriteString(heading + "\n")
		}
		b.WriteString(ActionText(x, describe, i))
		out = append(out, section(cut(b.String(), MaxSectionText)))
	}
	return out
}

// ActionText is one action: "1. TYPE · target", the driver's description,
// and the parameters as indented JSON, cut to fit a section.
func ActionText(x *recovery.Execution, describe []string, i int) string {
	a := x.Actions[i]
	var b strings.Builder
	fmt.Fprintf(&b, "*%d. %s*", i+1, esc(string(a.Type)))
	if a.Operation != "" {
		fmt.Fprintf(&b, " %s", esc(a.Operation))
	}
	if a.Resource != "" {
		fmt.Fprintf(&b, " %s", esc(a.Resource))
	}
	if i < len(x.Targets) {
		fmt.Fprintf(&b, " · `%s`", esc(x.Targets[i]))
	}
	var notes []string
	if a.Gradual {
		notes = append(notes, "gradual")
	}
	if a.Duration > 0 {
		notes = append(notes, fmt.Sprintf("reverts after %ds", a.Duration))
	}
	if a.Risk != "" {
		notes = append(notes, "risk: "+esc(a.Risk))
	}
	if len(notes) > 0 {
		b.WriteString(" _(" + strings.Join(notes, ", ") + ")_")
	}
	if i < len(describe) && describe[i] != "" {
		b.WriteString("\n" + esc(describe[i]))
	}
	if len(a.Parameters) > 0 {
		p := paramsJSON(a.Parameters)
		room := MaxSectionText - utf8.RuneCountInString(b.String()) - 200 // heading and fences
		b.WriteString("\n```" + esc(cut(p, max(room, 100))) + "```")
	}
	return b.String()
}

func paramsJSON(p map[string]any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(p); err != nil {
		return recovery.FormatParams(p)
	}
	return strings.TrimRight(buf.String(), "\n")
}

func rollbackText(x *recovery.Execution) string {
	if len(x.Rollback) == 0 {
		return "*Rollback Plan:* None ⚠️ (nothing this plan does can be restored)"
	}
	return fmt.Sprintf("*Rollback Plan:* Available ✅ (%d step%s, each restoring the state observed before its action)",
		len(x.Rollback), plural(len(x.Rollback)))
}

func reasonsHeading(x *recovery.Execution) string {
	switch {
	case x.Decision == recovery.DecideApproval && x.State == recovery.PendingApproval:
		return "*Why approval is needed:*"
	case x.Decision == recovery.DecideApproval:
		return "*Why approval was needed:*"
	case x.State == recovery.DryRun || x.State == recovery.Suppressed:
		return "*Why it was not executed:*"
	}
	return "*Guardrails:*"
}

// statusText is the after-the-fact line: who approved when, and how it ended.
func statusText(x *recovery.Execution, f Facts) string {
	approved := ""
	switch {
	case x.ApprovedBy == "":
	case x.Decision == recovery.DecideAuto:
		approved = "⚙️ Executed without approval: every guardrail passed"
	default:
		approved = "✅ Approved by " + Who(x.ApprovedBy)
		if !f.ApprovedAt.IsZero() {
			approved += " at " + SlackTime(f.ApprovedAt)
		}
	}
	join := func(parts ...string) string {
		var out []string
		for _, p := range parts {
			if p != "" {
				out = append(out, p)
			}
		}
		return strings.Join(out, " · ")
	}
	at := ""
	if !f.LastAt.IsZero() && f.LastTo == x.State {
		at = " at " + SlackTime(f.LastAt)
	}
	switch x.State {
	case recovery.PendingApproval:
		return ""
	case recovery.Approved:
		return join(approved, "starting…")
	case recovery.Executing:
		return join(approved, "▶️ executing: progress in the thread")
	case recovery.Succeeded, recovery.Verified, recovery.Verifying, recovery.VerifyFailed:
		s := "✅ Recovery succeeded" + at
		switch x.State {
		case recovery.Verifying:
			s = "🔎 Recovery done, verifying " + queryText(x)
			if !x.VerifyUntil.IsZero() {
				s += " until " + SlackTime(x.VerifyUntil)
			}
		case recovery.Verified:
			s = "✅ Recovery succeeded and verified" + at + ": " + queryText(x) + " returned " + verifyValue(x.LastVerify)
		case recovery.VerifyFailed:
			s = verifyFailedText(x, at)
		}
		switch {
		case x.UndoAwaits != "":
			s += "; ✋ the " + string(x.UndoAwaits) + " awaits an approver until " + SlackTime(x.RollbackAt) +
				": *Roll back* approves it, *Keep as is* (or no answer) leaves the target as it is"
		case !x.RollbackAt.IsZero():
			s += "; scheduled rollback at " + SlackTime(x.RollbackAt)
		}
		return join(approved, s, falseText(x))
	case recovery.Failed:
		return join(approved, "❌ Failed"+at+": "+esc(cut(x.Error, 800))+". Nothing was changed.", falseText(x))
	case recovery.RollingBack:
		by := ""
		switch {
		case afterFailedVerify(x):
			by = " after failed verification"
			if f.RollbackBy != "" && f.RollbackBy != recovery.ActorBot {
				by += ", approved by " + Who(f.RollbackBy)
			}
		case f.RollbackBy != "" && f.RollbackBy != recovery.ActorBot:
			by = ", requested by " + Who(f.RollbackBy)
		}
		return join(approved, "↩️ Rolling back"+by+": progress in the thread")
	case recovery.RolledBack:
		by := ""
		switch {
		case afterFailedVerify(x):
			by = " after failed verification (last value: " + verifyValue(x.LastVerify) + ")"
			if f.RollbackBy != "" && f.RollbackBy != recovery.ActorBot {
				by += ", approved by " + Who(f.RollbackBy)
			}
		case f.RollbackBy != "" && f.RollbackBy != recovery.ActorBot:
			by = " (requested by " + Who(f.RollbackBy) + ")"
		}
		return join(approved, "↩️ Rolled back"+by+at+": the previous state is restored", falseText(x))
	case recovery.RollbackFailed:
		return join(approved, "🔥 Rollback FAILED"+at+", a human must look: "+esc(cut(f.LastReason, 800)), falseText(x))
	case recovery.Rejected:
		return "❌ Rejected by " + Who(f.LastBy) + at + ": not executed"
	case recovery.Expired:
		return "⏰ Approval timed out — not executed"
	case recovery.Cancelled:
		return "Cancelled: the alert resolved before anyone approved; not executed"
	case recovery.Suppressed:
		reason := f.LastReason
		if reason == "" && len(x.Reasons) > 0 {
			reason = x.Reasons[0]
		}
		return join(approved, "🚫 Not executed: "+esc(cut(reason, 800)))
	case recovery.DryRun:
		return "🧪 Dry run: nothing was executed; this is what would have happened"
	case recovery.Interrupted:
		return join(approved, "⚠️ Interrupted"+at+": "+esc(cut(f.LastReason, 800)), falseText(x))
	}
	return esc(string(x.State))
}

func queryText(x *recovery.Execution) string {
	if x.VerifyQuery == "" {
		return "the runbook's query"
	}
	return "`" + esc(cut(x.VerifyQuery, 300)) + "`"
}

func verifyValue(v string) string {
	if v == "" {
		return "an empty result"
	}
	return "`" + esc(cut(v, 200)) + "`"
}

// afterFailedVerify reports whether the engine rolled x back (or is rolling
// it back) because its verification failed: it marks those false actions
// "by verification".
func afterFailedVerify(x *recovery.Execution) bool {
	return x.FalseAction && x.FalseBy == recovery.FalseByVerification
}

// verifyFailedText tells the three endings recovery/verify.go has for
// VERIFY_FAILED: unhealthy and rolling back, unhealthy and escalated, or no
// answer at all (never counted as a success, never rolled back on a guess).
func verifyFailedText(x *recovery.Execution, at string) string {
	if why, ok := x.VerificationUnavailable(); ok {
		return "⚠️ Verification unavailable" + at + " (" + esc(cut(why, 300)) +
			"): not counted as a success and not rolled back; a human must decide"
	}
	switch {
	case afterFailedVerify(x) && x.UndoAwaits != "":
		return "❌ Verification failed" + at + ": " + queryText(x) + " still unhealthy (last value: " + verifyValue(x.LastVerify) + "); not rolled back yet"
	case afterFailedVerify(x):
		return "❌ Verification failed" + at + ": " + queryText(x) + " still unhealthy (last value: " + verifyValue(x.LastVerify) + "); rolling back"
	}
	return "🚨 Verification failed" + at + ": " + queryText(x) + " still unhealthy (last value: " + verifyValue(x.LastVerify) + "); escalated, a human must look"
}

// falseText says that an execution is counted as a false action, and by
// whom ("" when it is not).
func falseText(x *recovery.Execution) string {
	switch {
	case !x.FalseAction:
		return ""
	case afterFailedVerify(x):
		return "🏷️ Counted as a false action (verification failed)"
	}
	return "🏷️ Marked as a false action by " + Who(x.FalseBy)
}

func buttons(x *recovery.Execution, s *Signer) slack.Block {
	switch {
	case x.CanApprove():
		return slack.NewActionBlock(BlockApproval,
			slack.NewButtonBlockElement(ActionApprove, s.Sign(ActionApprove, x.ID), plain("✅ Approve & Execute")).WithStyle(slack.StylePrimary),
			slack.NewButtonBlockElement(ActionReject, s.Sign(ActionReject, x.ID), plain("❌ Reject")).WithStyle(slack.StyleDanger),
			slack.NewButtonBlockElement(ActionDetails, s.Sign(ActionDetails, x.ID), plain("🔍 View Details")),
		)
	}
	var els []slack.BlockElement
	switch {
	case x.UndoAwaits != "":
		els = append(els,
			slack.NewButtonBlockElement(ActionRollback, s.Sign(ActionRollback, x.ID), plain("↩️ Roll back")).WithStyle(slack.StyleDanger),
			slack.NewButtonBlockElement(ActionKeep, s.Sign(ActionKeep, x.ID), plain("✋ Keep as is")))
	case x.CanRollBack(): // the one predicate /recover status and the engine ask too
		els = append(els, slack.NewButtonBlockElement(ActionRollback, s.Sign(ActionRollback, x.ID), plain("↩️ Roll back")).WithStyle(slack.StyleDanger))
	}
	if x.CanMarkFalse() {
		els = append(els, slack.NewButtonBlockElement(ActionMarkFalse, s.Sign(ActionMarkFalse, x.ID), plain("🏷️ Mark as false action")))
	}
	if len(els) == 0 {
		return nil
	}
	els = append(els, slack.NewButtonBlockElement(ActionDetails, s.Sign(ActionDetails, x.ID), plain("🔍 View Details")))
	return slack.NewActionBlock(BlockOutcome, els...)
}

func footer(x *recovery.Execution) string {
	if x.State == recovery.PendingApproval && !x.Deadline.IsZero() {
		mins := int(x.Deadline.Sub(x.CreatedAt).Round(time.Minute) / time.Minute)
		return fmt.Sprintf("⏰ This request times out at %s (%d minute%s after it was made): after that, nothing runs. · Plan `%s`",
			SlackTime(x.Deadline), mins, plural(mins), esc(x.ID))
	}
	return fmt.Sprintf("Plan `%s` · made %s", esc(x.ID), SlackTime(x.CreatedAt))
}

func fallback(x *recovery.Execution) string {
	s := fmt.Sprintf("%s: %s (plan %s)", headline(x), x.Runbook, x.ID)
	if x.Repeats > 0 {
		s += " · " + SeenMore(x.Repeats)
	}
	return cut(s, 300)
}

// DetailsModal is the View Details modal: the whole plan, the rollback plan,
// the event, the guardrail reasons and the steps so far, within the view
// limits (100 blocks, 3,000 characters per section).
func DetailsModal(x *recovery.Execution, describe []string, f Facts) slack.ModalViewRequest {
	head := []slack.Block{
		section(infoText(x) + "\n*State:* " + esc(string(x.State))),
		section("*Problem:*\n" + problemText(x.Event.Summary, MaxSectionText-20)),
	}
	if x.Explanation != "" {
		head = append(head, section(explanationText(x.Explanation, MaxSectionText-40)))
	}
	if x.AI != nil {
		head = append(head, section(AIText(x.AI, 1<<20)))
		if t := AIFacts(x.AI, MaxSectionText, MaxSectionText); t != "" {
			head = append(head, section(t))
		}
	}
	if s := statusText(x, f); s != "" {
		head = append(head, section("*Status:* "+s))
	}
	actions := actionSections(x, describe, "*Actions:*")
	var tail []slack.Block
	tail = append(tail, slack.NewDividerBlock())
	if len(x.Rollback) > 0 {
		tail = append(tail, section(cut("*Rollback plan* (runs in this order; each undo restores what its driver observed before acting):\n"+bullets(x.Rollback), MaxSectionText)))
	} else {
		tail = append(tail, section("*Rollback plan:* none: nothing this plan does can be restored"))
	}
	if len(x.Reasons) > 0 {
		tail = append(tail, section(cut("*Guardrail reasons:*\n"+bullets(x.Reasons), MaxSectionText)))
	}
	tail = append(tail, section(cut("*Event:*\n```"+esc(eventJSON(x))+"```", MaxSectionText)))
	if len(x.Steps) > 0 {
		tail = append(tail, section(cut("*Steps so far:*\n"+stepLines(x), MaxSectionText)))
	}
	tail = append(tail, slack.NewContextBlock("", mrkdwn(fmt.Sprintf("Plan `%s` · runbook hash `%.12s` · made %s", esc(x.ID), esc(x.RunbookHash), SlackTime(x.CreatedAt)))))
	blocks := fit(head, actions, tail, MaxViewBlocks, 1<<30, func(n int) slack.Block {
		return section(fmt.Sprintf("_…and %d more action(s): too many to show here; `/recover status %s` lists the plan._", n, x.ID))
	})
	return slack.ModalViewRequest{
		Type:       slack.VTModal,
		Title:      plain("Recovery plan"),
		Close:      plain("Close"),
		CallbackID: "recovery_details",
		Blocks:     slack.Blocks{BlockSet: blocks},
	}
}

func eventJSON(x *recovery.Execution) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(x.Event)
	return strings.TrimRight(buf.String(), "\n")
}

func stepLines(x *recovery.Execution) string {
	var b strings.Builder
	steps := x.Steps
	if len(steps) > 30 {
		fmt.Fprintf(&b, "_(%d earlier steps not shown)_\n", len(steps)-30)
		steps = steps[len(steps)-30:]
	}
	for _, s := range steps {
		mark := "▶️"
		switch {
		case s.Error != "":
			mark = "❌"
		case !s.EndedAt.IsZero():
			mark = "✅"
		}
		fmt.Fprintf(&b, "%s %s action %d (%s)", mark, s.Phase, s.Action+1, esc(s.Type))
		if s.Error != "" {
			fmt.Fprintf(&b, ": %s", esc(cut(s.Error, 200)))
		}
		b.WriteByte('\n')
	}
	return strings.TrimRight(b.String(), "\n")
}

// Who renders an audit actor: a Slack user as a mention, anyone else as text.
func Who(actor string) string {
	if id, ok := strings.CutPrefix(actor, ActorPrefix); ok && ValidApproverID(id) {
		return "<@" + id + ">"
	}
	if actor == "" {
		return "someone"
	}
	return esc(actor)
}

// SlackTime renders t in each reader's own time zone, with UTC as fallback.
func SlackTime(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{time}|%s>", t.Unix(), t.UTC().Format("15:04 UTC"))
}

// NoteText renders an outbox notification for mrkdwn. The text is escaped
// as a whole, so nothing an event, an AI or a driver wrote ("slack:U123",
// "<!channel>") ever becomes a mention; only the notification's own Actor
// field, which the engine sets from an authenticated request, is shown as
// one (Who). The engine names that actor after any text it quotes, so the
// last occurrence is the actor's.
func NoteText(n recovery.Notification) string {
	s := esc(n.Text)
	if n.Actor == "" {
		return s
	}
	a := esc(n.Actor)
	i := strings.LastIndex(s, a)
	if i < 0 {
		return s
	}
	return s[:i] + Who(n.Actor) + s[i+len(a):]
}

func section(text string) *slack.SectionBlock {
	return slack.NewSectionBlock(mrkdwn(cut(text, MaxSectionText)), nil, nil)
}

func mrkdwn(text string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, text, false, false)
}

func plain(text string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, text, true, false)
}

func bullets(lines []string) string {
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("• " + esc(l))
	}
	return b.String()
}

// esc escapes the three characters mrkdwn treats as markup.
func esc(s string) string {
	if !strings.ContainsAny(s, "&<>") {
		return s
	}
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// cutEncoded shortens mrkdwn text so that its JSON encoding (what slack-go
// sends and Slack measures) takes at most n bytes, ending in "…" when it
// cut, and never inside an &lt; / &gt; / &amp; escape.
func cutEncoded(s string, n int) string {
	if encodedLen(s) <= n {
		return s
	}
	r := []rune(s)
	lo, hi := 0, len(r) // the longest prefix that fits is r[:lo]
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if encodedLen(string(r[:mid])+"…") <= n {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	out := string(r[:lo])
	if amp := strings.LastIndexByte(out, '&'); amp > strings.LastIndexByte(out, ';') {
		out = out[:amp]
	}
	return out + "…"
}

func encodedLen(s string) int {
	b, _ := json.Marshal(s)
	return len(b) - 2
}

// cut shortens s to at most n runes, ending in "…" when it cut.
// cut keeps s within n characters, Slack's unit for text limits, marked when
// cut (recovery.CutChars: the one way text is cut).
func cut(s string, n int) string { return recovery.CutChars(s, n) }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
