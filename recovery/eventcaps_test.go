package recovery

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// BoundEvent runs on every event: it must cost no allocation unless
// it refuses (a path is built only then).
func TestBoundEventAllocatesNothingWhenWithin(t *testing.T) {
	ev := Event{
		Summary: "payments is out of memory",
		Data:    map[string]any{"utilization": 95.0, "resourceType": "MEMORY", "series": []any{1.0, 2.0, map[string]any{"p99": 0.4}}},
		Context: map[string]any{"service": "payments", "pod": "payments-7d9f", "labels": map[string]any{"team": "pay"}},
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := BoundEvent(&ev); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per event within the bounds, want 0", n)
	}
	deep := map[string]any{"x": 1.0}
	for range MaxDataDepth {
		deep = map[string]any{"a": deep}
	}
	err := BoundEvent(&Event{Data: map[string]any{"list": []any{"ok", deep}}})
	if want := "data.list[1].a.a.a.a.a.a nests deeper than the limit of 8 levels"; err == nil || ErrorCode(err) != CodeTooLarge || err.Error() != want {
		t.Errorf("err %v, want %q", err, want)
	}
	err = BoundEvent(&Event{Context: map[string]any{strings.Repeat("k", 50): map[string]any{"v": strings.Repeat("v", MaxDataString+1)}}})
	if err == nil || !strings.Contains(err.Error(), `context."kkkkkkkkkkkkkkkkkkkkkk… [cut 28 bytes]".v: a value of 4097 bytes is longer than the limit of 4096 bytes`) {
		t.Errorf("err %v", err)
	}
}

// CutChars keeps Slack's character limits whatever the text (never half a
// rune, the marker counted) and says what it cut.
func TestCutChars(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"within", "ééé", 3, "ééé"},
		{"ascii", strings.Repeat("a", 100), 40, strings.Repeat("a", 24) + "… [cut 76 bytes]"}, // the marker is 16 characters
		{"two-byte runes count once", strings.Repeat("é", 100), 40, strings.Repeat("é", 23) + "… [cut 154 bytes]"},
		{"emoji", strings.Repeat("🔥", 50), 30, strings.Repeat("🔥", 13) + "… [cut 148 bytes]"},
		{"too short for the marker", strings.Repeat("é", 20), 5, "éééé…"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := CutChars(c.in, c.max)
			if got != c.want || utf8.RuneCountInString(got) > c.max || !utf8.ValidString(got) {
				t.Errorf("CutChars(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
			}
		})
	}
}
