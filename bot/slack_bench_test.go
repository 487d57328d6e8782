package bot

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/internal/slacktest"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/runbooks"
)

// Samples per benchmark run: latency percentiles need many events, and each
// one is a full round trip through bbolt and the Slack test server.
const slackBenchSamples = 300

// benchRunbook needs approval and allows as many executions as the
// benchmark makes (the defaults allow two an hour).
const benchRunbook = `
name: bench-failover
trigger: {eventType: UPSTREAM_DEGRADATION, conditions: {confidence: {min: 0.5}}}
actions:
  - type: FAILOVER
    parameters: {from: '{{upstream}}', to: '{{backup_service}}'}
safety: {requiresApproval: true, maxExecutionsPerHour: 100000}
`

func reportPercentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50_ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99_ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max_ms")
}

func waitCtx(*testing.B) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// postTimer wraps the notifier's Web API client and reports when each
// chat.postMessage has been answered by the server.
type postTimer struct {
	slackPoster
	posted chan time.Time
}

func (p *postTimer) PostMessageContext(ctx context.Context, ch string, opts ...slack.MsgOption) (string, string, error) {
	c, ts, err := p.slackPoster.PostMessageContext(ctx, ch, opts...)
	if err == nil {
		p.posted <- time.Now()
	}
	return c, ts, err
}

// BenchmarkSlackEventToApprovalMessage: an event that needs approval is
// submitted (decided and fsynced) and the timer stops when the test server
// has answered the chat.postMessage of its approval message (outbox wake-up,
// courier, audit read, Block Kit rendering, HTTP). Target p99 ≤ 100 ms.
func BenchmarkSlackEventToApprovalMessage(b *testing.B) {
	h := newSlackHarness(b, harnessConfig{runbooks: writeRunbook(b, benchRunbook)})
	timer := &postTimer{slackPoster: h.sl.notifier.API, posted: make(chan time.Time, 1)}
	h.sl.notifier.API = timer // before any notification: the courier has nothing to send yet
	var lat, submitted []time.Duration
	n := 0
	for r := 0; r < b.N; r++ {
		for range slackBenchSamples {
			n++
			start := time.Now()
			a, err := h.eng.Submit(context.Background(), degraded(fmt.Sprintf("svc-%d", n)))
			if err != nil || a.Decision != recovery.DecideApproval {
				b.Fatalf("submit: %v %v", a.Decision, err)
			}
			submitted = append(submitted, time.Since(start))
			select {
			case at := <-timer.posted:
				lat = append(lat, at.Sub(start))
			case <-time.After(10 * time.Second):
				b.Fatal("no approval message")
			}
		}
	}
	slices.Sort(submitted)
	b.ReportMetric(float64(submitted[len(submitted)*99/100].Microseconds())/1000, "submit_p99_ms")
	reportPercentiles(b, lat)
}

// BenchmarkSlackClickToDriverCall: an approver clicks Approve & Execute on a
// posted plan; the timer stops when the driver's Apply is entered (socket
// envelope, slacker, signature, approver check, compare-and-set to APPROVED,
// execution start and step record, each fsynced). Target p99 ≤ 50 ms.
func BenchmarkSlackClickToDriverCall(b *testing.B) {
	applied := make(chan time.Time, 1)
	drv := logdriver.New(nil)
	drv.Block = func(context.Context, runbooks.Action) {
		select {
		case applied <- time.Now():
		default:
		}
	}
	h := newSlackHarness(b, harnessConfig{runbooks: writeRunbook(b, benchRunbook), driver: drv})
	var lat []time.Duration
	n := 0
	for r := 0; r < b.N; r++ {
		for range slackBenchSamples {
			n++
			// Set-up, not timed: a plan waiting for approval, posted.
			a, err := h.eng.Submit(context.Background(), degraded(fmt.Sprintf("svc-%d", n)))
			if err != nil {
				b.Fatal(err)
			}
			var root slacktest.Message
			ctx, cancel := waitCtx(b)
			err = h.srv.WaitFor(ctx, func(s *slacktest.Server) bool {
				ms := s.Messages(incident)
				if len(ms) == 0 {
					return false
				}
				root = ms[len(ms)-1]
				return hasButton(root, commands.ActionApprove) && blocksHas(root, a.PlanID)
			})
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			value := buttonValue(b, root, commands.ActionApprove)

			start := time.Now()
			h.srv.Click(approver, incident, root.TS, commands.ActionApprove, commands.BlockApproval, value)
			select {
			case at := <-applied:
				lat = append(lat, at.Sub(start))
			case <-time.After(10 * time.Second):
				b.Fatal("no driver call after the click")
			}
			// Let this execution finish and its notifications reach Slack
			// (not timed), so the next click does not share the machine
			// with the previous one's thread replies.
			ctx, cancel = waitCtx(b)
			if err := h.eng.Idle(ctx); err != nil {
				b.Fatal(err)
			}
			err = h.srv.WaitFor(ctx, func(s *slacktest.Server) bool {
				th := s.Thread(incident, root.TS)
				return len(th) > 0 && strings.Contains(th[len(th)-1].Text, "Recovery succeeded")
			})
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	reportPercentiles(b, lat)
}

func blocksHas(m slacktest.Message, s string) bool { return strings.Contains(string(m.Blocks), s) }

// BenchmarkSlackClickToAck measures how long Slack waits for the ack of an
// Approve click (from the click's delivery to the ack's arrival at the
// server): the decision the ack waits for (signature, approver, guards
// again, the APPROVED commit and its fsync). Slack's window is 3 s. Each
// ack is checked to come after the approval is in the store.
func BenchmarkSlackClickToAck(b *testing.B) {
	h := newSlackHarness(b, harnessConfig{runbooks: writeRunbook(b, benchRunbook)})
	var lat []time.Duration
	n := 0
	for r := 0; r < b.N; r++ {
		for range slackBenchSamples {
			n++
			a, err := h.eng.Submit(context.Background(), degraded(fmt.Sprintf("svc-%d", n)))
			if err != nil {
				b.Fatal(err)
			}
			var root slacktest.Message
			ctx, cancel := waitCtx(b)
			err = h.srv.WaitFor(ctx, func(s *slacktest.Server) bool {
				ms := s.Messages(incident)
				if len(ms) == 0 {
					return false
				}
				root = ms[len(ms)-1]
				return hasButton(root, commands.ActionApprove) && blocksHas(root, a.PlanID)
			})
			if err != nil {
				b.Fatal(err)
			}
			value := buttonValue(b, root, commands.ActionApprove)

			start := time.Now()
			click := h.srv.Click(approver, incident, root.TS, commands.ActionApprove, commands.BlockApproval, value)
			if _, err := h.srv.WaitAck(ctx, click); err != nil {
				b.Fatal(err)
			}
			acks := h.srv.AckLog()
			lat = append(lat, acks[len(acks)-1].At.Sub(start))
			if x, err := h.db.Execution(ctx, a.PlanID); err != nil || !x.WasApproved() {
				b.Fatalf("plan %s is %s (%v) after its approval was acked", a.PlanID, x.State, err)
			}
			// Not timed: let the run and its messages finish.
			if err := h.eng.Idle(ctx); err != nil {
				b.Fatal(err)
			}
			err = h.srv.WaitFor(ctx, func(s *slacktest.Server) bool {
				th := s.Thread(incident, root.TS)
				return len(th) > 0 && strings.Contains(th[len(th)-1].Text, "Recovery succeeded")
			})
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	reportPercentiles(b, lat)
}
