package bot

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/internal/slacktest"
	"github.com/recoverbot/recoverbot/recovery"
)

// ackProbe looks at the bot's store each time the Slack server receives an
// ack, before the server records it (slacktest.WithOnAck): what it finds is
// what the bot had committed when it acknowledged. No timing is involved:
// the ack waits in the server while look runs.
type ackProbe struct {
	acks chan slacktest.Ack
	cont chan struct{}
	done chan struct{}

	mu   sync.Mutex
	seen map[string]string // envelope id → what look found
}

func newAckProbe() *ackProbe {
	return &ackProbe{acks: make(chan slacktest.Ack), cont: make(chan struct{}), done: make(chan struct{}), seen: map[string]string{}}
}

func (p *ackProbe) hook(a slacktest.Ack) {
	select {
	case p.acks <- a:
	case <-p.done:
		return
	}
	select {
	case <-p.cont:
	case <-p.done:
	}
}

// watch runs look for every ack from now on. Call it after the harness is
// built: its cleanup then runs before the server's, releasing the hook.
func (p *ackProbe) watch(t *testing.T, look func(slacktest.Ack) string) {
	t.Cleanup(func() { close(p.done) })
	go func() {
		for {
			select {
			case a := <-p.acks:
				got := look(a)
				p.mu.Lock()
				p.seen[a.EnvelopeID] = got
				p.mu.Unlock()
				select {
				case p.cont <- struct{}{}:
				case <-p.done:
					return
				}
			case <-p.done:
				return
			}
		}
	}()
}

func (p *ackProbe) at(envelopeID string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[envelopeID]
}

// auditSummary is the audit trail of a plan as "actor from→to reason"
// lines.
func auditSummary(recs []recovery.AuditRecord) string {
	var b strings.Builder
	for _, r := range recs {
		b.WriteString(r.Actor + " " + string(r.From) + "→" + string(r.To) + " " + r.Reason + "\n")
	}
	return b.String()
}

func approvals(recs []recovery.AuditRecord) int {
	n := 0
	for _, r := range recs {
		if r.To == recovery.Approved {
			n++
		}
	}
	return n
}

// A click and a slash command are acknowledged only once their decision is
// in the store: at the moment the approval's ack reaches Slack, the plan's
// audit already has the approval; a refused click's ack finds the refusal;
// /recover pause's ack finds the pause flag persisted.
func TestSlackAckAfterDecisionCommitted(t *testing.T) {
	p := newAckProbe()
	h := newSlackHarness(t, harnessConfig{serverOpts: []slacktest.Option{slacktest.WithOnAck(p.hook)}})
	id, root := h.pending(memoryLeak())
	approve := buttonValue(t, root, commands.ActionApprove)
	p.watch(t, func(a slacktest.Ack) string {
		if a.Type == "slash_commands" {
			v, err := h.db.Setting(h.ctx, "paused")
			if err != nil {
				return "paused: " + err.Error()
			}
			return "paused: " + string(v)
		}
		recs, err := h.db.Audit(h.ctx, id)
		if err != nil {
			return err.Error()
		}
		return auditSummary(recs)
	})

	t.Run("a refused click is acked after its refusal is audited", func(t *testing.T) {
		c := h.click(bystander, incident, root.TS, commands.ActionApprove, approve)
		got := p.at(c)
		if !strings.Contains(got, "slack:U2 → refused: approve: U2 is not an approver") {
			t.Errorf("audit when the refused click was acked:\n%s\nwant the refusal recorded", got)
		}
		if r := h.nextEphemeral(bystander, incident, 0, "refused click"); r.Text != "You are not an approver for restart-pod-memory-leak." {
			t.Errorf("reply = %q", r.Text)
		}
	})

	t.Run("an approval is acked after APPROVED is committed", func(t *testing.T) {
		c := h.click(approver, incident, root.TS, commands.ActionApprove, approve)
		got := p.at(c)
		if !strings.Contains(got, "slack:U1 PENDING_APPROVAL→APPROVED") {
			t.Errorf("audit when the approval was acked:\n%s\nwant PENDING_APPROVAL→APPROVED by slack:U1", got)
		}
		h.rootShows(root.TS, "Recovery succeeded")
		h.must(h.eng.Idle(h.ctx), "idle")
	})

	t.Run("/recover pause is acked after the pause is persisted", func(t *testing.T) {
		id := h.srv.SlashCommand(approver, incident, "/recover", "pause")
		_, err := h.srv.WaitAck(h.ctx, id)
		h.must(err, "ack of /recover pause")
		if got := p.at(id); got != "paused: true" {
			t.Errorf("store when /recover pause was acked: %q, want paused: true", got)
		}
	})
}

