package bot

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/internal/slacktest"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

var seenRE = regexp.MustCompile(`seen ([0-9,]+) more times?`)

// seenCount reads the "seen N more times" of a message's fallback text (-1
// when it has none).
func seenCount(text string) int {
	m := seenRE.FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	return n
}

// An alert storm is one Slack message. 10,000 events for the same failure
// (16 senders at once, the engine's clock moving a second per 1,000 events,
// then one more event 5 s later) fold into one plan. The channel shows that
// one message and nothing else; its count moves through a handful of
// chat.update calls (the engine announces the count at most every 5 s: 3
// times in these 15 s), never a thread reply; and it ends saying "seen
// 9,999 more times", still waiting for approval.
func TestSlackStormIsOneMessage(t *testing.T) {
	h := newSlackHarness(t, harnessConfig{timeout: 3 * time.Minute})
	id, root := h.pending(memoryLeak())

	const storm, rounds, senders = 9998, 10, 16
	var sent, folded atomic.Int64
	for round := range rounds {
		var wg sync.WaitGroup
		end := int64(storm * (round + 1) / rounds)
		for range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for sent.Add(1) <= end {
					a, err := h.eng.Submit(h.ctx, memoryLeak())
					if err != nil {
						t.Error(err)
						return
					}
					if a.DuplicateOf == id {
						folded.Add(1)
					}
				}
				sent.Add(-1) // the over-count that ended the loop
			}()
		}
		wg.Wait()
		h.clock.Advance(time.Second)
	}
	h.clock.Advance(5 * time.Second)
	if last := h.submit(memoryLeak()); last.DuplicateOf != id {
		t.Fatalf("the 10,000th event: %+v, want a duplicate of %s", last, id)
	}
	if n := folded.Load(); n != storm {
		t.Fatalf("%d of %d storm events folded into the plan", n, storm)
	}

	m := h.rootShows(root.TS, "seen 9,999 more times")
	if msgs := h.srv.Messages(incident); len(msgs) != 1 {
		t.Errorf("%d channel messages during the storm, want exactly 1", len(msgs))
	}
	if th := h.srv.Thread(incident, root.TS); len(th) != 0 {
		t.Errorf("%d thread replies during the storm, want none: %+v", len(th), th)
	}
	updates := len(m.History) - 1
	// One announcement per 5-s window (the first at once, the next when the
	// window ends): 15 s of storm is at most 4 updates.
	if updates < 1 || updates > 4 || len(h.srv.Calls("chat.update")) != updates {
		t.Errorf("the message was updated %d times (%d chat.update calls), want 1..4: one per count notice",
			updates, len(h.srv.Calls("chat.update")))
	}
	prev := -1
	for i, r := range m.History {
		n := seenCount(r.Text)
		if i > 0 && n <= prev {
			t.Errorf("revision %d says %q: the count did not grow", i, r.Text)
		}
		prev = n
	}
	if !strings.Contains(m.Text, "· seen 9,999 more times") || !strings.Contains(blocksText(m.Blocks), "*Repeats:* seen 9,999 more times") {
		t.Errorf("final message: text %q, blocks lack the count", m.Text)
	}
	if !hasButton(m, commands.ActionApprove) {
		t.Errorf("the storm's plan lost its Approve button")
	}
	if x, _ := h.db.Execution(h.ctx, id); x.Repeats != 9999 || x.State != recovery.PendingApproval {
		t.Errorf("plan: repeats %d, state %s", x.Repeats, x.State)
	}
}

// Plans suppressed by the hourly rate limit are summarized in one message,
// and the duplicates that keep folding into them never post a message of
// their own: a storm over five routes of a runbook allowed once an hour is
// the executed plan's message and one summary, whatever the count.
func TestSlackSuppressedStormIsSummarized(t *testing.T) {
	dir := writeRunbook(t, `
name: clear-route-cache
trigger: {eventType: ERROR_RATE_SPIKE, conditions: {errorCategory: 5xx}}
actions:
  - type: CACHE_CLEAR
    parameters: {pattern: '{{route}}:*', graceful: true}
safety: {requiresApproval: false, maxExecutionsPerHour: 1}
`)
	h := newSlackHarness(t, harnessConfig{runbooks: dir})
	decisions := map[recovery.Decision]int{}
	for i := range 100 {
		a := h.submit(spike(fmt.Sprintf("/api/r%d", i%5)))
		decisions[a.Decision]++
	}
	if decisions[recovery.DecideAuto] != 1 || decisions[recovery.DecideSuppressed] != 4 || decisions[recovery.DecideDuplicate] != 95 {
		t.Fatalf("decisions %v, want 1 auto, 4 suppressed, 95 duplicates", decisions)
	}
	h.clock.Advance(10 * time.Second) // the summary is due
	summary := func(s *slacktest.Server) bool {
		for _, m := range s.Messages(incident) {
			if strings.Contains(m.Text, "4 plan(s) suppressed") {
				return true
			}
		}
		return false
	}
	h.waitFor("the suppression summary", summary)
	h.must(h.eng.Idle(h.ctx), "idle")
	// The summary was queued after every count notice, and the courier
	// delivers in order: everything about the storm was delivered by now.
	msgs := h.srv.Messages(incident)
	if len(msgs) != 2 {
		var texts []string
		for _, m := range msgs {
			texts = append(texts, m.Text)
		}
		t.Fatalf("%d channel messages, want 2 (the executed plan, the summary): %q", len(msgs), texts)
	}
	if !strings.Contains(msgs[1].Text, "4 × clear-route-cache: hourly rate limit reached") {
		t.Errorf("summary = %q", msgs[1].Text)
	}
	// One more duplicate: the count is announced at the end of the 5-s
	// window at the latest.
	h.submit(spike("/api/r0"))
	h.clock.Advance(5 * time.Second)
	h.rootShows(msgs[0].TS, "seen 20 more times")
	if n := len(h.srv.Messages(incident)); n != 2 {
		t.Errorf("%d channel messages after the last duplicate, want 2", n)
	}
}

