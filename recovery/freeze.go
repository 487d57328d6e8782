package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Freezes: "we are deploying payments for the next hour, don't touch it".
// During a freeze a plan in its scope never runs by itself: FreezeGuard asks
// a human for it, naming the freeze and its end, like never-auto does; it
// never drops or suppresses a plan. A person approving during a freeze is the
// point, so the re-check at approval (recheck, mayProceed) lets an approved
// plan through; an automatic plan that was decided before the freeze began is
// refused at the start of its run (admit) and its thread says which freeze.
// An automatic undo (a scheduled rollback, a failed verification) of a target
// in scope waits for a human too (undoCheck); a person's Roll back runs.
//
// Ad-hoc freezes have absolute start and end times and are kept as one JSON
// document under the setting settingFreezes; recurring windows come from the
// config file (FreezeWindow) and are computed from the clock. Both end on
// time across restarts: the guard compares them with the clock, nothing has
// to fire.

const settingFreezes = "freezes"

// freezeKeep is how long a freeze stays in the document after it ended
// (lifted or run out): `freezes` shows recent ones, and the document names
// who lifted a freeze even if the audit append after it was lost.
const freezeKeep = 7 * 24 * time.Hour

// Bounds of a freeze as asked for.
const (
	MaxFreeze       = 7 * 24 * time.Hour // longer than that is a pause, or a recurring window
	MaxFreezeReason = 200                // characters; it is repeated in every held plan's reasons
)

// Freeze is one freeze: ad-hoc (recoverbot freeze), or the current occurrence
// of a recurring window from the config file (Window set).
type Freeze struct {
	ID      string    `json:"id"`
	Reason  string    `json:"reason"`
	Runbook string    `json:"runbook,omitempty"` // scope: "" any runbook
	Target  string    `json:"target,omitempty"`  // scope: a target as its driver names it (Plan.Targets); "" any
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	By      string    `json:"by"`                  // who froze (a window: "config")
	Window  string    `json:"window,omitempty"`    // the recurring window's name
	Lifted  string    `json:"lifted_by,omitempty"` // who ended it early (End is then when)
}

// ActiveAt reports whether the freeze holds at now: [Start, End).
func (f *Freeze) ActiveAt(now time.Time) bool { return !now.Before(f.Start) && now.Before(f.End) }

// Covers reports whether p is in the freeze's scope: its runbook, and one of
// the targets its drivers named (the one target identity, Drivers.Check). No
// scope covers everything.
func (f *Freeze) Covers(p *Proposal) bool {
	return (f.Runbook == "" || f.Runbook == p.RunbookName) && (f.Target == "" || slices.Contains(p.Targets, f.Target))
}

// CoversPlan is Covers for a stored plan (its runbook and the targets its
// drivers named).
func (f *Freeze) CoversPlan(p *Plan) bool {
	return f.Covers(&Proposal{RunbookName: p.Runbook, Targets: p.Targets})
}

// Scope says what the freeze covers, for people.
func (f *Freeze) Scope() string {
	switch {
	case f.Runbook != "" && f.Target != "":
		return "runbook " + f.Runbook + " on target " + f.Target
	case f.Runbook != "":
		return "runbook " + f.Runbook
	case f.Target != "":
		return "target " + f.Target
	}
	return "everything"
}

// FreezeGuard asks a human for every plan in the scope of a freeze active at
// s.Now, naming each such freeze, its reason and its end. It never
// suppresses: nothing is dropped, the plan waits for approval.
type FreezeGuard struct{}

// Check implements Guard.
func (FreezeGuard) Check(p *Proposal, s *Situation) (Verdict, string, string) {
	var why []string
	for i := range s.Freezes {
		f := &s.Freezes[i]
		if f.ActiveAt(s.Now) && f.Covers(p) {
			why = append(why, fmt.Sprintf("frozen by %s (%s, %s) until %s: a human must approve",
				f.ID, f.Reason, f.Scope(), f.End.UTC().Format(time.RFC3339)))
		}
	}
	if len(why) == 0 {
		return Pass, "", ""
	}
	return NeedApproval, strings.Join(why, "; "), ""
}

// Schedule is a recurring window's activation times (a cron expression in
// its time zone): Next returns the first activation strictly after t.
type Schedule interface {
	Next(t time.Time) time.Time
}

// FreezeWindow is a recurring freeze from the config file: it holds for
// Duration from each activation of Schedule.
type FreezeWindow struct {
	Name     string
	Spec     string // the cron expression and time zone, for people
	Schedule Schedule
	Duration time.Duration
	Runbook  string
	Target   string
	Reason   string
}

