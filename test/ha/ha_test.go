package ha

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/internal/slacktest"
	"github.com/recoverbot/recoverbot/test/harness"
)

// The replicas' HA settings (bot/config.go owns them; named once here)
// and their identity (bot.Identity: POD_NAME, as the downward API sets it).
const (
	envStore     = "RECOVERBOT_STORE"
	envEndpoints = "RECOVERBOT_ETCD_ENDPOINTS"
	envPrefix    = "RECOVERBOT_ETCD_PREFIX"
	envTTL       = "RECOVERBOT_LEADER_TTL"
	envReplica   = "POD_NAME" // the replica's identity in the election and /readyz
)

// The scenario's shape: the minimum counts of each fault, the load,
// and the bound on a takeover.
const (
	replicas     = 3
	leaderKills  = 30
	leaderPauses = 10
	etcdKills    = 5
	eventRate    = 100             // events per second, all replicas together
	leaderTTL    = 3 * time.Second // etcd elects its own leader in 1-2 s: a follower's keep-alive outlives that
	maxTakeover  = 15 * time.Second
	// A person clicks Approve once the plan's message is in the channel,
	// up to clickUntil after the plan was answered (its deadline,
	// RECOVERBOT_APPROVAL_TIMEOUT, is 15 s after it was created), and gives
	// a click Slack's 3 s (ackWindow) before clicking again. At least
	// minClicks plans must get an acknowledged click, or clicks were not
	// exercised.
	clickUntil = 10 * time.Second
	ackWindow  = 3 * time.Second
	minClicks  = 20
	prefix     = "/recoverbot-ha/"
	// adminToken is the operator's admin token; it names the Slack approver,
	// who alone may approve (RECOVERBOT_ADMIN_TOKENS).
	adminToken = "ha-test-operator-token"
	channel    = "C0HAINCIDENT"
	approver   = "U0HAALICE"
)

// TestHA runs three recoverbot replicas (the binary built from this tree, log
// driver, a journal each) on a 3-member etcd cluster and a Slack-compatible
// server that hands each envelope to one random open socket, under ~100
// events/s sent to random replicas and retried on 5xx and connection errors
// as Alertmanager does, with approvals by click and through the admin API,
// pending deadlines and time-boxed actions. Meanwhile it kill -9s the leader
// 30 times, SIGSTOPs it past its lease 10 times (then SIGCONT: it must exit
// non-zero), and kill -9s etcd's own leader 5 times, in a random order
// (RECOVERBOT_HA_SEED draws it again). Then it checks:
//
//   - across all journals no driver call (execution, action, op) was made
//     twice, and none by a replica after its term had ended;
//   - every event and every click that was acknowledged is in the store;
//   - the etcd history shows each leader's writes in one run, within its
//     own leadership;
//   - at the end nothing is left waiting, APPROVED or EXECUTING, every
//     time-boxed action applied was reverted exactly once, and the outbox
//     is empty;
//   - takeover (kill → first 2xx from the new leader): p50/p95/max reported,
//     max ≤ 15 s.
func TestHA(t *testing.T) {
	requireHA(t)
	seed := uint64(harness.EnvInt(t, "RECOVERBOT_HA_SEED", int(time.Now().UnixNano()&0x7fffffff)))
	t.Logf("seed %d (RECOVERBOT_HA_SEED=%d draws the same faults and load again)", seed, seed)
	began := time.Now()
	h := newHA(t, seed)
	defer func() {
		if t.Failed() {
			for _, r := range h.reps {
				t.Logf("%s log tail:\n%s", r.name, harness.Tail(r.bot.LogPath, 40))
			}
		}
	}()
	for _, r := range h.reps {
		r.bot.Start(t)
	}
	if _, err := h.waitLeader(60 * time.Second); err != nil {
		t.Fatal(err)
	}

	ctx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { h.poll(ctx) })
	h.startLoad(ctx, &wg)

	faults := slices.Repeat([]string{"kill"}, leaderKills)
	faults = append(faults, slices.Repeat([]string{"pause"}, leaderPauses)...)
	faults = append(faults, slices.Repeat([]string{"etcd"}, etcdKills)...)
	h.rng.Shuffle(len(faults), func(i, j int) { faults[i], faults[j] = faults[j], faults[i] })
	// A failed check does not end the scenario: every fault is made and
	// every final check runs, so a run reports the figures of each.
	for n, f := range faults {
		h.settle(time.Duration(1000+h.rng.IntN(2000)) * time.Millisecond)
		h.t.Logf("fault %d/%d: %s", n+1, len(faults), f)
		switch f {
		case "kill":
			h.killLeader(n)
		case "pause":
			h.pauseLeader(n)
		case "etcd":
			h.killEtcdLeader(n)
		}
		h.revive(-1)
	}
	h.settle(3 * time.Second)
	stopLoad()
	wg.Wait()
	h.final()
	h.report(time.Since(began))
}

