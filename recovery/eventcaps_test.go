package recovery

import (
	"strings"
	"testing"
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