// maxWindowSteps bounds the walk over activations in At (a safety net: the
// look-back below keeps the walk to a step or two for ordinary schedules).
const maxWindowSteps = 20000

// At returns the window's occurrence holding at now, if any: it began at the
// first activation after now-Duration, if that is not after now, and ends
// Duration after the latest activation at or before now (overlapping
// occurrences are one freeze). The guards ask it for every event, so the
// latest activation is found by looking back from now in doubling steps
// rather than by walking every activation (an every-minute window a week long
// has 10080).
func (w *FreezeWindow) At(now time.Time) (Freeze, bool) {
	first := w.Schedule.Next(now.Add(-w.Duration))
	if first.IsZero() || first.After(now) {
		return Freeze{}, false
	}
	last := first
	for back := time.Minute; back < now.Sub(first); back *= 2 {
		if a := w.Schedule.Next(now.Add(-back)); !a.IsZero() && !a.After(now) {
			last = a
			break
		}
	}
	for i := 0; i < maxWindowSteps; i++ {
		n := w.Schedule.Next(last)
		if n.IsZero() || n.After(now) {
			break
		}
		last = n
	}
	return Freeze{ID: "window:" + w.Name, Reason: w.Reason, Runbook: w.Runbook, Target: w.Target,
		Start: first, End: last.Add(w.Duration), By: "config", Window: w.Name}, true
}

// FreezeRequest is a freeze someone asks for.
type FreezeRequest struct {
	Duration time.Duration
	Reason   string
	Runbook  string
	Target   string
	Actor    string
}

// freezes are the engine's ad-hoc freezes, as stored (e.mu guards them).
type freezeList []Freeze

// activeFreezes are the freezes holding at now, ad-hoc ones first; called with
// e.mu held (read at least).
func (e *Engine) activeFreezes(now time.Time) []Freeze {
	var out []Freeze
	for _, f := range e.freezes {
		if f.ActiveAt(now) {
			out = append(out, f)
		}
	}
	for i := range e.cfg.Windows {
		if f, ok := e.cfg.Windows[i].At(now); ok {
			out = append(out, f)
		}
	}
	return out
}

// Freezes returns the freezes holding now (ad-hoc and recurring windows).
func (e *Engine) Freezes() []Freeze {
	now := e.clock.Now()
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.activeFreezes(now)
}

// loadFreezes reads the freeze document at start-up.
func (e *Engine) loadFreezes(ctx context.Context) error {
	v, err := e.store.Setting(ctx, settingFreezes)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var fs freezeList
	if err := json.Unmarshal(v, &fs); err != nil {
		return fmt.Errorf("decode the freezes document: %w", err)
	}
	e.freezes = fs
	return nil
}

// Freeze starts an ad-hoc freeze now for r.Duration. The freeze is durable
// before it is answered, announced and audited (see putFreezes for the order).
func (e *Engine) Freeze(ctx context.Context, r FreezeRequest) (Freeze, error) {
	r.Reason = strings.TrimSpace(r.Reason)
	switch {
	case r.Duration <= 0 || r.Duration > MaxFreeze:
		return Freeze{}, Errorf(CodeInvalid, "a freeze lasts more than 0 and at most %s (not %s)", MaxFreeze, r.Duration)
	case r.Duration%time.Second != 0:
		return Freeze{}, Errorf(CodeInvalid, "a freeze lasts whole seconds (not %s)", r.Duration)
	case r.Reason == "":
		return Freeze{}, Errorf(CodeInvalid, "a freeze needs a reason: it is shown on every plan it holds")
	case len([]rune(r.Reason)) > MaxFreezeReason || !printableText(r.Reason):
		return Freeze{}, Errorf(CodeInvalid, "the reason must be at most %d printable characters on one line", MaxFreezeReason)
	case r.Runbook != "" && e.books.Get(r.Runbook) == nil:
		return Freeze{}, Errorf(CodeNotFound, "no runbook named %q", r.Runbook)
	case len(r.Target) > 256 || !printable(r.Target):
		return Freeze{}, Errorf(CodeInvalid, "target must be at most 256 printable characters without spaces, as plans name it (like deployment/payments/api)")
	}
	e.freezeMu.Lock()
	defer e.freezeMu.Unlock()
	now := e.clock.Now()
	f := Freeze{ID: "fz_" + e.ids.New(now), Reason: r.Reason, Runbook: r.Runbook, Target: r.Target,
		Start: now, End: now.Add(r.Duration), By: r.Actor}
	e.mu.RLock()
	next := append(e.pruned(now), f)
	e.mu.RUnlock()
	reason := fmt.Sprintf("freeze %s of %s until %s started by %s: %s", f.ID, f.Scope(), f.End.UTC().Format(time.RFC3339), r.Actor, f.Reason)
	if err := e.putFreezes(ctx, next, now, r.Actor, reason, FreezeNotice(f)); err != nil {
		return Freeze{}, err
	}
	return f, nil
}