// replica is one recoverbot process, restarted after each fault on the same
// journal and address.
type replica struct {
	name    string
	bot     *harness.Bot
	api     *harness.API
	journal string
	paused  bool // SIGSTOPped; only the fault loop reads and writes it
}

// ha is the scenario's state. The fault loop owns the processes; the load,
// the approvers and the poller only send requests and record answers.
type ha struct {
	t     *testing.T
	rng   *rand.Rand // the fault loop's; workers derive their own
	etcd  *cluster
	slack *slacktest.Server
	reps  []*replica

	mu           sync.Mutex
	changed      chan struct{}        // closed and replaced on every 2xx
	acks         []ack                // every 2xx to an event, in answer order
	events       map[string]string    // acknowledged event id → its plan id
	plans        map[string]*plan     // plan id → what was answered and decided for it
	clicks       map[string]string    // envelope id of every approve click sent → its plan id
	clickAcks    clickCount           // what the final check found of the clicks
	buttons      map[string]button    // plan id → the Approve button of its message (followChannel)
	seenAt       map[string]time.Time // plan id → when followChannel first saw its message
	buttonReport string               // when the click plans' buttons reached the channel
	posted       chan struct{}        // closed and replaced when buttons grows
	approved     map[string]bool      // plan ids approved through the admin API (200)
	lostBy       map[int64]time.Time  // term → by when its election key was seen gone
	seenTerms    map[int64]bool       // terms the poller saw live
	takeovers    []time.Duration      // kill -9 of the leader → first 2xx from another
	pauses       []time.Duration      // SIGSTOP of the leader → first 2xx from another
	exits        []string             // replica exits the test did not cause, with their code
	refused      map[int]int          // non-2xx answers to events, by status
	problems     map[string][]string  // failed checks by kind, reported at the end
	retries      int                  // event sends tried again after a 5xx or no answer
	fates        map[string]int       // what the scenario chose for each approval plan
	exitCodes    map[string][]int     // replica → exit codes after SIGCONT
	unknown      int                  // applies the store has no outcome for (in flight at a fault)
	drain        string               // how the outbox drained after the faults
	reverted     int                  // time-boxed actions reverted exactly once
	undosHeld    int                  // actions held for a person: an undo of their execution has no outcome
	counts       struct{ calls, writes int }
}

type ack struct {
	at      time.Time
	replica int
}

type plan struct {
	id, event, decision string
	at                  time.Time
	fate                string // "click", "admin" or "expire" for approval plans
}

