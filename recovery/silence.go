package recovery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Silences while remediating (README "Silences while remediating"). While the
// bot works on an alert, Alertmanager would keep paging people for the
// incident being fixed; so an execution started for an Alertmanager alert
// silences that alert, and expires the silence when the bot's work ends.
//
// The engine owns when (this file): a silence is created in the background
// once EXECUTING is committed (run), and expired after any transition that
// leaves silenceHeld false (transition calls endSilence), and at start-up for
// an execution found holding one it will not resume. Its id is persisted on
// the execution (Execution.Silence), and the store keeps such an execution
// open (Execution.Open) until the silence is settled, so a restarted bot
// expires it. Its end is start + Config.SilenceMax: it never outlives that,
// even if the bot dies. Alertmanager being slow or down never delays or fails
// a remediation: the trail says "silence not created: …" and work goes on.
// The Silencer (recovery/amsilence) owns what: the matchers, the comment.

// SourceAlertmanager is Event.Source of an alert from Alertmanager's webhook:
// only those are silenced.
const SourceAlertmanager = "alertmanager"

// DefaultSilenceMax is how long a silence lasts at most by default: a
// remediation that runs longer than its verification window is already
// unusual, and people must hear about the alert again.
const DefaultSilenceMax = time.Hour

// silenceTimeout bounds each call to Alertmanager (its cause is
// errSilenceTimeout); silenceRetries are the waits before the next attempts
// to expire a silence. A create is not retried: the remediation is under way,
// and a late silence is worth little.
const silenceTimeout = 5 * time.Second

var (
	errSilenceTimeout = errors.New("no answer from Alertmanager within 5s")
	silenceRetries    = []time.Duration{time.Second, 3 * time.Second}
)

// Silencer creates and expires the silences (recovery/amsilence, over
// Alertmanager's API v2).
type Silencer interface {
	// Silence creates a silence of the alert x remediates (x.Event.Labels)
	// from startsAt (now) until endsAt and returns its id. An error says why
	// none was created (labels missing or unfit for a matcher, Alertmanager
	// refused or unreachable), as a sentence for the audit trail.
	Silence(ctx context.Context, x *Execution, startsAt, endsAt time.Time) (id string, err error)
	// Expire ends silence id now; one that already ended is not an error.
	Expire(ctx context.Context, id string) error
}

// SilenceRef is the silence an execution holds.
type SilenceRef struct {
	ID     string    `json:"id"`
	EndsAt time.Time `json:"ends_at"`
	// Settled says the bot is done with it: expired, or past EndsAt.
	Settled bool `json:"settled,omitempty"`
}

// pending says whether the silence still needs expiring.
func (s *SilenceRef) pending() bool { return s != nil && !s.Settled }

// Open says whether start-up must look at x again (Store.Open): a worker or a
// timer may still move it, a scheduled rollback is pending, or a silence it
// holds is not settled. The one owner of the store's open index.
func (x *Execution) Open() bool {
	if !x.State.Terminal() {
		return true
	}
	// A scheduled rollback (rollbackAfterMinutes, or the end of a time-boxed
	// action) must survive a restart in every state that can still roll back.
	return !x.RollbackAt.IsZero() && CanMove(x.State, RollingBack) || x.Silence.pending()
}

// silences says whether x's alert is silenced while it runs: it came from
// Alertmanager, and a Silencer is configured.
func (e *Engine) silences(x *Execution) bool {
	return e.cfg.Silencer != nil && x.Event.Source == SourceAlertmanager
}

// silenceHeld is the one rule of how long the alert stays silenced: while
// the bot works on it — EXECUTING, ROLLING_BACK, VERIFYING, and SUCCEEDED on
// its way to VERIFYING (startVerify moves it at once). Every other state ends
// it: VERIFIED, FAILED, ROLLED_BACK, ROLLBACK_FAILED, INTERRUPTED, SUCCEEDED
// without verification, and VERIFY_FAILED (the fix did not work: people must
// hear about the alert, whatever the rollback then does).
func (e *Engine) silenceHeld(x *Execution) bool {
	switch x.State {
	case Executing, RollingBack, Verifying:
		return true
	case Succeeded:
		return e.verifies(&x.Plan)
	}
	return false
}

// silenceWork keeps one expiry per execution in flight: the expiry's own
// audit transitions must not start another.
type silenceWork struct {
	mu       sync.Mutex
	expiring map[string]bool
}

