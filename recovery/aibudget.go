package recovery

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"
)

// AIBudget bounds what the AI advisor may cost. A storm of events no runbook
// matches once started one call per event, all at once, each carrying the
// whole event: now a call is made only within these bounds, and what is not
// made is counted (AIObserver) and said once in the channel.
type AIBudget struct {
	MaxConcurrent int           // AI calls in flight at once
	PerMinute     int           // AI calls started in any minute
	FoldWindow    time.Duration // an unmatched event identical to one sent this recently is not sent again
	PromptBytes   int           // the event, as JSON in the prompt, is cut to this many bytes
}

// DefaultAIBudget returns the documented defaults.
func DefaultAIBudget() AIBudget {
	return AIBudget{MaxConcurrent: 4, PerMinute: 30, FoldWindow: 10 * time.Minute, PromptBytes: 8 << 10}
}

// MinPromptBytes is the smallest PromptBytes: room for an event's fixed
// fields, a summary and a few values.
const MinPromptBytes = 1024

// AIDrop says why an AI call was not made.
type AIDrop string

// Reasons an AI call is not made.
const (
	AIDropBusy   AIDrop = "concurrency" // MaxConcurrent calls were in flight
	AIDropBudget AIDrop = "budget"      // PerMinute calls started in the last minute
	AIDropFolded AIDrop = "folded"      // the same unmatched event was sent within FoldWindow
)

// AIObserver is told about each AI call not made. Config.Observer may
// implement it (the bot's /metrics does).
type AIObserver interface {
	AIDropped(why AIDrop)
}

// aiNoticeQuiet is how long drops must stop before the next one is said in
// the channel again: a storm is told once, not once per event.
const aiNoticeQuiet = 10 * time.Minute

// aiGate admits AI calls within an AIBudget. Its zero value is not usable:
// see newAIGate.
type aiGate struct {
	mu       sync.Mutex
	b        AIBudget
	running  int
	starts   []time.Time          // calls started in the last minute, oldest first
	sent     map[string]time.Time // unmatched event key → when it was last sent
	lastDrop time.Time
}

func newAIGate(b AIBudget) *aiGate {
	d := DefaultAIBudget()
	orDefault(&b.MaxConcurrent, d.MaxConcurrent)
	orDefault(&b.PerMinute, d.PerMinute)
	orDefault(&b.FoldWindow, d.FoldWindow)
	orDefault(&b.PromptBytes, d.PromptBytes)
	b.PromptBytes = max(b.PromptBytes, MinPromptBytes)
	return &aiGate{b: b, sent: map[string]time.Time{}}
}

// admit reserves one AI call at now; key, when not "", folds identical
// unmatched events. On success release must be called when the call ends.
// Otherwise drop says why, and announce whether this drop is the first after
// a quiet period (the caller says it in the channel).
func (g *aiGate) admit(now time.Time, key string) (release func(), drop AIDrop, announce bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, at := range g.sent {
		if now.Sub(at) >= g.b.FoldWindow {
			delete(g.sent, k)
		}
	}
	cut := now.Add(-time.Minute)
	i := sort.Search(len(g.starts), func(i int) bool { return g.starts[i].After(cut) })
	g.starts = append(g.starts[:0], g.starts[i:]...)
	switch {
	case key != "" && g.sent[key] != time.Time{}:
		return nil, AIDropFolded, false // not news: the first of them was sent
	case g.running >= g.b.MaxConcurrent:
		drop = AIDropBusy
	case len(g.starts) >= g.b.PerMinute:
		drop = AIDropBudget
	}
	if drop != "" {
		announce = g.lastDrop.IsZero() || now.Sub(g.lastDrop) >= aiNoticeQuiet
		g.lastDrop = now
		return nil, drop, announce
	}
	g.running++
	g.starts = append(g.starts, now)
	if key != "" {
		g.sent[key] = now
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.running--
			g.mu.Unlock()
		})
	}, "", false
}