func newHA(t *testing.T, seed uint64) *ha {
	h := &ha{t: t, rng: rand.New(rand.NewPCG(seed, 0x4a)), changed: make(chan struct{}),
		events: map[string]string{}, plans: map[string]*plan{}, clicks: map[string]string{}, buttons: map[string]button{}, seenAt: map[string]time.Time{}, posted: make(chan struct{}),
		approved: map[string]bool{}, lostBy: map[int64]time.Time{}, seenTerms: map[int64]bool{},
		refused: map[int]int{}, problems: map[string][]string{}, fates: map[string]int{},
		exitCodes: map[string][]int{}}
	h.etcd = startCluster(t, 3)
	h.slack = slacktest.New(slacktest.WithRandomDelivery())
	t.Cleanup(h.slack.Close)
	h.slack.AddUser(approver, "alice")
	h.slack.AddChannel(channel, "incidents")
	books, err := filepath.Abs(filepath.Join("testdata", "runbooks"))
	if err != nil {
		t.Fatal(err)
	}
	bin := harness.Binary(t)
	dir := t.TempDir()
	if keep := os.Getenv("RECOVERBOT_HA_KEEP"); keep != "" {
		// The replicas' logs and journals stay there for a post-mortem.
		dir = keep
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("replica logs and journals in %s (RECOVERBOT_HA_KEEP)", dir)
	}
	for i := range replicas {
		name := fmt.Sprintf("replica-%c", 'a'+i)
		addr := harness.FreeAddr(t)
		r := &replica{name: name, journal: filepath.Join(dir, name+".journal"), api: harness.NewAPI(addr, 64)}
		r.api.Token = adminToken
		r.bot = &harness.Bot{Bin: bin, Addr: addr, LogPath: filepath.Join(dir, name+".log"), Env: map[string]string{
			"RECOVERBOT_LISTEN":             addr,
			"RECOVERBOT_DATA":               filepath.Join(dir, name+".db"),
			"RECOVERBOT_MODE":               "full",
			"RECOVERBOT_DRIVERS":            "log",
			"RECOVERBOT_LOG_DRIVER_JOURNAL": r.journal,
			"RECOVERBOT_RUNBOOKS":           books,
			"RECOVERBOT_APPROVAL_TIMEOUT":   "15s",
			"RECOVERBOT_DEFAULT_COOLDOWN":   "5s",
			"RECOVERBOT_BLAST_MAX_AUTO":     "100000",
			"RECOVERBOT_BLAST_MAX_TARGETS":  "100000",
			"RECOVERBOT_SLACK_CHANNEL":      channel,
			"RECOVERBOT_SLACK_APPROVERS":    approver,
			"RECOVERBOT_ADMIN_TOKENS":       "operator:" + approver + "=" + adminToken,
			envStore:                        "etcd",
			envEndpoints:                    h.etcd.endpoints(),
			envPrefix:                       prefix,
			envTTL:                          leaderTTL.String(),
			envReplica:                      name,
			"SLACK_BOT_TOKEN":               h.slack.BotToken(),
			"SLACK_APP_TOKEN":               h.slack.AppToken(),
			"SLACK_API_URL":                 h.slack.APIURL(),
		},
			// A follower is up once it answers at all; /readyz names the leader.
			Ready: func(code int, _ []byte) bool { return code != 0 },
		}
		t.Cleanup(r.bot.Kill9)
		h.reps = append(h.reps, r)
	}
	return h
}

// problem records a failed check; the first few of each kind are logged at
// once, all of them counted in the report.
func (h *ha) problem(kind, format string, args ...any) {
	h.t.Helper()
	msg := fmt.Sprintf(format, args...)
	h.mu.Lock()
	h.problems[kind] = append(h.problems[kind], msg)
	n := len(h.problems[kind])
	h.mu.Unlock()
	if n <= 5 {
		h.t.Errorf("%s: %s", kind, msg)
	}
}

// settle lets the load run for d with no fault.
func (h *ha) settle(d time.Duration) { time.Sleep(d) }

