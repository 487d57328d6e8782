package recovery

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The bounds of an event. An event is stored whole (its record, the plan's
// copy, every audit snapshot of the plan), decoded at every read and start-up,
// and sent to the AI, so each bound below exists to keep one accepted event
// from costing more than it can be worth. No monitoring system we know needs
// more: Prometheus labels and annotations, Datadog tags, CloudWatch alarm
// dimensions are flat maps of a few dozen short strings.
const (
	// MaxTextBytes bounds the human text (summary; an alert's description):
	// text is never a reason to refuse an incident, so longer text is cut
	// (CutText, in BoundEvent), not refused. 16 KiB holds a long stack trace; Slack
	// shows at most 3000 characters of a section anyway (commands/render.go).
	MaxTextBytes = 16 << 10
	// MaxDataDepth bounds the nesting of data and context (the map itself is
	// level 1). Monitoring payloads are flat maps; 8 leaves room for a nested
	// object or two. Without it a 20 KB body nests 10,000 levels, and the
	// stored plan, wrapped three or four levels deeper, can never be decoded
	// again (encoding/json stops at 10,000).
	MaxDataDepth = 8
	// MaxDataKeys bounds the object keys of data and context together, at
	// every level, with an alert's labels: a runbook matches a handful; 256
	// is a generous alert (most of its labels count twice: in context, and
	// as labels).
	MaxDataKeys = 256
	// MaxDataString bounds one key or string value of data, context and
	// labels: identifiers, URLs and queries fit; logs do not belong in an
	// event.
	MaxDataString = 4 << 10
	// MaxDataBytes bounds data, context and labels together, counted as the
	// bytes of every key and string value plus 8 for each other value
	// (number, bool, null, object, array).
	MaxDataBytes = 64 << 10
)

// CodeTooLarge is an event over one of the bounds above: the edges answer
// 422 with the sentence, which names the bound.
const CodeTooLarge Code = "too_large"

// CutText returns s if it holds at most max bytes, else its longest valid
// UTF-8 prefix that leaves room for a marker saying how much was cut, so
// whoever reads it knows it is not whole. It is the one way text is cut
// (CutChars is the same for limits counted in characters, as Slack's are).
func CutText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for n := max; n > 0; n-- {
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		if m := cutMarker(len(s) - n); n+len(m) <= max {
			return strings.ToValidUTF8(s[:n], "") + m
		}
	}
	return ""
}

