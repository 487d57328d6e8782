package long

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/test/harness"
	bolt "go.etcd.io/bbolt"
)

// TestCrashLoop runs the real binary under a running scenario (intake under
// load, plans waiting for approval and being approved, executions mid-way,
// scheduled rollbacks due) and kill -9s it at a random moment, then restarts
// it on the same bbolt file and checks, after every one of the restarts:
//
//   - bbolt opens clean (tx.Check finds nothing) and the restart succeeds:
//     /readyz answers 200;
//   - every event that got a 2xx is still there, with the same plan;
//   - no plan id ever answered has vanished;
//   - nothing the driver acted for before the restart is left APPROVED or
//     EXECUTING: what was caught mid-way is INTERRUPTED, with that record in
//     its audit trail, and reported (offline, the bot logs the "restarted
//     while" notification); what was approved but not started is started;
//   - the driver journal shows no action applied twice, no undo without its
//     apply, and nothing done for an execution after it was INTERRUPTED.
//
// At the end the bot runs undisturbed until every timer has fired: nothing
// waits for approval (the plans nobody approved are EXPIRED) and no
// time-boxed execution is left SUCCEEDED (they are ROLLED_BACK); a plan that
// never ran has no driver call. Waiting is polling with a deadline; nothing
// asserts on timing.
//
// RECOVERBOT_CRASHES (default 50) sets the number of kills;
// RECOVERBOT_LONG_SEED (random, logged) draws the same kill moments and event
// mix again.
func TestCrashLoop(t *testing.T) {
	requireLong(t)
	crashes := harness.EnvInt(t, "RECOVERBOT_CRASHES", 50)
	seed := uint64(harness.EnvInt(t, "RECOVERBOT_LONG_SEED", int(time.Now().UnixNano()&0x7fffffff)))
	t.Logf("seed %d (RECOVERBOT_LONG_SEED=%d draws the same kill moments and event mix again)", seed, seed)
	began := time.Now()

	dir := t.TempDir()
	books, err := filepath.Abs(filepath.Join("testdata", "runbooks"))
	if err != nil {
		t.Fatal(err)
	}
	c := &crash{
		t: t, rng: rand.New(rand.NewPCG(seed, 0x5eed)),
		dbPath: filepath.Join(dir, "bot.db"), journalPath: filepath.Join(dir, "journal.jsonl"),
		plans: map[string]*plan{}, applies: map[jkey]int{}, undos: map[jkey]int{},
		journalExecs: map[string]bool{}, interruptedAt: map[string]int{},
		reportedRestart: map[string]bool{},
	}
	addr := harness.FreeAddr(t)
	c.b = &harness.Bot{Bin: harness.Binary(t), Addr: addr, LogPath: filepath.Join(dir, "bot.log"), Env: map[string]string{
		"RECOVERBOT_LISTEN":             addr,
		"RECOVERBOT_DATA":               c.dbPath,
		"RECOVERBOT_MODE":               "full",
		"RECOVERBOT_DRIVERS":            "log",
		"RECOVERBOT_LOG_DRIVER_JOURNAL": c.journalPath,
		"RECOVERBOT_RUNBOOKS":           books,
		"RECOVERBOT_APPROVAL_TIMEOUT":   "10s",
		"RECOVERBOT_DEFAULT_COOLDOWN":   "1s",
	}}
	c.api = harness.NewAPI(c.b.Addr, 64)
	t.Cleanup(c.b.Kill9)
	defer func() {
		if t.Failed() {
			t.Logf("bot log tail:\n%s", harness.Tail(c.b.LogPath, 60))
		}
	}()

	c.runStart = []int64{0, 0} // run 1 starts at the journal's beginning
	c.b.Start(t)
	for i := 1; i <= crashes && !t.Failed(); i++ {
		killAfter := time.Duration(200+c.rng.IntN(2800)) * time.Millisecond
		c.scenario(killAfter)
		c.checkBolt("after kill " + strconv.Itoa(i))
		c.runStart = append(c.runStart, harness.FileSize(c.journalPath))
		c.b.Start(t)
		c.afterRestart()
	}
	if t.Failed() {
		return
	}
	c.final()
	if code := c.b.Stop(t); code != 0 {
		t.Errorf("SIGTERM after the last run: exit code %d, want 0; log tail:\n%s", code, harness.Tail(c.b.LogPath, 30))
	}
	c.checkBolt("after the final SIGTERM")

	c.mu.Lock()
	defer c.mu.Unlock()
	harness.Report(t, "crash loop: restarts=%d events_accepted=%d plans=%d interrupted=%d expired=%d reverted=%d journal_applies=%d (approved=%d, seed %d, %s)",
		crashes, len(c.events), len(c.plans), len(c.interruptedAt), c.tally.expired, c.tally.reverted, c.journalApplies,
		c.approved, seed, time.Since(began).Round(time.Second))
	harness.Report(t, "crash loop: %s", c.outbox)
}