// The bot dies after committing an approval but before Slack reads the
// ack: the ack is lost with its socket, the bot is stopped, and a new one
// on the same database reconnects. Slack redelivers the click
// (retry_attempt 1); the new bot answers it from the store — already
// approved, nothing more done (the refusal audited) — and acks it.
func TestSlackAckLostAfterCommitRedeliveredOnce(t *testing.T) {
	dbPath := t.TempDir() + "/ack.db"
	h1 := newSlackHarness(t, harnessConfig{dbPath: dbPath})
	id, root := h1.pending(memoryLeak())
	approve := buttonValue(t, root, commands.ActionApprove)
	h1.srv.LoseNextAck("interactive")
	click := h1.srv.Click(approver, incident, root.TS, commands.ActionApprove, commands.BlockApproval, approve)
	h1.waitFor("the approval's ack to be lost", func(s *slacktest.Server) bool { return slices.Contains(s.LostAcks(), click) })
	h1.close()

	h2 := newSlackHarness(t, harnessConfig{dbPath: dbPath, srv: h1.srv})
	before := len(h2.srv.Ephemerals(incident, approver))
	if got := h2.srv.RedeliverUnacked(); !slices.Equal(got, []string{click}) {
		t.Fatalf("unacked envelopes = %q, want only the click %s", got, click)
	}
	_, err := h2.srv.WaitAck(h2.ctx, click)
	h2.must(err, "ack of the redelivered click")
	got := h2.nextEphemeral(approver, incident, before, "redelivered click")
	if !strings.Contains(got.Text, "was already approved by <@U1>: it runs once, nothing more was done") {
		t.Errorf("reply to the redelivered click = %q", got.Text)
	}
	h2.must(h2.eng.Idle(h2.ctx), "idle")
	// The late click is audited like any click the state machine refused.
	if recs := h2.audit(id); approvals(recs) != 1 || len(h2.refusals(id)) != 1 || !strings.Contains(h2.refusals(id)[0], "not PENDING_APPROVAL") {
		t.Errorf("audit after the redelivery:\n%swant one approval, and the redelivery refused by the state machine", auditSummary(recs))
	}
	if n := h2.applies(); n != 0 {
		t.Errorf("the new bot applied %d actions for a click it had already decided", n)
	}
	acks := h2.srv.AckLog()
	if len(acks) == 0 || acks[len(acks)-1].EnvelopeID != click || acks[len(acks)-1].Attempt != 1 {
		t.Errorf("last ack = %+v, want the click's redelivery (attempt 1)", acks[len(acks)-1:])
	}
}

// The bot dies before deciding a click (Slack sent it into a socket that
// died; nothing reached the store): Slack redelivers it to the new bot,
// which decides it normally — approved once, run once.
func TestSlackClickLostBeforeCommitDecidedOnRedelivery(t *testing.T) {
	dbPath := t.TempDir() + "/ack.db"
	h1 := newSlackHarness(t, harnessConfig{dbPath: dbPath})
	id, root := h1.pending(memoryLeak())
	approve := buttonValue(t, root, commands.ActionApprove)
	h1.srv.LoseDeliveries(true)
	click := h1.srv.Click(approver, incident, root.TS, commands.ActionApprove, commands.BlockApproval, approve)
	h1.close()
	h1.srv.LoseDeliveries(false)

	h2 := newSlackHarness(t, harnessConfig{dbPath: dbPath, srv: h1.srv})
	if x, err := h2.db.Execution(h2.ctx, id); err != nil || x.State != recovery.PendingApproval {
		t.Fatalf("state before the redelivery = %s (%v), want PENDING_APPROVAL", x.State, err)
	}
	if got := h2.srv.RedeliverUnacked(); !slices.Equal(got, []string{click}) {
		t.Fatalf("unacked envelopes = %q, want only the click %s", got, click)
	}
	_, err := h2.srv.WaitAck(h2.ctx, click)
	h2.must(err, "ack of the redelivered click")
	// Stopping h1 may cut the root's post after Slack stored it; the new
	// bot then posts the root again (delivery is at least once), so look
	// for the outcome on any of the plan's messages.
	h2.waitFor("the plan's message to show the outcome", func(s *slacktest.Server) bool {
		for _, m := range s.Messages(incident) {
			if strings.Contains(m.Text, id) && strings.Contains(m.Text, "Recovery Succeeded") {
				return true
			}
		}
		return false
	})
	h2.must(h2.eng.Idle(h2.ctx), "idle")
	if recs := h2.audit(id); approvals(recs) != 1 || !strings.Contains(auditSummary(recs), "slack:U1 PENDING_APPROVAL→APPROVED") {
		t.Errorf("audit after the redelivery:\n%swant one approval by slack:U1", auditSummary(recs))
	}
	if n := h2.applies(); n != 1 {
		t.Errorf("applies = %d, want 1", n)
	}
	if len(h2.srv.Ephemerals(incident, approver)) != 0 {
		t.Errorf("the approver was told %q, want no private reply to a successful approval", h2.srv.Ephemerals(incident, approver)[0].Text)
	}
}

