package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"time"
	"unicode"

	"github.com/recoverbot/recoverbot/runbooks"
)

// AIProposal is an AI's structured answer: which runbook fits (or none), the
// context values to plan it with, how sure it is, and why.
type AIProposal struct {
	Runbook    string         `json:"runbook"` // "" or "none": no runbook fits
	Context    map[string]any `json:"context"`
	Confidence float64        `json:"confidence"`
	Rationale  string         `json:"rationale"`
	Model      string         `json:"-"`
}

// CatalogueEntry describes one runbook to the AI: all it may choose from.
type CatalogueEntry struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	EventType   string   `json:"event_type"`
	Actions     []string `json:"actions"`
	Parameters  []string `json:"parameters"` // the context keys the runbook declares
}

// AdviceRequest is what the AI is asked about: an event that matched no
// runbook, or a person's free-text question.
type AdviceRequest struct {
	Event     *Event
	Question  string
	Catalogue []CatalogueEntry
}

// Advisor is an AI planner. Its answers are proposals only: the engine
// validates them strictly and every AI plan waits for a human.
type Advisor interface {
	Propose(ctx context.Context, req AdviceRequest) (AIProposal, error)
	Explain(ctx context.Context, x *Execution) (string, error)
}

// Catalogue lists the runbooks as the AI sees them.
func (e *Engine) Catalogue() []CatalogueEntry {
	var out []CatalogueEntry
	for _, rb := range e.books.All() {
		c := CatalogueEntry{Name: rb.Name, Description: rb.Description, EventType: string(rb.Trigger.EventType)}
		for _, a := range rb.Actions {
			c.Actions = append(c.Actions, string(a.Type))
		}
		for _, v := range rb.Variables() {
			c.Parameters = append(c.Parameters, runbooks.ContextKey(v))
		}
		out = append(out, c)
	}
	return out
}

func (e *Engine) aiTimeout() time.Duration {
	if e.cfg.AITimeout > 0 {
		return e.cfg.AITimeout
	}
	return 5 * time.Second
}

// Ask turns a person's free-text question into an AI plan awaiting approval
// (/recover ask). It waits for the AI at most AITimeout.
func (e *Engine) Ask(ctx context.Context, question, requestedBy string) (Answer, error) {
	if e.cfg.Advisor == nil {
		return Answer{}, Errorf(CodeUnavailable, "AI planning is off (set ANTHROPIC_API_KEY)")
	}
	if q := strings.TrimSpace(question); q == "" || len(q) > 2000 {
		return Answer{}, Errorf(CodeInvalid, "ask needs a question of 1..2000 characters")
	}
	release, drop := e.aiAdmit("ask", "")
	if release == nil {
		return Answer{}, Errorf(CodeUnavailable, "the AI budget is spent for now (%s): try again in a minute", drop)
	}
	defer release()
	actx, cancel := context.WithTimeoutCause(ctx, e.aiTimeout(), errors.New("the AI did not answer in time"))
	defer cancel()
	p, err := e.cfg.Advisor.Propose(actx, AdviceRequest{Question: question, Catalogue: e.Catalogue()})
	if err != nil {
		e.log.Warn("AI proposal failed", "err", err)
		return Answer{}, Errorf(CodeUnavailable, "the AI could not propose a plan: %v", err)
	}
	ev := Event{Type: "", Severity: runbooks.Warning, Confidence: 1, Summary: CutText("asked by "+requestedBy+": "+question, 500), Source: ActorAI}
	return e.planProposal(ctx, &ev, p, requestedBy)
}

