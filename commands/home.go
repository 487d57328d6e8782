package commands

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/recoverbot/recoverbot/recovery"
)

// Home is what the App Home tab shows: the plans awaiting approval, each with
// the buttons its channel message has (the same signed values, the same
// click handler and checks), what is running or verifying, the last
// finished executions, what keeps the bot from acting on its own, and the
// success metrics.
type Home struct {
	Pending  []recovery.Execution // newest first
	Running  []recovery.Execution // newest first
	Finished []recovery.Execution // the last HomeFinished, newest first
	Paused   bool
	Breaker  string            // why the blast-radius breaker is open; "" when closed
	Freezes  []recovery.Freeze // holding now
	Mode     recovery.Mode
	Stats    recovery.Stats // over HomeStatsWindow
	At       time.Time      // when it was read
	// Signer signs the buttons; nil renders none.
	Signer *Signer
}

// App Home sizes. A view holds at most MaxViewBlocks blocks: the fixed parts
// take about 15, each plan awaiting approval two (its summary and its
// buttons), so at most homePendingShown are listed; /recover status lists
// every one.
const (
	HomeFinished     = 10
	HomeStatsWindow  = 24 * time.Hour
	homeStatsLabel   = "24h"
	homePendingShown = 30
	homeListShown    = 20  // lines in the running list
	homeLoadLimit    = 100 // executions read per list
	// HomeCallbackID names the Home view (views.publish).
	HomeCallbackID = "recoverbot_home"
)

// LoadHome reads what the App Home shows, as stored now. The finished list
// is taken from the homeLoadLimit newest executions.
func LoadHome(ctx context.Context, eng Engine, signer *Signer) (Home, error) {
	st := eng.Store()
	cfg := eng.Config()
	h := Home{Paused: eng.Paused(), Breaker: eng.Breaker(), Freezes: eng.Freezes(), Mode: cfg.Mode, At: cfg.Clock.Now(), Signer: signer}
	var err error
	h.Pending, err = st.Executions(ctx, recovery.ExecutionFilter{State: recovery.PendingApproval, Limit: homeLoadLimit})
	if err != nil {
		return Home{}, fmt.Errorf("home: plans awaiting approval: %w", err)
	}
	for _, s := range RunningStates {
		xs, err := st.Executions(ctx, recovery.ExecutionFilter{State: s, Limit: homeLoadLimit})
		if err != nil {
			return Home{}, fmt.Errorf("home: %s executions: %w", s, err)
		}
		h.Running = append(h.Running, xs...)
	}
	slices.SortStableFunc(h.Running, func(a, b recovery.Execution) int { return b.CreatedAt.Compare(a.CreatedAt) })
	recent, err := st.Executions(ctx, recovery.ExecutionFilter{Limit: homeLoadLimit})
	if err != nil {
		return Home{}, fmt.Errorf("home: recent executions: %w", err)
	}
	for _, x := range recent {
		if x.State.Terminal() && len(h.Finished) < HomeFinished {
			h.Finished = append(h.Finished, x)
		}
	}
	if h.Stats, err = eng.Stats(ctx, HomeStatsWindow); err != nil {
		return Home{}, fmt.Errorf("home: success metrics: %w", err)
	}
	return h, nil
}

// HomeView renders the App Home tab, within the view limits (100 blocks,
// 3,000 characters per section).
func HomeView(h Home) slack.HomeTabViewRequest {
	blocks := []slack.Block{
		slack.NewHeaderBlock(plain("recoverbot")),
		slack.NewContextBlock("", mrkdwn(fmt.Sprintf("Mode `%s` · as of %s · `/recover help` in the incident channel lists the commands",
			esc(string(h.Mode)), SlackTime(h.At)))),
	}
	if s := suspensions(h); len(s) > 0 {
		blocks = append(blocks, section(strings.Join(s, "\n")))
	} else {
		blocks = append(blocks, section("▶️ *Active*: events are planned, and plans run under the usual guardrails."))
	}

	blocks = append(blocks, slack.NewDividerBlock(), section(fmt.Sprintf("*Awaiting approval (%d)*", len(h.Pending))))
	if len(h.Pending) == 0 {
		blocks = append(blocks, slack.NewContextBlock("", mrkdwn("Nothing awaits approval.")))
	}
	for i := range h.Pending {
		if i == homePendingShown {
			blocks = append(blocks, section(fmt.Sprintf("_…and %d more not shown here: `/recover status` lists them all._", len(h.Pending)-i)))
			break
		}
		x := &h.Pending[i]
		blocks = append(blocks, section(pendingText(x)))
		if b := homeButtons(x, h.Signer); b != nil {
			blocks = append(blocks, b)
		}
	}

	blocks = append(blocks,
		slack.NewDividerBlock(),
		section(listText(fmt.Sprintf("*Running and verifying (%d)*", len(h.Running)), h.Running, "Nothing is running.")),
		slack.NewDividerBlock(),
		section(listText(fmt.Sprintf("*Last %d finished*", HomeFinished), h.Finished, "Nothing has finished yet.")),
		slack.NewDividerBlock(),
		section("*Success metrics*\n```"+esc(strings.TrimRight(h.Stats.Text(homeStatsLabel), "\n"))+"```"),
	)
	return slack.HomeTabViewRequest{Type: slack.VTHomeTab, CallbackID: HomeCallbackID, Blocks: slack.Blocks{BlockSet: blocks}}
}