// Unfreeze ends the ad-hoc freeze id now (all: every active one) and returns
// those it ended. An unknown or ended id is CodeNotFound; a recurring window
// cannot be lifted here (CodeConflict: it comes from the config file).
func (e *Engine) Unfreeze(ctx context.Context, id string, all bool, actor string) ([]Freeze, error) {
	e.freezeMu.Lock()
	defer e.freezeMu.Unlock()
	now := e.clock.Now()
	e.mu.RLock()
	next := e.pruned(now)
	e.mu.RUnlock()
	var ended []Freeze
	for i := range next {
		f := &next[i]
		if f.ActiveAt(now) && (all || f.ID == id) {
			f.End, f.Lifted = now, actor
			ended = append(ended, *f)
		}
	}
	switch {
	case len(ended) == 0 && all:
		return nil, Errorf(CodeNotFound, "no ad-hoc freeze is active")
	case len(ended) == 0 && strings.HasPrefix(id, "window:"):
		return nil, Errorf(CodeConflict, "%s is a recurring window from the config file: remove it there and restart", id)
	case len(ended) == 0:
		return nil, Errorf(CodeNotFound, "no active freeze %s", id)
	}
	ids := make([]string, len(ended))
	for i, f := range ended {
		ids[i] = f.ID
	}
	reason := fmt.Sprintf("freeze %s lifted by %s", strings.Join(ids, ", "), actor)
	if err := e.putFreezes(ctx, next, now, actor, reason, UnfreezeNotice(ids, now, actor)); err != nil {
		return nil, err
	}
	return ended, nil
}

// FreezeNotice is the channel's announcement of freeze f (its By is the
// actor, shown as a mention by the Slack edge).
func FreezeNotice(f Freeze) Notification {
	return Notification{At: f.Start, Kind: NoteNotice, Actor: f.By,
		Text: fmt.Sprintf("🧊 Freeze %s: %s until %s (%s), by %s. Plans in scope wait for approval; nothing is dropped.",
			f.ID, f.Scope(), f.End.UTC().Format(time.RFC3339), f.Reason, f.By)}
}

// UnfreezeNotice is the channel's announcement that actor lifted the freezes ids at now.
func UnfreezeNotice(ids []string, now time.Time, actor string) Notification {
	return Notification{At: now, Kind: NoteNotice, Actor: actor,
		Text: fmt.Sprintf("🔥 Freeze %s lifted by %s. Plans already waiting still need their approval.", strings.Join(ids, ", "), actor)}
}

// pruned is a copy of the freeze list without those that ended more than
// freezeKeep ago; called with e.mu held.
func (e *Engine) pruned(now time.Time) freezeList {
	out := make(freezeList, 0, len(e.freezes)+1)
	for _, f := range e.freezes {
		if now.Sub(f.End) < freezeKeep {
			out = append(out, f)
		}
	}
	return out
}

// putFreezes persists the new freeze document, then takes it in memory, then
// appends the audit record and the channel notice. The document goes first:
// once it is written the change holds, after a restart too, and the document
// itself names who made it (By, Lifted), so a crash before the audit append
// loses no accepted freeze or lift, only its announcement. A failed write
// changes nothing, in the store or in memory. Called with e.freezeMu held.
func (e *Engine) putFreezes(ctx context.Context, next freezeList, now time.Time, actor, reason string, notice Notification) error {
	b, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("encode freezes: %w", err)
	}
	if err := e.store.PutSetting(ctx, settingFreezes, b); err != nil {
		return Errorf(CodeUnavailable, "could not persist the freeze; nothing changed").wrap(err)
	}
	e.mu.Lock()
	e.freezes = next
	e.mu.Unlock()
	if err := e.store.Record(ctx, []AuditRecord{{At: now, Actor: actor, Reason: reason}},
		[]Notification{notice}); err != nil {
		return Errorf(CodeUnavailable, "the freeze change holds, but its audit record and announcement could not be written").wrap(err)
	}
	e.poke()
	return nil
}

// printableText is one line of printable text (spaces allowed).
func printableText(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return false
		}
	}
	return true
}