// adviseUnmatched asks the AI, in the background, about an event that matched
// no runbook: the intake has answered already, and a slow AI delays nothing.
// Only within the AI budget (aibudget.go): an identical event sent recently
// is folded, and one over the concurrency cap or the minute's budget is not
// sent; the event is cut to the prompt's size cap.
func (e *Engine) adviseUnmatched(ev Event) {
	release, _ := e.aiAdmit("unmatched event "+ev.ID, foldKey(&ev))
	if release == nil {
		return
	}
	e.goWork(func() {
		defer release()
		ctx, cancel := context.WithTimeoutCause(e.ctx, e.aiTimeout(), errors.New("the AI did not answer in time"))
		defer cancel()
		shown := promptEvent(ev, e.aiGate.b.PromptBytes)
		p, err := e.cfg.Advisor.Propose(ctx, AdviceRequest{Event: &shown, Catalogue: e.Catalogue()})
		if err != nil {
			e.log.Warn("AI proposal for an unmatched event failed", "event", ev.ID, "err", err)
			return
		}
		if _, err := e.planProposal(e.ctx, &ev, p, ActorAI); err != nil {
			e.log.Warn("AI proposal rejected", "event", ev.ID, "err", err)
		}
	})
}

// planProposal validates an AI proposal strictly — a runbook that exists, only
// the context keys it declares, values that pass the same rendering checks as
// an event's, a finite confidence in [0,1], a readable rationale — and makes a
// plan that waits for approval. Anything else is refused with the reason,
// audited, and never shown as a plan.
func (e *Engine) planProposal(ctx context.Context, base *Event, p AIProposal, requestedBy string) (Answer, error) {
	reject := func(format string, args ...any) (Answer, error) {
		err := Errorf(CodeInvalid, "AI proposal rejected: "+format, args...)
		if rerr := e.store.Record(ctx, []AuditRecord{{At: e.clock.Now(), EventID: base.ID, Actor: ActorAI, Reason: err.Msg}}, nil); rerr != nil {
			e.log.Error("audit a rejected AI proposal", "err", rerr)
		}
		e.log.Warn("AI proposal rejected", "reason", err.Msg)
		return Answer{}, err
	}
	name := strings.TrimSpace(p.Runbook)
	if name == "" || strings.EqualFold(name, "none") {
		return Answer{}, Errorf(CodeNotFound, "the AI found no runbook for this")
	}
	rb := e.books.Get(name)
	if rb == nil {
		return reject("runbook %q does not exist", CutText(name, 80))
	}
	if math.IsNaN(p.Confidence) || p.Confidence < 0 || p.Confidence > 1 {
		return reject("confidence %v is not between 0 and 1", p.Confidence)
	}
	if r := strings.TrimSpace(p.Rationale); r == "" || len(r) > 1000 || strings.IndexFunc(r, func(c rune) bool { return unicode.IsControl(c) && c != '\n' }) >= 0 {
		return reject("the rationale must be 1..1000 printable characters")
	}
	ev, params, err := proposalEvent(rb, base, p.Context)
	if err != nil {
		return reject("%s", err.Error())
	}
	now := e.clock.Now()
	ev.ID = "ai_" + e.ids.New(now)
	if base.ID != "" {
		ev.Context["source_event"] = base.ID
	}
	// The event's bounds, like every way in (BoundEvent), before the
	// runbook's own checks of the values it renders.
	if err := ValidateEvent(&ev); err != nil {
		return reject("%v", err)
	}
	if _, err := runbooks.Render(rb, &ev); err != nil {
		return reject("%v", err)
	}
	ai := &AIInfo{Model: p.Model, Confidence: p.Confidence, Rationale: strings.TrimSpace(p.Rationale),
		OutsideTrigger: e.outsideTrigger(rb, base, &ev), Params: params}
	return e.submit(ctx, ev, now, proposalOpts{ai: ai, requestedBy: requestedBy, runbook: rb})
}