// crash is the crash loop's bookkeeping: what the bot answered, what the
// driver journal says, and what the restarts found.
type crash struct {
	t                   *testing.T
	b                   *harness.Bot
	api                 *harness.API
	rng                 *rand.Rand // the test goroutine's; workers derive their own
	dbPath, journalPath string

	mu       sync.Mutex
	events   []acceptedEvent // every event that got a 2xx, in answer order
	plans    map[string]*plan
	queue    []approval // plans to approve, and when
	approved int        // approvals answered 200
	checked  int        // events[:checked] were verified after some restart

	// The journal is read incrementally; runStart[r] is its size when run r
	// (the r-th start) began, so each line is attributed to the run that wrote it.
	journalOff     int64
	runStart       []int64
	applies, undos map[jkey]int
	journalApplies int
	journalExecs   map[string]bool
	// interruptedAt[id] is the run whose start marked execution id INTERRUPTED.
	interruptedAt   map[string]int
	logOff          int64
	reportedRestart map[string]bool // plan ids of "restarted while" log lines

	tally  struct{ expired, reverted int } // final states of the answered plans
	outbox string                          // how the final drain went
}

type acceptedEvent struct {
	id, plan, decision string
	run                int
}

type plan struct {
	id, event, decision string
	run                 int
	approve             bool // the scenario approves it; otherwise it must expire
	tries               int
}

type approval struct {
	id string
	at time.Time
}

type jkey struct {
	exec   string
	action int
}

// scenario drives the running bot until killAfter, then kill -9s it while
// events and approvals are in flight.
func (c *crash) scenario(killAfter time.Duration) {
	const workers, rate = 8, 80.0 // events per second, all workers together
	run := c.b.Starts
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range workers {
		rng := rand.New(rand.NewPCG(c.rng.Uint64(), uint64(w)))
		wg.Go(func() { c.intake(ctx, run, w, time.Duration(float64(time.Second)*workers/rate), rng) })
	}
	arng := rand.New(rand.NewPCG(c.rng.Uint64(), 99))
	wg.Go(func() { c.approver(ctx, arng) })
	if c.rng.IntN(2) == 0 {
		// A person resumes: it closes the blast-radius breaker, which the
		// storm of distinct targets keeps tripping, so automatic executions
		// run again until it trips anew.
		after := time.Duration(c.rng.Int64N(int64(killAfter)))
		wg.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(after):
			}
			if code, body, err := c.api.Do(ctx, "POST", "/v1/resume", nil); err == nil && code != 200 {
				c.t.Errorf("POST /v1/resume: %d %s", code, body)
			}
		})
	}
	time.Sleep(killAfter)
	c.b.Kill9()
	cancel()
	wg.Wait()
}