// suspensions are the lines saying what keeps recoverbot from acting on its
// own now: the pause, the blast-radius breaker and the freezes. Every kind of suspension
// the Home shows is rendered here, and only here.
func suspensions(h Home) []string {
	var out []string
	if h.Paused {
		out = append(out, "⏸️ *Paused*: no new plan is made until an approver runs `/recover resume`. Plans already waiting can still be approved or rejected.")
	}
	if h.Breaker != "" {
		out = append(out, BreakerBanner(h.Breaker))
	}
	if len(h.Freezes) > 0 {
		out = append(out, freezeLines(h.Freezes))
	}
	return out
}

// pendingText is one plan awaiting approval: runbook and id, the event, the
// targets, why it needs approval and when it times out.
func pendingText(x *recovery.Execution) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%s* · `%s`\n", esc(cut(x.Runbook, 200)), esc(x.ID))
	fmt.Fprintf(&b, "*Event:* %s (%s): %s\n", esc(string(x.Event.Type)), esc(string(x.Event.Severity)), problemText(x.Event.Summary, 300))
	if len(x.Targets) > 0 {
		fmt.Fprintf(&b, "*Targets:* %s\n", targetsText(x.Targets))
	}
	if x.AI != nil {
		fmt.Fprintf(&b, "🤖 proposed by AI · confidence %.0f %%\n", x.AI.Confidence*100)
	}
	if len(x.Reasons) > 0 {
		fmt.Fprintf(&b, "*Why approval is needed:* %s\n", esc(cut(strings.Join(x.Reasons, "; "), 500)))
	}
	if !x.Deadline.IsZero() {
		fmt.Fprintf(&b, "⏰ times out %s: after that, nothing runs", SlackTime(x.Deadline))
	}
	return strings.TrimRight(b.String(), "\n")
}

// targetsText lists targets as the drivers name them, cut with a marker
// when long.
func targetsText(targets []string) string {
	return "`" + esc(cut(strings.Join(targets, "`, `"), 400)) + "`"
}

// listText is a titled list of executions, one line each, at most
// homeListShown lines and always within a section's limit, with what was
// left out counted (a line is never cut through a date or a mention).
func listText(title string, xs []recovery.Execution, empty string) string {
	if len(xs) == 0 {
		return title + "\n_" + empty + "_"
	}
	var b strings.Builder
	b.WriteString(title)
	for i := range xs {
		line := "\n• " + homeLine(&xs[i])
		if i == homeListShown || b.Len()+len(line) > MaxSectionText-100 {
			fmt.Fprintf(&b, "\n_…and %d more: `/recover history` lists them._", len(xs)-i)
			break
		}
		b.WriteString(line)
	}
	return b.String()
}

// homeLine is lineOf (what /recover status and history show) and the
// plan's targets.
func homeLine(x *recovery.Execution) string {
	s := lineOf(x)
	if len(x.Targets) > 0 {
		s += " · " + targetsText(x.Targets)
	}
	return s
}

// homeButtons are the buttons x's channel message has (buttons), under a
// block id of its own: a view holds many plans.
func homeButtons(x *recovery.Execution, s *Signer) slack.Block {
	if s == nil {
		return nil
	}
	b, ok := buttons(x, s).(*slack.ActionBlock)
	if !ok {
		return nil
	}
	b.BlockID = HomeBlockID(b.BlockID, x.ID)
	return b
}