// aiAdmit asks the gate for one AI call on behalf of what (for the log),
// counts and announces a drop, and returns the release, or nil when the call
// must not be made.
func (e *Engine) aiAdmit(what, key string) (func(), AIDrop) {
	release, drop, announce := e.aiGate.admit(e.clock.Now(), key)
	if release != nil {
		return release, ""
	}
	if o, ok := e.cfg.Observer.(AIObserver); ok {
		o.AIDropped(drop)
	}
	e.log.Debug("AI call not made", "for", what, "why", drop)
	if announce {
		b := e.aiGate.b
		now := e.clock.Now()
		text := fmt.Sprintf("🤖 AI budget reached (%d calls at once, %d a minute): events no runbook matches are not all sent to the AI now. "+
			"Nothing else changes; what is not sent is counted in /metrics (recoverbot_ai_calls_dropped_total). Said once per storm.",
			b.MaxConcurrent, b.PerMinute)
		if err := e.store.Record(e.ctx, []AuditRecord{{At: now, Actor: ActorAI, Reason: "AI budget reached: " + string(drop)}},
			[]Notification{{At: now, Kind: NoteNotice, Text: text}}); err != nil {
			e.log.Warn("record the AI budget notice", "err", err)
		} else {
			e.poke()
		}
	}
	return nil, drop
}

// foldKey identifies an unmatched event for folding: everything but its id
// and fingerprint, which differ between deliveries of the same report.
func foldKey(ev *Event) string {
	b, err := json.Marshal(struct {
		T, S, Src, Sum string
		C              float64
		D, X           map[string]any
	}{string(ev.Type), string(ev.Severity), ev.Source, ev.Summary, ev.Confidence, ev.Data, ev.Context})
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return string(sum[:])
}

// maxPromptValue bounds one data or context value in the prompt.
const maxPromptValue = 512

// promptEvent is ev as the AI is shown it: at most max bytes of JSON. The
// summary is cut to a quarter of it, measured as JSON (cutEncoded), each value to maxPromptValue (a nested
// value becomes its cut JSON text), and keys that no longer fit are left
// out, in key order, with a note saying how many. The plan is still made
// from the whole event; only the prompt is cut.
func promptEvent(ev Event, limit int) Event {
	if b, err := json.Marshal(ev); err == nil && len(b) <= limit {
		return ev
	}
	out := ev
	out.Summary = cutEncoded(ev.Summary, limit/4)
	out.Data, out.Context = nil, nil
	fixed, _ := json.Marshal(out)
	budget := max(0, limit-len(fixed)-160) // the two maps' braces and the note
	var left int
	out.Data, left = promptMap(ev.Data, &budget)
	var left2 int
	out.Context, left2 = promptMap(ev.Context, &budget)
	if n := left + left2; n > 0 {
		if out.Context == nil {
			out.Context = map[string]any{}
		}
		out.Context["_trimmed"] = fmt.Sprintf("%d more keys not shown: the event is cut to %d bytes for the AI", n, limit)
	}
	return out
}

// cutEncoded is CutText(s, n) for the largest n whose JSON encoding (quotes
// included) is at most limit bytes. json.Marshal writes <, > and & and most
// control characters as six-byte \u escapes, so a cut by raw bytes can be six
// times over: 1024 '<' are 6 KiB of JSON.
func cutEncoded(s string, limit int) string {
	size := func(t string) int { b, _ := json.Marshal(t); return len(b) }
	if size(s) <= limit {
		return s
	}
	lo, hi := 0, min(len(s), limit) // CutText(s, lo) fits; no n > hi does
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if size(CutText(s, mid)) <= limit {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return CutText(s, lo)
}

func promptMap(m map[string]any, budget *int) (map[string]any, int) {
	if len(m) == 0 {
		return nil, 0
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := map[string]any{}
	left := 0
	for _, k := range keys {
		v := m[k]
		switch x := v.(type) {
		case string:
			v = CutText(x, maxPromptValue)
		case float64, bool, nil:
		default:
			j, _ := json.Marshal(x)
			if len(j) > maxPromptValue {
				v = CutText(string(j), maxPromptValue)
			}
		}
		kj, _ := json.Marshal(k)
		vj, _ := json.Marshal(v)
		need := len(kj) + len(vj) + 2
		if need > *budget {
			left++
			continue
		}
		*budget -= need
		out[k] = v
	}
	return out, left
}