// startSilence creates the silence of an execution that just started
// (EXECUTING), in the background, and records it.
func (e *Engine) startSilence(x *Execution) {
	if !e.silences(x) {
		return
	}
	snap := *x
	e.goWork(func() {
		now := e.clock.Now()
		endsAt := now.Add(e.cfg.SilenceMax)
		ctx, cancel := context.WithTimeoutCause(e.ctx, silenceTimeout, errSilenceTimeout)
		id, err := e.cfg.Silencer.Silence(ctx, &snap, now, endsAt)
		cancel()
		if err != nil {
			e.log.Warn("silence not created", "plan", snap.ID, "err", err)
			e.noteSilence(snap.ID, nil, "silence not created: "+err.Error()+"; the remediation goes on",
				"⚠️ Alertmanager silence not created: "+err.Error())
			return
		}
		// Recorded in whatever state the execution is in now: if it ended
		// meanwhile, transition sees a silence no longer held and expires it.
		e.noteSilence(snap.ID, func(x *Execution) { x.Silence = &SilenceRef{ID: id, EndsAt: endsAt} },
			fmt.Sprintf("Alertmanager silence %s created until %s", id, endsAt.UTC().Format(time.RFC3339)),
			fmt.Sprintf("🔕 Alert silenced in Alertmanager while recoverbot works on it (silence %s, until %s at the latest)", id, endsAt.UTC().Format("15:04:05 MST")))
	})
}

// endSilence expires x's silence in the background, unless an expiry of it
// is already under way. force skips the silenceHeld check: start-up resumes
// no SUCCEEDED execution's verification.
func (e *Engine) endSilence(id string, force bool) {
	e.silence.mu.Lock()
	if e.silence.expiring[id] {
		e.silence.mu.Unlock()
		return
	}
	e.silence.expiring[id] = true
	e.silence.mu.Unlock()
	e.goWork(func() {
		defer func() {
			e.silence.mu.Lock()
			delete(e.silence.expiring, id)
			e.silence.mu.Unlock()
		}()
		e.expireSilence(id, force)
	})
}

func (e *Engine) expireSilence(id string, force bool) {
	x, err := e.store.Execution(e.ctx, id)
	if err != nil {
		e.log.Error("load execution to expire its silence", "plan", id, "err", err)
		return
	}
	if !x.Silence.pending() || !force && e.silenceHeld(&x) {
		return
	}
	s := *x.Silence
	settle := func(x *Execution) { x.Silence.Settled = true }
	if !e.clock.Now().Before(s.EndsAt) {
		e.noteSilence(id, settle, fmt.Sprintf("Alertmanager silence %s ended on its own at %s", s.ID, s.EndsAt.UTC().Format(time.RFC3339)), "")
		return
	}
	if e.cfg.Silencer == nil {
		// Configured off since: it stays open, and ends on its own at EndsAt.
		e.noteSilence(id, settle, fmt.Sprintf("Alertmanager silence %s not expired: no Alertmanager is configured; it ends on its own at %s",
			s.ID, s.EndsAt.UTC().Format(time.RFC3339)), "")
		return
	}
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeoutCause(e.ctx, silenceTimeout, errSilenceTimeout)
		err = e.cfg.Silencer.Expire(ctx, s.ID)
		cancel()
		if err == nil {
			e.noteSilence(id, settle, fmt.Sprintf("Alertmanager silence %s expired (execution %s)", s.ID, x.State),
				"🔔 Alertmanager silence "+s.ID+" expired: the alert notifies again")
			return
		}
		if attempt == len(silenceRetries) || !e.wait(e.ctx, silenceRetries[attempt]) {
			break
		}
	}
	// Left unsettled: the next start-up tries again; it ends at EndsAt anyway.
	e.log.Warn("silence not expired", "plan", id, "silence", s.ID, "err", err)
	e.noteSilence(id, nil, fmt.Sprintf("Alertmanager silence %s not expired: %v; it ends on its own at %s",
		s.ID, err, s.EndsAt.UTC().Format(time.RFC3339)), "")
}

// noteSilence records, in the execution's audit trail (and its thread when
// text is set), what happened to its silence, applying mutate, in whatever
// state the execution is in: a compare-and-set on the state just read,
// tried again if the execution moved meanwhile.
func (e *Engine) noteSilence(id string, mutate func(*Execution), reason, text string) {
	var outbox []Notification
	if text != "" {
		outbox = []Notification{{Kind: NoteStep, Text: text}}
	}
	for range len(States) { // each retry follows a move; no path has more
		cur, err := e.store.Execution(e.ctx, id)
		if err != nil {
			e.log.Error("record silence", "plan", id, "err", err)
			return
		}
		_, err = e.transition(e.ctx, Transition{ID: id, From: []State{cur.State}, To: cur.State,
			Actor: ActorBot, Reason: reason, Outbox: outbox,
			Mutate: func(x *Execution) error {
				if mutate != nil {
					mutate(x)
				}
				return nil
			}})
		if !errors.As(err, new(*MoveError)) {
			if err != nil {
				e.log.Error("record silence", "plan", id, "err", err)
			}
			return
		}
	}
}