// Events API envelopes stay on slacker's path: an app_mention reaches the
// Router through slacker (over the in-memory socket), which acks it, and
// its ack goes out on the real socket.
func TestSlackMentionGoesThroughSlacker(t *testing.T) {
	h := newSlackHarness(t, harnessConfig{})
	env, _ := h.srv.AppMention(approver, incident, "recover help")
	_, err := h.srv.WaitAck(h.ctx, env)
	h.must(err, "ack of the mention")
	got := h.nextEphemeral(approver, incident, 0, "recover help")
	if !strings.Contains(got.Text, "/recover <sub-command>") {
		t.Errorf("reply to the mention = %q", got.Text)
	}
}

// fencingStore refuses the engine's state moves while fenced is set, as an
// etcd store does once another replica leads, and says so on refused.
type fencingStore struct {
	recovery.Store
	fenced  atomic.Bool
	refused chan struct{}
}

func (f *fencingStore) Transition(ctx context.Context, t recovery.Transition) (recovery.Execution, error) {
	if f.fenced.Load() {
		select {
		case f.refused <- struct{}{}:
		default:
		}
		return recovery.Execution{}, fmt.Errorf("transition %s: %w", t.ID, recovery.ErrFenced)
	}
	return f.Store.Transition(ctx, t)
}

// A click whose decision this replica could not commit (its write fenced:
// another replica leads) is not acknowledged and not answered: Slack delivers
// it again, and the redelivery is decided afresh, by the store: approved
// once, run once. (A deposed leader used to ack it with "Internal error",
// and the click was lost.)
func TestSlackClickFencedIsLeftForRedelivery(t *testing.T) {
	fs := &fencingStore{refused: make(chan struct{}, 1)}
	h := newSlackHarness(t, harnessConfig{store: func(s recovery.Store) recovery.Store { fs.Store = s; return fs }})
	id, root := h.pending(memoryLeak())
	approve := buttonValue(t, root, commands.ActionApprove)

	fs.fenced.Store(true)
	click := h.srv.Click(approver, incident, root.TS, commands.ActionApprove, commands.BlockApproval, approve)
	select {
	case <-fs.refused:
	case <-h.ctx.Done():
		t.Fatal("the click's approval never reached the store")
	}
	h.must(h.sl.Wait(h.ctx), "the click's handler")
	if acks := h.srv.Acks(click); len(acks) != 0 {
		t.Fatalf("the fenced click was acknowledged %d time(s), want none", len(acks))
	}
	if n := len(h.srv.Ephemerals(incident, approver)); n != 0 {
		t.Errorf("the approver was told %q, want nothing (the decision is not known here)", h.srv.Ephemerals(incident, approver)[0].Text)
	}
	if x, err := h.db.Execution(h.ctx, id); err != nil || x.State != recovery.PendingApproval {
		t.Fatalf("after the fenced click: %s (%v), want PENDING_APPROVAL", x.State, err)
	}

	fs.fenced.Store(false)
	if got := h.srv.RedeliverUnacked(); !slices.Equal(got, []string{click}) {
		t.Fatalf("unacked envelopes = %q, want only the click %s", got, click)
	}
	_, err := h.srv.WaitAck(h.ctx, click)
	h.must(err, "ack of the redelivered click")
	h.must(h.eng.Idle(h.ctx), "idle")
	if recs := h.audit(id); approvals(recs) != 1 || !strings.Contains(auditSummary(recs), "slack:U1 PENDING_APPROVAL→APPROVED") {
		t.Errorf("audit after the redelivery:\n%swant one approval by slack:U1", auditSummary(recs))
	}
	if n := h.applies(); n != 1 {
		t.Errorf("applies = %d, want 1", n)
	}
}