// intake posts events at a steady pace, each with a unique id and target.
// Only a complete 2xx answer counts as accepted; a request the kill cut off
// is not counted (the sender would retry it, and the id makes that a no-op).
func (c *crash) intake(ctx context.Context, run, w int, every time.Duration, rng *rand.Rand) {
	next := time.Now()
	for n := 0; ; n++ {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			return
		}
		next = next.Add(every)
		id := fmt.Sprintf("crash-r%02d-w%d-%05d", run, w, n)
		target := fmt.Sprintf("t%02d-%d-%05d", run, w, n)
		var typ, key string
		switch k := rng.IntN(100); {
		case k < 35:
			typ, key = "CIRCUIT_BREAKER_CANDIDATE", "upstream" // crash-breaker: auto, time-boxed
		case k < 60:
			typ, key = "RATE_LIMIT_BREACH", "client" // crash-approval: approval, time-boxed
		case k < 85:
			typ, key = "ERROR_RATE_SPIKE", "route" // crash-multi: auto, five steps
		default:
			typ, key = "LATENCY_ANOMALY", "upstream" // no runbook
		}
		body, _ := json.Marshal(map[string]any{"id": id, "type": typ, "severity": "WARNING", "confidence": 0.9,
			"summary": "crash loop", "data": map[string]any{}, "context": map[string]any{key: target}})
		code, resp, err := c.api.Do(ctx, "POST", "/v1/events", body)
		if err != nil {
			continue
		}
		var ans harness.Answer
		if code/100 != 2 || json.Unmarshal(resp, &ans) != nil || ans.EventID != id {
			c.t.Errorf("POST /v1/events %s: %d %s, want 2xx with its event id", id, code, resp)
			continue
		}
		c.mu.Lock()
		c.events = append(c.events, acceptedEvent{id: id, plan: ans.PlanID, decision: ans.Decision, run: run})
		if ans.PlanID != "" {
			if p, ok := c.plans[ans.PlanID]; ok {
				// Two events on one plan only by folding; the targets are unique here.
				c.t.Errorf("event %s answered plan %s, already the plan of event %s", id, ans.PlanID, p.event)
			} else {
				p := &plan{id: ans.PlanID, event: id, decision: ans.Decision, run: run}
				c.plans[p.id] = p
				if ans.Decision == "approval" && rng.IntN(100) < 60 {
					p.approve = true
					c.queue = append(c.queue, approval{p.id, time.Now().Add(time.Duration(rng.IntN(1500)) * time.Millisecond)})
				}
			}
		}
		c.mu.Unlock()
	}
}

// approver approves the queued plans when they fall due, as a person would
// through the CLI. An approval the kill cut off is tried again later (maybe
// in the next run); the second answer is then 200 or 409.
func (c *crash) approver(ctx context.Context, rng *rand.Rand) {
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(10+rng.IntN(40)) * time.Millisecond):
		}
		now := time.Now()
		c.mu.Lock()
		var due []approval
		c.queue = slices.DeleteFunc(c.queue, func(a approval) bool {
			if a.at.After(now) {
				return false
			}
			due = append(due, a)
			return true
		})
		c.mu.Unlock()
		for _, a := range due {
			code, body, err := c.api.Do(ctx, "POST", "/v1/executions/"+url.PathEscape(a.id)+"/approve", nil)
			c.mu.Lock()
			p := c.plans[a.id]
			switch {
			case err != nil:
				if p.tries++; p.tries < 3 {
					c.queue = append(c.queue, approval{a.id, time.Now().Add(500 * time.Millisecond)})
				}
			case code == 200:
				c.approved++
			case code == 409: // expired meanwhile, or a retried approval that had landed
			default:
				c.t.Errorf("approve %s: %d %s, want 200 or 409", a.id, code, body)
			}
			c.mu.Unlock()
		}
	}
}

// checkBolt opens the data file while no process holds it and checks every
// page: the crash left a consistent file.
func (c *crash) checkBolt(when string) {
	c.t.Helper()
	db, err := bolt.Open(c.dbPath, 0o600, &bolt.Options{Timeout: 10 * time.Second, ReadOnly: true})
	if err != nil {
		c.t.Fatalf("%s: bbolt does not open: %v", when, err)
	}
	defer db.Close()
	var problems []string
	_ = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			problems = append(problems, err.Error())
		}
		return nil
	})
	if len(problems) > 0 {
		c.t.Fatalf("%s: bbolt check: %s", when, strings.Join(problems, "; "))
	}
}

