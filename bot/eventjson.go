package bot

import (
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
)

// decodeEvent parses the intake's event JSON. The common case (ASCII strings
// without escapes, known keys spelled exactly) goes through a small hand-written
// parser that allocates only what the event keeps; anything else — escapes,
// non-ASCII, odd key spellings, malformed input — is handed to encoding/json, so
// the result and every error message are exactly encoding/json's. The fuzz test
// FuzzDecodeEvent holds the two to the same answers.
func decodeEvent(b []byte, ej *eventJSON) error {
	p := fastParser{b: b}
	if p.event(ej) && p.end() {
		return nil
	}
	*ej = eventJSON{}
	return json.Unmarshal(b, ej)
}

type fastParser struct {
	b []byte
	i int
}

func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *fastParser) end() bool {
	p.ws()
	return p.i == len(p.b)
}

func (p *fastParser) peek() byte {
	p.ws()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *fastParser) eat(c byte) bool {
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes; anything else fails.
func (p *fastParser) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := intern(p.b[start:p.i])
			p.i++
			return s, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return "", false
		}
		p.i++
	}
	return "", false
}

// num reads a JSON number (strict grammar) as float64.
func (p *fastParser) num() (float64, bool) {
	p.ws()
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	intStart := p.i
	if n := digits(); n == 0 || (n > 1 && p.b[intStart] == '0') {
		return 0, false
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return 0, false
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(string(p.b[start:p.i]), 64)
	return f, err == nil
}

func (p *fastParser) lit(word string) bool {
	p.ws()
	if len(p.b)-p.i >= len(word) && string(p.b[p.i:p.i+len(word)]) == word {
		p.i += len(word)
		return true
	}
	return false
}

// value reads any JSON value as encoding/json would into an `any`.
func (p *fastParser) value(depth int) (any, bool) {
	if depth > 64 {
		return nil, false
	}
	switch c := p.peek(); {
	case c == '"':
		return p.str()
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		p.i++
		out := []any{}
		if p.eat(']') {
			return out, true
		}
		for {
			v, ok := p.value(depth + 1)
			if !ok {
				return nil, false
			}
			out = append(out, v)
			if p.eat(']') {
				return out, true
			}
			if !p.eat(',') {
				return nil, false
			}
		}
	case c == 't':
		return true, p.lit("true")
	case c == 'f':
		return false, p.lit("false")
	case c == 'n':
		return nil, p.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		return p.num()
	}
	return nil, false
}

// object reads a JSON object into a map (duplicate keys: the last wins, as in
// encoding/json). null is not an object here: the caller handles it.
func (p *fastParser) object(depth int) (map[string]any, bool) {
	if !p.eat('{') {
		return nil, false
	}
	m := make(map[string]any, 4)
	if p.eat('}') {
		return m, true
	}
	for {
		k, ok := p.str()
		if !ok || !p.eat(':') {
			return nil, false
		}
		v, ok := p.value(depth)
		if !ok {
			return nil, false
		}
		m[k] = v
		if p.eat('}') {
			return m, true
		}
		if !p.eat(',') {
			return nil, false
		}
	}
}

// event reads the top-level object. Keys must be spelled exactly as the fields
// (encoding/json also accepts other cases: those go to the slow path); unknown
// keys are skipped, as encoding/json does.
func (p *fastParser) event(ej *eventJSON) bool {
	if !p.eat('{') {
		return false
	}
	if p.eat('}') {
		return true
	}
	for {
		k, ok := p.str()
		if !ok || !p.eat(':') {
			return false
		}
		if p.peek() == 'n' { // null: as in encoding/json, pointers and maps become nil, strings stay
			if !p.lit("null") || (!knownKey(k) && foldsToField(k)) {
				return false
			}
			switch k {
			case "confidence":
				ej.Confidence = nil
			case "data":
				ej.Data = nil
			case "context":
				ej.Context = nil
			}
		} else {
			switch k {
			case "id", "type", "severity", "summary":
				s, ok := p.str()
				if !ok {
					return false
				}
				switch k {
				case "id":
					ej.ID = s
				case "type":
					ej.Type = s
				case "severity":
					ej.Severity = s
				default:
					ej.Summary = s
				}
			case "confidence":
				f, ok := p.num()
				if !ok {
					return false
				}
				ej.Confidence = &f
			case "data", "context":
				m, ok := p.object(1)
				if !ok {
					return false
				}
				if k == "data" {
					ej.Data = m
				} else {
					ej.Context = m
				}
			default:
				// An unknown key is skipped, but a key that differs from a field
				// only by case would set it in encoding/json: slow path.
				if foldsToField(k) {
					return false
				}
				if _, ok := p.value(1); !ok {
					return false
				}
			}
		}
		if p.eat('}') {
			return true
		}
		if !p.eat(',') {
			return false
		}
	}
}

func knownKey(k string) bool {
	switch k {
	case "id", "type", "severity", "summary", "confidence", "data", "context":
		return true
	}
	return false
}

// foldsToField reports whether k equals a field name ignoring case.
func foldsToField(k string) bool {
	for _, f := range []string{"id", "type", "severity", "summary", "confidence", "data", "context"} {
		if len(f) == len(k) && equalFoldASCII(f, k) {
			return true
		}
	}
	return false
}

func equalFoldASCII(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// internTable keeps one copy of short strings seen in events (keys like
// "upstream", values like "DATABASE"), so a storm of similar events does not
// allocate them again and again. Readers load an immutable map without a lock;
// a new string is added by copying the map (rare after warm-up). It stops
// growing at internMax entries: a sender with endless distinct values only
// loses the optimisation.
var (
	internTable atomic.Pointer[map[string]string]
	internMu    sync.Mutex
)

const internMax, internLen = 1024, 32

func intern(b []byte) string {
	if len(b) > internLen {
		return string(b)
	}
	if m := internTable.Load(); m != nil {
		if s, ok := (*m)[string(b)]; ok { // no allocation: the compiler keys by the bytes
			return s
		}
	}
	s := string(b)
	internMu.Lock()
	defer internMu.Unlock()
	old := internTable.Load()
	n := 0
	if old != nil {
		n = len(*old)
	}
	if n >= internMax {
		return s
	}
	m := make(map[string]string, n+1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[s] = s
	internTable.Store(&m)
	return s
}
