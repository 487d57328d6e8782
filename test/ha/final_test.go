package ha

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/internal/slacktest"
	"github.com/recoverbot/recoverbot/test/harness"
)

// timeBoxed are the runbooks whose actions are reverted on a schedule.
var timeBoxed = map[string]bool{"ha-breaker": true, "ha-approval": true}

// final lets the replicas run undisturbed until every timer has fired and
// the outbox is delivered, then checks everything the scenario recorded
// against the store, the journals and the etcd history.
func (h *ha) final() {
	t := h.t
	ctx := context.Background()
	l, err := h.waitLeader(60 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	api := h.reps[l].api

	// What a kill caught mid-way is INTERRUPTED; an operator rolls it back
	// (what can be undone is undone once), as the channel asks them to.
	h.waitSettled(api, 3*time.Minute)
	xs, err := api.List(ctx, "INTERRUPTED", "")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(h.rng.Uint64(), 7))
	for _, x := range xs {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		code, body, _ := h.post(pctx, rng, "/v1/executions/"+url.PathEscape(x.ID)+"/rollback", nil)
		cancel()
		if code != 200 && code != 409 { // 409: nothing it changed can be undone
			h.problem("rollback", "rollback of INTERRUPTED %s: %d %s, want 200 or 409", x.ID, code, body)
		}
	}
	h.waitSettled(api, 3*time.Minute)

	// The outbox: read in etcd, where every replica's courier reads it.
	start, first := time.Now(), -1
	deadline := start.Add(4 * time.Minute)
	for {
		kvs, _, err := h.etcd.rangePrefix(ctx, prefix+"o/")
		if first < 0 && err == nil {
			first = len(kvs)
		}
		if err == nil && len(kvs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			h.problem("outbox", "%d notifications still in the outbox after 4 minutes, %d when the wait began (%v)", len(kvs), first, err)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	h.mu.Lock()
	h.drain = fmt.Sprintf("the outbox held %d notifications once everything settled; drained in %s", first, time.Since(start).Round(100*time.Millisecond))
	h.mu.Unlock()

	h.checkEvents(api)
	calls := h.readJournals()
	states := h.checkPlans(api, calls)
	h.checkUndos(api, calls, states)
	h.checkWrites()
}

// waitSettled waits until nothing waits for a timer or a worker: no plan
// pending approval, approved, executing or rolling back, and no time-boxed
// execution left SUCCEEDED (its rollback is due).
func (h *ha) waitSettled(api *harness.API, within time.Duration) {
	ctx := context.Background()
	deadline := time.Now().Add(within)
	for {
		var left []string
		for _, q := range [][2]string{{"PENDING_APPROVAL", ""}, {"APPROVED", ""}, {"EXECUTING", ""}, {"ROLLING_BACK", ""},
			{"SUCCEEDED", "ha-breaker"}, {"SUCCEEDED", "ha-approval"}} {
			xs, err := api.List(ctx, q[0], q[1])
			if err != nil {
				h.t.Fatalf("final: %v", err)
			}
			for _, x := range xs {
				left = append(left, x.ID+" "+x.Runbook+" "+x.State)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			h.problem("settle", "after %s %d execution(s) still wait, e.g. %v", within, len(left), left[:min(5, len(left))])
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// parallel runs f over ids with 8 workers.
func parallel(ids []string, f func(id string)) {
	var wg sync.WaitGroup
	ch := make(chan string)
	for range 8 {
		wg.Go(func() {
			for id := range ch {
				f(id)
			}
		})
	}
	for _, id := range ids {
		ch <- id
	}
	close(ch)
	wg.Wait()
}

// checkEvents reads back every acknowledged event: it is there, with the
// plan it was answered.
func (h *ha) checkEvents(api *harness.API) {
	ctx := context.Background()
	h.mu.Lock()
	ids := make([]string, 0, len(h.events))
	for id := range h.events {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	parallel(ids, func(id string) {
		var rec struct {
			PlanID string `json:"plan_id"`
		}
		h.mu.Lock()
		want := h.events[id]
		h.mu.Unlock()
		if err := api.GetJSON(ctx, "/v1/events/"+url.PathEscape(id), &rec); err != nil {
			h.problem("event lost", "acknowledged event %s: %v", id, err)
		} else if rec.PlanID != want {
			h.problem("event lost", "acknowledged event %s: plan %q, answered %q", id, rec.PlanID, want)
		}
	})
}

// readJournals reads every replica's journal and checks the calls: none
// repeated across replicas, no undo without its apply, none after the
// caller's term ended.
func (h *ha) readJournals() []call {
	var calls []call
	for _, r := range h.reps {
		cs, err := readJournalFile(r.journal, r.name)
		if err != nil {
			h.t.Fatal(err)
		}
		calls = append(calls, cs...)
	}
	h.mu.Lock()
	lostBy := make(map[int64]time.Time, len(h.lostBy))
	for k, v := range h.lostBy {
		lostBy[k] = v
	}
	h.counts.calls = len(calls)
	h.mu.Unlock()
	for _, p := range repeatedCalls(calls) {
		h.problem("driver call repeated", "%s", p)
	}
	for _, p := range unpairedUndos(calls) {
		h.problem("undo without apply", "%s", p)
	}
	for _, p := range lateCalls(calls, lostBy) {
		h.problem("call after leadership lost", "%s", p)
	}
	return calls
}

// checkPlans reads every plan answered or called for, and checks what each
// approval plan's fate implies: an acknowledged click or admin approval is
// in its audit trail, a plan nobody approved expired, and a plan that never
// ran has no driver call.
func (h *ha) checkPlans(api *harness.API, calls []call) map[string]*harness.Execution {
	ctx := context.Background()
	applied := map[string]int{}
	h.mu.Lock()
	ids := make([]string, 0, len(h.plans))
	for id := range h.plans {
		ids = append(ids, id)
	}
	for _, c := range calls {
		if c.Op == "apply" {
			if applied[c.Execution] == 0 && h.plans[c.Execution] == nil {
				ids = append(ids, c.Execution) // a plan whose answer a fault cut off
			}
			applied[c.Execution]++
		}
	}
	h.mu.Unlock()
	slackAcks := h.slack.AckLog()
	states := map[string]*harness.Execution{}
	var smu sync.Mutex
	parallel(ids, func(id string) {
		var ex harness.Execution
		if err := api.GetJSON(ctx, "/v1/executions/"+url.PathEscape(id), &ex); err != nil {
			h.problem("plan lost", "execution %s: %v", id, err)
			return
		}
		smu.Lock()
		states[id] = &ex
		smu.Unlock()
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	ackedClicks := map[string]int{} // plan id → its click envelopes Slack saw acknowledged
	for _, a := range slackAcks {
		if id, ok := h.clicks[a.EnvelopeID]; ok {
			ackedClicks[id]++
		}
	}
	h.clickAcks = clickCount{sent: len(h.clicks), plans: len(ackedClicks)}
	for _, n := range ackedClicks {
		h.clickAcks.acked += n
	}
	for id, ex := range states {
		st := ex.Execution.State
		switch st {
		case "APPROVED", "EXECUTING":
			h.problemLocked("left running", "execution %s is %s at the end", id, st)
		case "EXPIRED", "REJECTED", "CANCELLED", "SUPPRESSED", "DRY_RUN":
			if applied[id] > 0 {
				h.problemLocked("never ran but called", "execution %s is %s but the driver applied %d of its actions", id, st, applied[id])
			}
		}
		p := h.plans[id]
		if p == nil {
			continue
		}
		approvedBy := func(actor string) bool {
			return slices.ContainsFunc(ex.Audit, func(r harness.AuditRecord) bool {
				return r.To == "APPROVED" && (actor == "" || r.Actor == actor)
			})
		}
		// A click decided too late (the deadline passed first) is refused,
		// and the refusal is recorded: also in the audit.
		refusedBy := func(actor string) bool {
			return slices.ContainsFunc(ex.Audit, func(r harness.AuditRecord) bool {
				return r.To == "" && r.Actor == actor && strings.HasPrefix(r.Reason, "refused: ")
			})
		}
		clicker := commands.Actor(approver)
		if ackedClicks[id] > 0 && !approvedBy(clicker) && refusedBy(clicker) {
			h.clickAcks.refused++
		}
		switch {
		case ackedClicks[id] > 0 && !approvedBy(clicker) && !refusedBy(clicker):
			h.problemLocked("click lost", "%d approve clicks on %s were acknowledged, but its audit has neither an approval nor a refusal by %s (state %s)",
				ackedClicks[id], id, approver, st)
		case h.approved[id] && !approvedBy(""):
			h.problemLocked("approval lost", "the admin API approved %s (200), but its audit has no approval (state %s)", id, st)
		case p.fate == "expire" && st != "EXPIRED":
			h.problemLocked("deadline", "plan %s was left alone but is %s, want EXPIRED", id, st)
		}
	}
	h.buttonReport = h.buttonDelays(states)
	if h.clickAcks.plans < minClicks {
		h.problemLocked("clicks not exercised", "%d plans got an acknowledged Approve click (%d clicks sent, %d acknowledged), want at least %d; %s",
			h.clickAcks.plans, h.clickAcks.sent, h.clickAcks.acked, minClicks, h.buttonReport)
	}
	return states
}

// buttonDelays says, for the plans meant for a click, how long after its
// answer each plan's message with its Approve button was in the channel, and
// what became of those never seen there. h.mu is held.
func (h *ha) buttonDelays(states map[string]*harness.Execution) string {
	var clickPlans []string
	for id, p := range h.plans {
		if p.fate == "click" {
			clickPlans = append(clickPlans, id)
		}
	}
	roots := map[string]slacktest.Message{} // plan id → its first root message
	for _, m := range h.slack.Messages(channel) {
		if m.ThreadTS != "" {
			continue
		}
		for _, id := range clickPlans {
			if _, ok := roots[id]; !ok && (strings.Contains(m.Text, id) || strings.Contains(string(m.Blocks), id)) {
				roots[id] = m
			}
		}
	}
	var delays []time.Duration
	never := map[string]int{}
	for id, p := range h.plans {
		if p.fate != "click" {
			continue
		}
		if at, ok := h.seenAt[id]; ok {
			delays = append(delays, at.Sub(p.at))
			continue
		}
		st := "unknown"
		if ex := states[id]; ex != nil {
			st = ex.Execution.State
		}
		m, ok := roots[id]
		switch {
		case !ok:
			st += ", never posted"
		case len(m.History) > 0 && !strings.Contains(string(m.History[0].Blocks), commands.ActionApprove):
			st += fmt.Sprintf(", posted %s after its answer without an Approve button", slackTime(m.TS).Sub(p.at).Round(100*time.Millisecond))
		default:
			st += fmt.Sprintf(", posted %s after its answer", slackTime(m.TS).Sub(p.at).Round(100*time.Millisecond))
		}
		never[st]++
	}
	slices.Sort(delays)
	q := func(f float64) time.Duration {
		if len(delays) == 0 {
			return 0
		}
		return delays[min(len(delays)-1, int(f*float64(len(delays))))].Round(10 * time.Millisecond)
	}
	return fmt.Sprintf("click plans' Approve buttons seen in the channel: %d, after p50 %s max %s; never seen: %v",
		len(delays), q(0.5), q(1), never)
}

// slackTime is the wall-clock time of a Slack ts ("seconds.micros").
func slackTime(ts string) time.Time {
	sec, micro, _ := strings.Cut(ts, ".")
	s, _ := strconv.ParseInt(sec, 10, 64)
	u, _ := strconv.ParseInt(micro, 10, 64)
	return time.Unix(s, u*1000)
}

// clickCount is what became of the approve clicks: envelopes sent and
// acknowledged (Slack's ack log), plans with an acknowledged click, and of
// those the ones whose audit has the clicker's refusal instead of an approval.
type clickCount struct{ sent, acked, plans, refused int }

// problemLocked is problem with h.mu held.
func (h *ha) problemLocked(kind, format string, args ...any) {
	h.t.Helper()
	msg := fmt.Sprintf(format, args...)
	h.problems[kind] = append(h.problems[kind], msg)
	if len(h.problems[kind]) <= 5 {
		h.t.Errorf("%s: %s", kind, msg)
	}
}

// checkUndos checks that every time-boxed action the store saw applied, with
// a state to restore, was undone exactly once across the journals. An apply
// the store has no outcome for was in flight when its leader died: it is
// counted, and its execution must be INTERRUPTED (nobody can know what to
// restore).
func (h *ha) checkUndos(api *harness.API, calls []call, states map[string]*harness.Execution) {
	must, unsure := map[actionKey]bool{}, map[actionKey]bool{}
	for id, ex := range states {
		if !timeBoxed[ex.Execution.Runbook] {
			continue
		}
		for _, s := range ex.Execution.Steps {
			k := actionKey{id, s.Action}
			switch {
			case s.Phase == "apply" && s.Error == "" && len(s.Before) > 0:
				must[k] = true
			case s.Phase == "undo" && s.OutcomeUnknown():
				// Nobody can know whether it acted: a person must be told,
				// and the rest of the execution's undo waits for them too
				// (recoverbot keeps the reverse order or undoes nothing).
				for _, a := range ex.Execution.Steps {
					if a.Phase == "apply" {
						unsure[actionKey{id, a.Action}] = true
					}
				}
				if st := ex.Execution.State; st != "INTERRUPTED" && st != "ROLLBACK_FAILED" {
					h.problem("undo without outcome", "%s action %d: the store has no outcome for its undo, and the execution is %s, want INTERRUPTED or ROLLBACK_FAILED", id, s.Action, st)
				}
			}
		}
	}
	unknown := 0
	for _, c := range calls {
		ex := states[c.Execution]
		if c.Op != "apply" || ex == nil || !timeBoxed[ex.Execution.Runbook] || must[actionKey{c.Execution, c.Action}] {
			continue
		}
		unknown++
		if st := ex.Execution.State; st != "INTERRUPTED" && st != "ROLLED_BACK" && st != "ROLLBACK_FAILED" {
			h.problem("apply without outcome", "%s: the store has no outcome for it, and the execution is %s", c, st)
		}
	}
	reverted, undosHeld, problems := undoTally(calls, must, unsure)
	for _, p := range problems {
		h.problem("revert", "%s", p)
	}
	// What the store says about each action not undone exactly once.
	undos := map[actionKey]int{}
	for _, c := range calls {
		if c.Op == "undo" {
			undos[actionKey{c.Execution, c.Action}]++
		}
	}
	for k := range must {
		if undos[k] == 1 || undos[k] == 0 && unsure[k] {
			continue
		}
		ex := states[k.execution]
		var trail []string
		for _, r := range ex.Audit[max(0, len(ex.Audit)-5):] {
			trail = append(trail, fmt.Sprintf("%s→%s (%s, %s)", r.From, r.To, r.Actor, r.Reason))
		}
		h.t.Logf("revert: %s action %d undone %d times; execution %s, steps %+v, audit tail %q",
			k.execution, k.action, undos[k], ex.Execution.State, ex.Execution.Steps, trail)
	}
	h.mu.Lock()
	h.unknown, h.reverted, h.undosHeld = unknown, reverted, undosHeld
	h.mu.Unlock()
}

// checkWrites reads etcd's whole history and checks that the leaders' write
// transactions never interleave.
func (h *ha) checkWrites() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hist, err := h.etcd.history(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	writes, err := storeWrites(hist, prefix+"seq")
	if err != nil {
		h.problem("writes", "%v", err)
		return
	}
	if len(writes) == 0 {
		h.problem("writes", "no write transaction in the etcd history under %s", prefix)
	}
	for _, p := range interleavedWrites(writes, leaderships(electionKeys(hist, prefix+"leader/"))) {
		h.problem("writes interleaved", "%s", p)
	}
	h.mu.Lock()
	h.counts.writes = len(writes)
	h.mu.Unlock()
}

// pct is the p-th percentile of sorted durations.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, len(ds)*p/100)].Round(10 * time.Millisecond)
}

// report prints the figures and asserts the takeover bound.
func (h *ha) report(took time.Duration) {
	t := h.t
	h.mu.Lock()
	defer h.mu.Unlock()
	kills := slices.Sorted(slices.Values(h.takeovers))
	pauses := slices.Sorted(slices.Values(h.pauses))
	harness.Report(t, "ha: takeover after kill -9 of the leader (%d): p50 %s p95 %s max %s; after SIGSTOP (%d): p50 %s p95 %s max %s",
		len(kills), pct(kills, 50), pct(kills, 95), pct(kills, 100), len(pauses), pct(pauses, 50), pct(pauses, 95), pct(pauses, 100))
	approvals := 0
	for _, p := range h.plans {
		if p.decision == "approval" {
			approvals++
		}
	}
	harness.Report(t, "ha: %d events acknowledged (%d sends retried, non-2xx %v), %d plans (%d for approval: %v), %d admin approvals acknowledged; approve clicks: %d sent, %d acknowledged, on %d plans (on %d the audit has the refusal, on the rest the approval)",
		len(h.events), h.retries, h.refused, len(h.plans), approvals, h.fates, len(h.approved), h.clickAcks.sent, h.clickAcks.acked, h.clickAcks.plans, h.clickAcks.refused)
	harness.Report(t, "ha: %d driver calls in the journals, %d time-boxed actions reverted exactly once, %d applies in flight at a fault, %d time-boxed actions held for a person (an undo of their execution has no stored outcome: nothing more of it is undone); %d store writes; %d terms seen; exits after SIGCONT %v, other exits %v (%s)",
		h.counts.calls, h.reverted, h.unknown, h.undosHeld, h.counts.writes, len(h.seenTerms), h.exitCodes, h.exits, took.Round(time.Second))
	harness.Report(t, "ha: %s", h.drain)
	harness.Report(t, "ha: %s", h.buttonReport)
	for kind, ps := range h.problems {
		harness.Report(t, "ha: %d × %s", len(ps), kind)
	}
	if m := pct(kills, 100); m > maxTakeover {
		t.Errorf("takeover max %s, want ≤ %s", m, maxTakeover)
	}
	if len(kills) < leaderKills || len(pauses) < leaderPauses {
		t.Errorf("faults done: %d kills, %d pauses; want %d and %d", len(kills), len(pauses), leaderKills, leaderPauses)
	}
}