// leader asks every running replica's /readyz who leads and returns the
// index of the replica all answers name; an error while they disagree or
// name none of the replicas.
func (h *ha) leader() (int, error) {
	named := map[int]int{}
	answers := 0
	for _, r := range h.reps {
		if !r.bot.Running() || r.paused {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, body, err := r.api.Do(ctx, "GET", "/readyz", nil)
		cancel()
		if err != nil {
			continue
		}
		answers++
		for j, o := range h.reps {
			if bytes.Contains(body, []byte(o.name)) {
				named[j]++
			}
		}
	}
	if answers == 0 || len(named) != 1 {
		return -1, fmt.Errorf("/readyz of %d replicas names %v", answers, named)
	}
	for j, n := range named {
		if n == answers && h.reps[j].bot.Running() && !h.reps[j].paused {
			return j, nil
		}
	}
	return -1, fmt.Errorf("/readyz of %d replicas names %v, not a running replica", answers, named)
}

// waitLeader waits for a leader, restarting meanwhile any replica that went
// down (a deposed or fenced leader exits, and a supervisor restarts it).
func (h *ha) waitLeader(within time.Duration) (int, error) {
	deadline := time.Now().Add(within)
	for {
		h.revive(-1)
		i, err := h.leader()
		if err == nil {
			return i, nil
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("no leader within %s: %w", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// firstAckAfter waits until a replica other than except answers an event
// 2xx after since, and returns how long after since the first did.
// Meanwhile it restarts, every 500 ms, any replica but except that went
// down (revive), as Kubernetes would: a fault can take more than the one
// replica it was aimed at (an etcd leader's kill can cost every replica its
// lease), and with none running nothing would ever answer. (except, the
// killed leader, is restarted after the takeover: restarted at once, it
// could win the election again and the takeover would not be measured.)
func (h *ha) firstAckAfter(since time.Time, except int, within time.Duration) (time.Duration, bool) {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	supervise := time.NewTicker(500 * time.Millisecond)
	defer supervise.Stop()
	for {
		h.mu.Lock()
		changed := h.changed
		var first time.Time
		// Answers are appended about in time order (each takes the lock
		// right after its answer): look back a second before since.
		for i := len(h.acks) - 1; i >= 0 && h.acks[i].at.After(since.Add(-time.Second)); i-- {
			if a := h.acks[i]; a.at.After(since) && a.replica != except && (first.IsZero() || a.at.Before(first)) {
				first = a.at
			}
		}
		h.mu.Unlock()
		if !first.IsZero() {
			return first.Sub(since), true
		}
		select {
		case <-changed:
		case <-supervise.C:
			h.revive(except)
		case <-deadline.C:
			return within, false
		}
	}
}

// killLeader kill -9s the leader and measures the takeover.
func (h *ha) killLeader(n int) {
	l, err := h.waitLeader(60 * time.Second)
	if err != nil {
		h.t.Fatalf("fault %d: %v", n, err)
	}
	at := time.Now()
	h.reps[l].bot.Kill9()
	d, ok := h.firstAckAfter(at, l, 60*time.Second)
	if !ok {
		h.problem("takeover", "fault %d: no 2xx from another replica within 60s of the kill of %s", n, h.reps[l].name)
	}
	h.mu.Lock()
	h.takeovers = append(h.takeovers, d)
	h.mu.Unlock()
	h.t.Logf("  killed leader %s: takeover %s", h.reps[l].name, d.Round(time.Millisecond))
}

// pauseLeader SIGSTOPs the leader until another replica answers (its lease
// has run out then), SIGCONTs it, and expects it to notice it lost
// leadership and exit non-zero.
func (h *ha) pauseLeader(n int) {
	l, err := h.waitLeader(60 * time.Second)
	if err != nil {
		h.t.Fatalf("fault %d: %v", n, err)
	}
	r := h.reps[l]
	at := time.Now()
	if err := r.bot.Signal(syscall.SIGSTOP); err != nil {
		h.t.Fatal(err)
	}
	r.paused = true
	d, ok := h.firstAckAfter(at, l, 60*time.Second)
	if !ok {
		h.problem("takeover", "fault %d: no 2xx from another replica within 60s of the SIGSTOP of %s", n, r.name)
	}
	h.mu.Lock()
	h.pauses = append(h.pauses, d)
	h.mu.Unlock()
	h.t.Logf("  paused leader %s: takeover %s", r.name, d.Round(time.Millisecond))
	if err := r.bot.Signal(syscall.SIGCONT); err != nil {
		h.t.Fatal(err)
	}
	r.paused = false
	select {
	case <-r.bot.Exited():
		code := r.bot.ExitCode()
		h.mu.Lock()
		h.exitCodes[r.name] = append(h.exitCodes[r.name], code)
		h.mu.Unlock()
		if code <= 0 {
			h.problem("deposed leader", "fault %d: %s exited with code %d after SIGCONT, want non-zero", n, r.name, code)
		}
	case <-time.After(30 * time.Second):
		h.problem("deposed leader", "fault %d: %s still runs 30s after SIGCONT though another replica leads", n, r.name)
		r.bot.Kill9()
	}
	r.bot.Kill9() // reaps it (a no-op once exited)
}

// killEtcdLeader kill -9s etcd's raft leader, waits for the others to elect
// one and for the bot to answer again, then restarts the member.
func (h *ha) killEtcdLeader(n int) {
	e, err := h.etcd.waitLeader(60 * time.Second)
	if err != nil {
		h.t.Fatalf("fault %d: %v", n, err)
	}
	at := time.Now()
	h.etcd.kill9(e)
	if _, err := h.etcd.waitLeader(60 * time.Second); err != nil {
		h.problem("etcd", "fault %d: %v", n, err)
	}
	if _, ok := h.firstAckAfter(at, -1, 60*time.Second); !ok {
		h.problem("takeover", "fault %d: no event answered 2xx within 60s of the kill of etcd member %d", n, e)
	}
	h.etcd.restart(e)
}

// revive restarts every replica that is not running but skip (-1: none), as
// a supervisor (Kubernetes) would, and notes the exits the test did not
// cause.
func (h *ha) revive(skip int) {
	for i, r := range h.reps {
		if i == skip || r.bot.Running() {
			continue
		}
		select {
		case <-r.bot.Exited():
			// Pid is 0 once the test reaped the process itself (Kill9): a
			// kill or an expected exit after SIGCONT.
			if code := r.bot.ExitCode(); r.bot.Pid() != 0 {
				h.mu.Lock()
				h.exits = append(h.exits, fmt.Sprintf("%s exited %d at %s", r.name, code, time.Now().Format("15:04:05.000")))
				h.mu.Unlock()
				h.t.Logf("%s exited %d; log tail:\n%s", r.name, code, harness.Tail(r.bot.LogPath, 3))
			}
			r.bot.Kill9()
		default:
		}
		r.bot.Start(h.t)
	}
}

// poll watches the election keys every 100 ms: the first read that no longer
// shows a term's key bounds when that term ended (its lease expired or was
// revoked), for the check of calls made after it.
func (h *ha) poll(ctx context.Context) {
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		kvs, _, err := h.etcd.rangePrefix(rctx, prefix+"leader/")
		cancel()
		if err == nil {
			now := time.Now()
			live := map[int64]bool{}
			for _, k := range kvs {
				live[k.CreateRevision] = true
			}
			h.mu.Lock()
			for term := range h.seenTerms {
				if _, ok := h.lostBy[term]; !ok && !live[term] {
					h.lostBy[term] = now
				}
			}
			for term := range live {
				h.seenTerms[term] = true
			}
			h.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startLoad starts the event senders and the two approvers.
func (h *ha) startLoad(ctx context.Context, wg *sync.WaitGroup) {
	const workers = 10
	for w := range workers {
		rng := rand.New(rand.NewPCG(h.rng.Uint64(), uint64(w)))
		wg.Go(func() { h.send(ctx, w, time.Second*workers/eventRate, rng) })
	}
	arng := rand.New(rand.NewPCG(h.rng.Uint64(), 98))
	wg.Go(func() { h.approve(ctx, arng) })
	crng := rand.New(rand.NewPCG(h.rng.Uint64(), 99))
	wg.Go(func() { h.followChannel(ctx) })
	wg.Go(func() { h.click(ctx, crng) })
}

// post sends one request to a random replica and tries again, to another
// random one, on a 5xx or no answer, with a growing pause, as Alertmanager
// does with a webhook behind a Service; until a non-5xx answer or ctx ends
// (the answer is then 0). Only the fault loop restarts processes, so a
// paused or dead replica costs this sender time, as in production.
func (h *ha) post(ctx context.Context, rng *rand.Rand, path string, body []byte) (code int, out []byte, from int) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		i := rng.IntN(len(h.reps))
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		code, out, err := h.reps[i].api.Do(rctx, "POST", path, body)
		cancel()
		if err == nil && code/100 != 5 {
			return code, out, i
		}
		h.mu.Lock()
		h.retries++
		if err == nil {
			h.refused[code]++
		}
		h.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
	return 0, nil, -1
}

// send posts events at a steady pace, open loop: each event is delivered by
// its own goroutine (as Alertmanager retries each notification on its own),
// so a takeover delays the events in flight, never the ones after them. The
// storm is over six targets per runbook (most events fold into an open plan
// or its 5 s cooldown, so the plans, and what the courier posts to Slack for
// each, stay a few per second), with a unique id each.
func (h *ha) send(ctx context.Context, w int, every time.Duration, rng *rand.Rand) {
	var inflight sync.WaitGroup
	defer inflight.Wait()
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
		id := fmt.Sprintf("ha-w%02d-%06d", w, n)
		var typ, key string
		switch k := rng.IntN(100); {
		case k < 30:
			typ, key = "CIRCUIT_BREAKER_CANDIDATE", "upstream" // ha-breaker: auto, time-boxed
		case k < 45:
			typ, key = "RATE_LIMIT_BREACH", "client" // ha-approval: approval, time-boxed
		case k < 75:
			typ, key = "ERROR_RATE_SPIKE", "route" // ha-multi: auto, four steps
		default:
			typ, key = "LATENCY_ANOMALY", "upstream" // no runbook
		}
		target := fmt.Sprintf("%s-%02d", strings.ToLower(key), rng.IntN(6))
		body, _ := json.Marshal(map[string]any{"id": id, "type": typ, "severity": "WARNING", "confidence": 0.9,
			"summary": "HA test", "data": map[string]any{}, "context": map[string]any{key: target}})
		erng := rand.New(rand.NewPCG(rng.Uint64(), uint64(n)))
		fate := erng.IntN(100)
		inflight.Go(func() { h.deliver(ctx, id, body, fate, erng) })
	}
}

// deliver sends one event until a replica acknowledges it and records the
// answer. fate (0-99) decides what happens to a plan that needs approval.
func (h *ha) deliver(ctx context.Context, id string, body []byte, fate int, rng *rand.Rand) {
	// An event in flight when the load stops is still sent to the end; it
	// is given up after 90 s without a 2xx (a takeover takes less).
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 90*time.Second)
	code, out, from := h.post(pctx, rng, "/v1/events", body)
	cancel()
	var ans harness.Answer
	if code/100 != 2 || json.Unmarshal(out, &ans) != nil || ans.EventID != id {
		h.problem("intake", "POST /v1/events %s: %d %s, want 2xx with its event id", id, code, out)
		return
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.acks = append(h.acks, ack{at: now, replica: from})
	close(h.changed)
	h.changed = make(chan struct{})
	h.events[id] = ans.PlanID
	if p := h.plans[ans.PlanID]; ans.PlanID != "" && p == nil {
		p = &plan{id: ans.PlanID, event: id, decision: ans.Decision, at: now}
		if ans.Decision == "approval" {
			switch {
			case fate < 35:
				p.fate = "click"
			case fate < 70:
				p.fate = "admin"
			default:
				p.fate = "expire"
			}
			h.fates[p.fate]++
		}
		h.plans[p.id] = p
	}
}

// due lists the plans of a fate answered between from and to ago, not
// handled yet.
func (h *ha) due(fate string, from, to time.Duration, done map[string]bool) []*plan {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*plan
	for _, p := range h.plans {
		if p.fate == fate && !done[p.id] && now.Sub(p.at) >= from && now.Sub(p.at) < to {
			out = append(out, p)
		}
	}
	return out
}

// approve approves plans through the admin API (as `recoverbot approve`
// does) 0.5-3 s after they were answered, retried like any request.
func (h *ha) approve(ctx context.Context, rng *rand.Rand) {
	done := map[string]bool{}
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		for _, p := range h.due("admin", time.Duration(500+rng.IntN(2500))*time.Millisecond, time.Minute, done) {
			done[p.id] = true
			code, body, _ := h.post(ctx, rng, "/v1/executions/"+url.PathEscape(p.id)+"/approve", nil)
			switch code {
			case 200:
				h.mu.Lock()
				h.approved[p.id] = true
				h.mu.Unlock()
			case 0, 409: // the test ended; or an earlier send landed and its answer was lost
			default:
				h.problem("admin approval", "approve %s: %d %s, want 200 or 409", p.id, code, body)
			}
		}
	}
}

// click presses Approve on each click plan's message in Slack (clickPlan),
// from 0.5-2 s after the plan was answered; each plan is clicked by its own
// goroutine, as several people would, so an unanswered click does not hold
// up the others.
func (h *ha) click(ctx context.Context, rng *rand.Rand) {
	var clicking sync.WaitGroup
	defer clicking.Wait()
	started := map[string]bool{}
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		for _, p := range h.due("click", time.Duration(500+rng.IntN(1500))*time.Millisecond, clickUntil, started) {
			started[p.id] = true
			clicking.Go(func() { h.clickPlan(ctx, p) })
		}
	}
}

// clickPlan waits for the plan's message to be in the channel, then clicks
// Approve, until Slack sees a click acknowledged or clickUntil after the plan
// was answered. A click unacknowledged after ackWindow (an envelope that
// landed on a paused or dying leader's socket, which Slack hands one of the
// open sockets at random) is clicked again, as a person would after Slack's
// error. Every click sent is recorded: the final check reads from Slack's
// ack log which of them were acknowledged, however late.
func (h *ha) clickPlan(ctx context.Context, p *plan) {
	wctx, cancel := context.WithDeadline(ctx, p.at.Add(clickUntil))
	defer cancel()
	for {
		b, ok := h.button(wctx, p.id)
		if !ok {
			return // not posted in time (or the load ended): never clicked
		}
		id := h.slack.Click(approver, channel, b.ts, commands.ActionApprove, commands.BlockApproval, b.value)
		h.mu.Lock()
		h.clicks[id] = p.id
		h.mu.Unlock()
		actx, cancel := context.WithTimeout(wctx, ackWindow)
		_, err := h.slack.WaitAck(actx, id)
		cancel()
		if err == nil || wctx.Err() != nil {
			return
		}
	}
}

// button is an Approve button in the channel: its message's ts and its
// signed value.
type button struct{ ts, value string }

// button waits until the plan's message with its Approve button is in the
// channel, or ctx ends.
func (h *ha) button(ctx context.Context, planID string) (button, bool) {
	for {
		h.mu.Lock()
		b, ok := h.buttons[planID]
		posted := h.posted
		h.mu.Unlock()
		if ok {
			return b, true
		}
		select {
		case <-ctx.Done():
			return button{}, false
		case <-posted:
		}
	}
}

// followChannel reads the channel as a person's client does, every 100 ms
// the messages posted since it last looked, and indexes the Approve button
// of each plan message; it wakes clickPlan's waits when new ones appear.
func (h *ha) followChannel(ctx context.Context) {
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		found := map[string]button{}
		for _, m := range h.slack.MessagesAfter(channel, last) {
			last = m.TS
			var blocks []struct {
				Elements []struct {
					ActionID string `json:"action_id"`
					Value    string `json:"value"`
				} `json:"elements"`
			}
			if json.Unmarshal(m.Blocks, &blocks) != nil {
				continue
			}
			for _, b := range blocks {
				for _, e := range b.Elements {
					if id, _, ok := strings.Cut(e.Value, "."); ok && e.ActionID == commands.ActionApprove {
						found[id] = button{m.TS, e.Value}
					}
				}
			}
		}
		if len(found) == 0 {
			continue
		}
		h.mu.Lock()
		for id := range found {
			if _, ok := h.seenAt[id]; !ok {
				h.seenAt[id] = time.Now()
			}
		}
		maps.Copy(h.buttons, found)
		close(h.posted)
		h.posted = make(chan struct{})
		h.mu.Unlock()
	}
}