// afterRestart runs the checks that hold right after each restart.
func (c *crash) afterRestart() {
	t := c.t
	t.Helper()
	ctx := context.Background()
	run := c.b.Starts

	// Start marks what was running INTERRUPTED before the server listens, and
	// starts what was approved but not started (no driver call yet): so no
	// execution the driver acted for before this start may be APPROVED or
	// EXECUTING now.
	before := c.journalExecsBefore(c.runStart[run])
	for _, st := range []string{"APPROVED", "EXECUTING"} {
		xs, err := c.api.List(ctx, st, "")
		if err != nil {
			t.Fatalf("restart %d: %v", run-1, err)
		}
		for _, x := range xs {
			if before[x.ID] {
				t.Errorf("restart %d: execution %s (%s) acted before the kill and is still %s: it should be INTERRUPTED", run-1, x.ID, x.Runbook, st)
			}
		}
	}
	xs, err := c.api.List(ctx, "INTERRUPTED", "")
	if err != nil {
		t.Fatalf("restart %d: %v", run-1, err)
	}
	for _, x := range xs {
		c.mu.Lock()
		_, known := c.interruptedAt[x.ID]
		if !known {
			c.interruptedAt[x.ID] = run
		}
		c.mu.Unlock()
		if known {
			continue
		}
		var ex harness.Execution
		if err := c.api.GetJSON(ctx, "/v1/executions/"+url.PathEscape(x.ID), &ex); err != nil {
			t.Errorf("interrupted execution %s: %v", x.ID, err)
			continue
		}
		if !slices.ContainsFunc(ex.Audit, func(r harness.AuditRecord) bool {
			return r.To == "INTERRUPTED" && strings.Contains(r.Reason, "restarted while")
		}) {
			t.Errorf("interrupted execution %s: no INTERRUPTED record with the reason in its audit trail: %+v", x.ID, ex.Audit)
		}
	}

	// Everything answered 2xx by the process just killed, and a sample of what
	// earlier ones answered, is still there.
	c.mu.Lock()
	recent := slices.Clone(c.events[c.checked:])
	c.checked = len(c.events)
	var older []acceptedEvent
	for range min(100, len(c.events)-len(recent)) {
		older = append(older, c.events[c.rng.IntN(len(c.events)-len(recent))])
	}
	c.mu.Unlock()
	c.checkEvents(ctx, append(recent, older...), false)

	c.readJournal()
	c.readLog()
}

// checkEvents GETs each event (and its plan) in parallel and compares.
// withState returns nothing; the plan GET proves it did not vanish.
func (c *crash) checkEvents(ctx context.Context, evs []acceptedEvent, final bool) {
	t := c.t
	var wg sync.WaitGroup
	ch := make(chan acceptedEvent)
	for range 8 {
		wg.Go(func() {
			for e := range ch {
				var rec struct {
					PlanID   string `json:"plan_id"`
					Decision string `json:"decision"`
				}
				if err := c.api.GetJSON(ctx, "/v1/events/"+url.PathEscape(e.id), &rec); err != nil {
					t.Errorf("event %s (accepted in run %d) lost: %v", e.id, e.run, err)
					continue
				}
				if rec.PlanID != e.plan {
					t.Errorf("event %s: plan %q, answered %q", e.id, rec.PlanID, e.plan)
				}
				if e.plan == "" || final {
					continue // the final pass reads every plan itself
				}
				var ex harness.Execution
				if err := c.api.GetJSON(ctx, "/v1/executions/"+url.PathEscape(e.plan), &ex); err != nil {
					t.Errorf("plan %s of event %s vanished: %v", e.plan, e.id, err)
				}
			}
		})
	}
	for _, e := range evs {
		ch <- e
	}
	close(ch)
	wg.Wait()
}

type journalLine struct {
	Op        string `json:"op"`
	Execution string `json:"execution"`
	Action    int    `json:"action"`
	Type      string `json:"type"`
	Target    string `json:"target"`
}

// journalExecsBefore lists the executions the journal names in its first
// size bytes (what runs before a start did).
func (c *crash) journalExecsBefore(size int64) map[string]bool {
	c.t.Helper()
	b, err := os.ReadFile(c.journalPath)
	if err != nil && !os.IsNotExist(err) {
		c.t.Fatal(err)
	}
	b = b[:min(int64(len(b)), size)]
	out := map[string]bool{}
	for _, line := range bytes.Split(b, []byte("\n")) {
		var l journalLine
		if len(line) > 0 && json.Unmarshal(line, &l) == nil {
			out[l.Execution] = true
		}
	}
	return out
}