// proposalEvent is the event an AI plan is made from: the base event's data
// and context, plus the values the AI chose for parameters the runbook
// declares. The AI may add a value, never change one the event carries.
// params lists every declared parameter that has a value, and its source.
func proposalEvent(rb *runbooks.Runbook, base *Event, chosen map[string]any) (Event, []AIParam, error) {
	ev := *base
	ev.Type, ev.Source = rb.Trigger.EventType, ActorAI
	ev.Data, ev.Context = map[string]any{}, map[string]any{}
	maps.Copy(ev.Data, base.Data)
	maps.Copy(ev.Context, base.Context)
	var params []AIParam
	seen := map[string]bool{}
	for _, variable := range rb.Variables() {
		k := runbooks.ContextKey(variable)
		if seen[k] {
			continue
		}
		seen[k] = true
		given, inEvent := base.Lookup(k)
		v, byAI := chosen[k]
		switch {
		case byAI && inEvent && !sameValue(v, given):
			return ev, nil, fmt.Errorf("parameter %q: the event says %s, the AI may not change it", k, CutText(fmt.Sprint(given), 80))
		case inEvent:
			params = append(params, AIParam{Key: k, Value: given, From: FromEvent})
		case byAI:
			switch v.(type) {
			case string, float64, bool:
			default:
				return ev, nil, fmt.Errorf("parameter %q must be a string, number or boolean", k)
			}
			if strings.HasPrefix(variable, "data.") {
				ev.Data[k] = v
			} else {
				ev.Context[k] = v
			}
			params = append(params, AIParam{Key: k, Value: v, From: FromAI})
		}
	}
	for k := range chosen {
		if !seen[k] {
			return ev, nil, fmt.Errorf("runbook %s declares no parameter %q", rb.Name, CutText(k, 80))
		}
	}
	return ev, params, nil
}

// sameValue compares an AI's value with an event's as JSON would: 5 and 5.0
// are the same number.
func sameValue(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// outsideTrigger says which parts of rb's trigger the proposal is outside of,
// with the matcher's own check (runbooks.Set.Unmet). An event that matched no
// runbook is judged with its own type; a person's question has none, so only
// the conditions count.
func (e *Engine) outsideTrigger(rb *runbooks.Runbook, base, ev *Event) []string {
	check := *ev
	if base.Type != "" {
		check.Type = base.Type
	}
	return e.books.Unmet(rb, &check)
}

// explain adds an AI-written explanation to a plan awaiting approval. It runs in
// the background with its own deadline; a slow or failing AI changes nothing.
func (e *Engine) explain(id string) {
	x, err := e.store.Execution(e.ctx, id)
	if err != nil || x.State != PendingApproval {
		return
	}
	release, _ := e.aiAdmit("explanation of plan "+id, "")
	if release == nil {
		return // an explanation is a nicety: never over budget
	}
	defer release()
	ctx, cancel := context.WithTimeoutCause(e.ctx, e.aiTimeout(), errors.New("the AI did not answer in time"))
	defer cancel()
	text, err := e.cfg.Advisor.Explain(ctx, &x)
	if err != nil {
		e.log.Warn("AI explanation failed", "plan", id, "err", err)
		return
	}
	text = CutText(strings.TrimSpace(text), 1500)
	if text == "" {
		return
	}
	if _, err := e.transition(e.ctx, Transition{ID: id, From: []State{PendingApproval}, To: PendingApproval,
		Actor: ActorAI, Reason: "AI explanation added",
		Mutate: func(x *Execution) error { x.Explanation = text; return nil },
		Outbox: []Notification{{Kind: NoteExplain, Text: "🤖 AI explanation: " + text}}}); err != nil {
		var m *MoveError
		if !errors.As(err, &m) {
			e.log.Warn("record AI explanation", "plan", id, "err", err)
		}
	}
}

// aiNote is what an AI plan's text says about the AI: its confidence and
// rationale, what of the runbook's trigger it is outside of, and where each
// parameter came from.
func aiNote(a *AIInfo) string {
	s := fmt.Sprintf("proposed by AI · confidence %.0f %% · rationale: %s", a.Confidence*100, a.Rationale)
	if len(a.OutsideTrigger) > 0 {
		s += "\n⚠️ outside the runbook's trigger: " + strings.Join(a.OutsideTrigger, "; ")
	}
	for _, p := range a.Params {
		from := "from the event"
		if p.From == FromAI {
			from = "chosen by the AI"
		}
		s += fmt.Sprintf("\nparameter %s = %v (%s)", p.Key, p.Value, from)
	}
	return s
}
