package runbooks

import "testing"

// The matcher's array index must cover every event type the model declares; a
// type added to EventTypes without a case in typeIndex would panic at load.
func TestTypeIndexCoversEventTypes(t *testing.T) {
	if len(EventTypes) != numEventTypes {
		t.Fatalf("len(EventTypes) = %d, numEventTypes = %d", len(EventTypes), numEventTypes)
	}
	for i, et := range EventTypes {
		if got := typeIndex(et); got != i {
			t.Errorf("typeIndex(%s) = %d, want %d", et, got, i)
		}
	}
	if got := typeIndex("NOPE"); got != -1 {
		t.Errorf("typeIndex(NOPE) = %d, want -1", got)
	}
}