// readJournal checks the journal lines written since the last read: per
// execution and action at most one apply, an undo only after its apply and
// at most once, and no call for an execution once a start marked it
// INTERRUPTED (it is never re-run on its own).
func (c *crash) readJournal() {
	t := c.t
	f, err := os.Open(c.journalPath)
	if os.IsNotExist(err) {
		return
	} else if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(c.journalOff, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	off := c.journalOff
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break // a line being written: read it next time
		}
		line := b[:i]
		b = b[i+1:]
		lineOff := off
		off += int64(i + 1)
		run := 0
		for r := len(c.runStart) - 1; r >= 1; r-- {
			if lineOff >= c.runStart[r] {
				run = r
				break
			}
		}
		var l journalLine
		if err := json.Unmarshal(line, &l); err != nil || l.Execution == "" || (l.Op != "apply" && l.Op != "undo") {
			t.Errorf("journal offset %d: bad line %q (%v)", lineOff, line, err)
			continue
		}
		k := jkey{l.Execution, l.Action}
		c.journalExecs[l.Execution] = true
		if r, ok := c.interruptedAt[l.Execution]; ok && run >= r {
			t.Errorf("journal: %s of execution %s action %d in run %d, after start %d marked it INTERRUPTED", l.Op, l.Execution, l.Action, run, r)
		}
		switch l.Op {
		case "apply":
			c.journalApplies++
			if c.applies[k]++; c.applies[k] > 1 {
				t.Errorf("journal: execution %s action %d (%s %s) applied %d times (run %d)", l.Execution, l.Action, l.Type, l.Target, c.applies[k], run)
			}
		case "undo":
			if c.applies[k] == 0 {
				t.Errorf("journal: execution %s action %d undone before any apply (run %d)", l.Execution, l.Action, run)
			}
			if c.undos[k]++; c.undos[k] > 1 {
				t.Errorf("journal: execution %s action %d undone %d times (run %d)", l.Execution, l.Action, c.undos[k], run)
			}
		}
	}
	c.journalOff = off
}

// drain waits (polling, with a deadline) until the outbox is empty, and
// reports how long the courier took to deliver the backlog the loop left.
func (c *crash) drain() {
	t := c.t
	ctx := context.Background()
	depth := func() float64 {
		m, err := c.api.Metrics(ctx)
		if err != nil {
			t.Fatalf("final: %v", err)
		}
		return m["recoverbot_outbox_depth"]
	}
	start, logStart := time.Now(), harness.FileSize(c.b.LogPath)
	first := depth()
	deadline := start.Add(8 * time.Minute)
	for d := first; d != 0; d = depth() {
		if time.Now().After(deadline) {
			t.Fatalf("final: the outbox still holds %.0f notifications after 8 minutes", d)
		}
		time.Sleep(500 * time.Millisecond)
	}
	took := time.Since(start)
	b, _ := os.ReadFile(c.b.LogPath)
	delivered := 0
	if int64(len(b)) > logStart {
		delivered = bytes.Count(b[logStart:], []byte("component=notify"))
	}
	c.mu.Lock()
	c.outbox = fmt.Sprintf("after the loop the courier delivered %d notifications in %s (%.0f/s) until the outbox was empty; recoverbot_outbox_depth read %.0f when it began",
		delivered, took.Round(100*time.Millisecond), float64(delivered)/max(took.Seconds(), 0.001), first)
	c.mu.Unlock()
}

var restartedLine = regexp.MustCompile(`restarted while.* plan=(\S+)`)

// readLog collects the plan ids of "restarted while" notifications the bot
// logged since the last read (offline mode logs every notification).
func (c *crash) readLog() {
	f, err := os.Open(c.b.LogPath)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(c.logOff, io.SeekStart); err != nil {
		c.t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		c.t.Fatal(err)
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		b = nil
	}
	c.logOff += int64(len(b))
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range restartedLine.FindAllSubmatch(b, -1) {
		c.reportedRestart[strings.Trim(string(m[1]), `"`)] = true
	}
}