// CutChars is CutText for a limit counted in characters (runes), as Slack
// counts a header's 150 or a section's 3,000: s if it has at most max, else
// its prefix and the marker, together at most max characters. Where the
// marker itself does not fit (max under about 20), the prefix ends in a bare
// "…".
func CutChars(s string, max int) string {
	if len(s) <= max || utf8.RuneCountInString(s) <= max {
		return s
	}
	if max <= 0 {
		return ""
	}
	n := 0 // the byte length of the first k runes
	for range max {
		_, size := utf8.DecodeRuneInString(s[n:])
		n += size
	}
	for k := max; k > 0; k-- {
		if m := cutMarker(len(s) - n); k+utf8.RuneCountInString(m) <= max {
			return strings.ToValidUTF8(s[:n], "") + m
		}
		_, size := utf8.DecodeLastRuneInString(s[:n])
		n -= size
	}
	// The marker does not fit: the first max-1 runes and a bare "…".
	n = 0
	for range max - 1 {
		_, size := utf8.DecodeRuneInString(s[n:])
		n += size
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// cutMarker ends a cut text: how many bytes of the original are not shown.
func cutMarker(cut int) string { return fmt.Sprintf("… [cut %d bytes]", cut) }

// BoundEvent is the one owner of an event's bounds (STYLE §14): every way
// into the engine calls it (ValidateEvent, so Submit, Evaluate, AI plans,
// PlanManual and Preview; Resolve), and the edges do not repeat it. It first cuts the
// human text, which is never a reason to refuse an incident: a summary longer
// than MaxTextBytes is cut, marked (CutText), and invalid UTF-8 is replaced.
// Then it refuses data, context or labels over a bound above, with CodeTooLarge and a
// sentence naming the field and the bound. It allocates nothing unless it
// cuts or refuses: it runs on every event.
func BoundEvent(ev *Event) error {
	if !utf8.ValidString(ev.Summary) {
		ev.Summary = strings.ToValidUTF8(ev.Summary, "\uFFFD")
	}
	ev.Summary = CutText(ev.Summary, MaxTextBytes)
	return checkEventBounds(ev)
}

func checkEventBounds(ev *Event) error {
	w := boundsWalk{}
	for _, f := range []struct {
		name string
		m    map[string]any
	}{{"data", ev.Data}, {"context", ev.Context}} {
		if f.m == nil {
			continue
		}
		if over := w.value(f.m, 1); over != nil {
			over.path = append(over.path, f.name)
			return over.err()
		}
	}
	for k, v := range ev.Labels {
		if over := w.label(k, v); over != nil {
			over.path = append(over.path, "labels."+shortKey(k))
			return over.err()
		}
	}
	return nil
}

// label counts one label as a key and its string value, with the keys and
// bytes of data and context (the walk's value does the same for a map).
func (w *boundsWalk) label(k, v string) *overBound {
	w.keys++
	if w.keys > MaxDataKeys {
		return &overBound{format: "data, context and labels hold more than %[2]d keys (the limit; counted up to %[1]s)", args: []any{MaxDataKeys}}
	}
	if over := w.str("key", k); over != nil {
		return over
	}
	return w.str("value", v)
}

type boundsWalk struct{ keys, bytes int }

// overBound is a refusal on its way up: path collects the keys from the
// offending value back to the top, only once something is refused.
type overBound struct {
	format string // with one %s for the path
	args   []any
	path   []string
}

func (o *overBound) err() error {
	var b strings.Builder
	for i := len(o.path) - 1; i >= 0; i-- {
		b.WriteString(o.path[i])
	}
	return Errorf(CodeTooLarge, o.format, append([]any{b.String()}, o.args...)...)
}

func (w *boundsWalk) add(n int) *overBound {
	w.bytes += n
	if w.bytes > MaxDataBytes {
		return &overBound{format: "data and context hold more than %[2]d bytes (the limit; counted up to %[1]s)", args: []any{MaxDataBytes}}
	}
	return nil
}

func (w *boundsWalk) str(what, s string) *overBound {
	if len(s) > MaxDataString {
		return &overBound{format: "%s: a %s of %d bytes is longer than the limit of %d bytes", args: []any{what, len(s), MaxDataString}}
	}
	return w.add(len(s))
}

func (w *boundsWalk) value(v any, depth int) *overBound {
	if depth > MaxDataDepth {
		return &overBound{format: "%s nests deeper than the limit of %d levels", args: []any{MaxDataDepth}}
	}
	switch v := v.(type) {
	case string:
		return w.str("value", v)
	case map[string]any:
		if over := w.add(8); over != nil {
			return over
		}
		for k, x := range v {
			w.keys++
			if w.keys > MaxDataKeys {
				return &overBound{format: "data and context hold more than %[2]d keys (the limit; counted up to %[1]s)", args: []any{MaxDataKeys}}
			}
			if over := w.str("key", k); over != nil {
				return over
			}
			if over := w.value(x, depth+1); over != nil {
				over.path = append(over.path, "."+shortKey(k))
				return over
			}
		}
	case []any:
		if over := w.add(8); over != nil {
			return over
		}
		for i, x := range v {
			if over := w.value(x, depth+1); over != nil {
				over.path = append(over.path, fmt.Sprintf("[%d]", i))
				return over
			}
		}
	default:
		return w.add(8)
	}
	return nil
}

// shortKey keeps a path in an error readable when a key is long or odd.
func shortKey(k string) string {
	if len(k) <= 40 && printable(k) {
		return k
	}
	return fmt.Sprintf("%q", CutText(k, 40))
}