func spike(route string) recovery.Event {
	return recovery.Event{Type: runbooks.ErrorRateSpike, Severity: runbooks.Warning, Confidence: 0.9,
		Summary: "5xx on " + route, Data: map[string]any{"errorCategory": "5xx"}, Context: map[string]any{"route": route}}
}

// The blast-radius breaker: when it trips, the channel is told loudly, every
// plan awaiting approval says so (the one that tripped it, and one that was
// waiting already), /recover status and /v1/status show it; only an
// approver's /recover resume closes it, and the banners go.
func TestSlackBreakerBannerStatusAndResume(t *testing.T) {
	h := newSlackHarness(t, harnessConfig{engine: func(c *recovery.Config) { c.BlastMaxAuto = 1 }})
	api := httptest.NewServer((&API{Engine: h.eng, Log: testLogger()}).Handler())
	t.Cleanup(api.Close)
	breakerOf := func() string {
		t.Helper()
		resp, err := http.Get(api.URL + "/v1/status")
		h.must(err, "GET /v1/status")
		defer resp.Body.Close()
		var st struct{ Breaker *string }
		h.must(json.NewDecoder(resp.Body).Decode(&st), "status JSON")
		if st.Breaker == nil {
			t.Fatal(`/v1/status has no "breaker"`)
		}
		return *st.Breaker
	}
	if b := breakerOf(); b != "" {
		t.Errorf("breaker before anything happened = %q", b)
	}
	if got := h.command(approver, incident, "status"); !strings.Contains(got.Text, "Blast-radius breaker: closed (trips on more than 1 automatic executions within 1h0m0s") {
		t.Errorf("status = %q", got.Text)
	}

	waiting, waitingRoot := h.pending(memoryLeak())
	if a := h.submit(spike("/api/a")); a.Decision != recovery.DecideAuto {
		t.Fatalf("first automatic plan: %s %v", a.Decision, a.Reasons)
	}
	tripped := h.submit(spike("/api/b"))
	if tripped.Decision != recovery.DecideApproval || !strings.Contains(strings.Join(tripped.Reasons, ";"), "blast-radius breaker is open") {
		t.Fatalf("second automatic plan: %s %v, want approval because the breaker tripped", tripped.Decision, tripped.Reasons)
	}
	const banner = "*Blast-radius breaker open* (more than 1 automatic executions within 1h0m0s)"
	trippedRoot := h.root(tripped.PlanID)
	h.rootShows(trippedRoot.TS, banner)
	h.rootShows(waitingRoot.TS, banner)
	h.waitFor("the loud notice", func(s *slacktest.Server) bool {
		for _, m := range s.Messages(incident) {
			if strings.Contains(m.Text, "Blast-radius breaker tripped: more than 1 automatic executions") {
				return true
			}
		}
		return false
	})
	if got := h.command(approver, incident, "status"); !strings.Contains(got.Text, "🚨 *Blast-radius breaker: OPEN* (more than 1 automatic executions within 1h0m0s)") {
		t.Errorf("status while tripped = %q", got.Text)
	}
	if b := breakerOf(); !strings.HasPrefix(b, "more than 1 automatic executions") {
		t.Errorf("/v1/status breaker = %q", b)
	}

	if got := h.command(bystander, incident, "resume"); !strings.Contains(got.Text, "You are not an approver") || h.eng.Breaker() == "" {
		t.Errorf("a bystander's resume: %q, breaker %q", got.Text, h.eng.Breaker())
	}
	got := h.command(approver, incident, "resume")
	if !strings.Contains(got.Text, "Resumed, and the blast-radius breaker is closed") || h.eng.Breaker() != "" {
		t.Fatalf("resume = %q, breaker %q", got.Text, h.eng.Breaker())
	}
	for _, ts := range []string{trippedRoot.TS, waitingRoot.TS} {
		h.waitFor("the banner to go", func(s *slacktest.Server) bool {
			m, _ := s.Message(incident, ts)
			return !strings.Contains(blocksText(m.Blocks), "Blast-radius breaker open")
		})
		if m, _ := h.srv.Message(incident, ts); !hasButton(m, commands.ActionApprove) {
			t.Errorf("a waiting plan lost its buttons")
		}
	}
	if b := breakerOf(); b != "" {
		t.Errorf("breaker after resume = %q", b)
	}
	if got := h.command(approver, incident, "resume"); !strings.Contains(got.Text, "already running") {
		t.Errorf("second resume = %q", got.Text)
	}
	if x, _ := h.db.Execution(h.ctx, waiting); x.State != recovery.PendingApproval {
		t.Errorf("the waiting plan is %s", x.State)
	}
}