// final lets the last process run until every timer has fired, then checks
// everything ever accepted, every plan's final state against the journal, and
// that every interruption was reported.
func (c *crash) final() {
	t := c.t
	ctx := context.Background()
	// Timers fire after the restarts: approval deadlines (10s) expire what
	// nobody approved, time-boxed actions (2s) are rolled back.
	waiting := func() []string {
		var out []string
		for _, q := range [][2]string{{"PENDING_APPROVAL", ""}, {"APPROVED", ""}, {"EXECUTING", ""}, {"ROLLING_BACK", ""},
			{"SUCCEEDED", "crash-breaker"}, {"SUCCEEDED", "crash-approval"}} {
			xs, err := c.api.List(ctx, q[0], q[1])
			if err != nil {
				t.Fatalf("final: %v", err)
			}
			for _, x := range xs {
				out = append(out, x.ID+" "+x.Runbook+" "+x.State)
			}
		}
		return out
	}
	deadline := time.Now().Add(3 * time.Minute)
	for left := waiting(); len(left) > 0; left = waiting() {
		if time.Now().After(deadline) {
			t.Fatalf("final: after 3 minutes %d execution(s) still wait for a timer, e.g. %v", len(left), left[:min(5, len(left))])
		}
		time.Sleep(250 * time.Millisecond)
	}

	c.mu.Lock()
	evs := slices.Clone(c.events)
	c.mu.Unlock()
	c.checkEvents(ctx, evs, true)

	// Every plan: still there, and a plan that never ran has no driver call.
	c.readJournal()
	c.mu.Lock()
	ids := make([]string, 0, len(c.plans)+len(c.journalExecs))
	for id := range c.plans {
		ids = append(ids, id)
	}
	for id := range c.journalExecs {
		if c.plans[id] == nil {
			ids = append(ids, id) // a plan whose answer the kill cut off
		}
	}
	c.mu.Unlock()
	states := map[string]string{}
	var smu sync.Mutex
	var wg sync.WaitGroup
	ch := make(chan string)
	for range 8 {
		wg.Go(func() {
			for id := range ch {
				var ex harness.Execution
				if err := c.api.GetJSON(ctx, "/v1/executions/"+url.PathEscape(id), &ex); err != nil {
					t.Errorf("final: execution %s vanished: %v", id, err)
					continue
				}
				smu.Lock()
				states[id] = ex.Execution.State
				smu.Unlock()
			}
		})
	}
	for _, id := range ids {
		ch <- id
	}
	close(ch)
	wg.Wait()

	c.mu.Lock()
	applied := map[string]int{} // execution → actions applied
	for k, n := range c.applies {
		applied[k.exec] += n
	}
	for id, st := range states {
		switch st {
		case "EXPIRED", "REJECTED", "CANCELLED", "SUPPRESSED", "DRY_RUN":
			if applied[id] > 0 {
				t.Errorf("final: execution %s is %s but the driver applied %d of its actions", id, st, applied[id])
			}
		}
		if p := c.plans[id]; p != nil {
			switch st {
			case "EXPIRED":
				c.tally.expired++
			case "ROLLED_BACK":
				c.tally.reverted++
			}
			if p.decision == "approval" && !p.approve && st != "EXPIRED" {
				t.Errorf("final: plan %s was never approved but is %s, want EXPIRED", id, st)
			}
		}
	}
	c.mu.Unlock()

	// Every interruption was reported in its thread (here: the log). The
	// report is written with the INTERRUPTED move, in the outbox, which one
	// courier delivers in order: wait until it is empty.
	c.drain()
	deadline = time.Now().Add(30 * time.Second)
	for {
		c.readLog()
		c.mu.Lock()
		var missing []string
		for id := range c.interruptedAt {
			if !c.reportedRestart[id] {
				missing = append(missing, id)
			}
		}
		c.mu.Unlock()
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("final: %d INTERRUPTED execution(s) never reported (no \"restarted while\" notification in the log), e.g. %v", len(missing), missing[:min(5, len(missing))])
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.interruptedAt) == 0 || c.tally.expired == 0 || c.tally.reverted == 0 {
		t.Errorf("final: the scenario did not exercise everything (interrupted %d, expired %d, reverted %d): raise the load or the crash count",
			len(c.interruptedAt), c.tally.expired, c.tally.reverted)
	}
}
