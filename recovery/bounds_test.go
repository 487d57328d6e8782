package recovery_test

import (
	"context"
	"strings"
	"testing"

	"github.com/recoverbot/recoverbot/recovery"
)

// overDeep is a value nested one level past recovery.MaxDataDepth once it sits
// in data or context.
func overDeep() map[string]any {
	v := map[string]any{"x": 1.0}
	for range recovery.MaxDataDepth {
		v = map[string]any{"a": v}
	}
	return v
}

// Every way into the engine goes through recovery.BoundEvent (STYLE §14): a
// caller of the engine's API that is not the HTTP intake gets a long summary
// cut, marked, not refused (the #12 review: Submit refused it, only the two
// HTTP edges cut).
func TestEngineCutsALongSummary(t *testing.T) {
	h := newHarness(t, recovery.ModeDryRun)
	ev := referenceEvents(t)["CAPACITY_WARNING"]
	ev.ID = "long-summary"
	ev.Summary = strings.Repeat("stack frame\n", 5000)
	a, err := h.eng.Submit(context.Background(), ev)
	if err != nil {
		t.Fatalf("Submit with a %d-byte summary: %v; want it cut, not refused", len(ev.Summary), err)
	}
	rec, err := h.db.EventRecord(context.Background(), a.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.Event.Summary; len(got) > recovery.MaxTextBytes || !strings.HasPrefix(got, "stack frame\n") || !strings.Contains(got, "… [cut ") {
		t.Errorf("stored summary of %d bytes ending %q; want at most %d, marked as cut", len(got), got[max(0, len(got)-30):], recovery.MaxTextBytes)
	}
}

// /recover plan values go through the same bounds: over-deep values are
// refused with the limit named, by PlanManual and by Preview (on main both
// skipped ValidateEvent and took any value).
func TestManualPlanValuesAreBounded(t *testing.T) {
	h := newHarness(t, recovery.ModeDryRun)
	values := map[string]any{"namespace": "prod", "pod": "api-1", "extra": overDeep()}
	const want = "nests deeper than the limit of 8 levels"
	_, err := h.eng.PlanManual(context.Background(), "restart-pod-memory-leak", values, "U1")
	if recovery.ErrorCode(err) != recovery.CodeTooLarge || err == nil || !strings.Contains(err.Error(), "context.extra") || !strings.Contains(err.Error(), want) {
		t.Errorf("PlanManual with over-deep values: %v; want %s naming context.extra and %q", err, recovery.CodeTooLarge, want)
	}
	_, err = h.eng.Preview("restart-pod-memory-leak", values, "U1")
	if recovery.ErrorCode(err) != recovery.CodeTooLarge || err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Preview with over-deep values: %v; want %s with %q", err, recovery.CodeTooLarge, want)
	}
}

// A resolved alert is held to the same bounds (on main Resolve skipped them,
// and the Alertmanager edge checked again on its own).
func TestResolveIsBounded(t *testing.T) {
	h := newHarness(t, recovery.ModeDryRun)
	ev := recovery.Event{ID: "am_fp_resolved", Fingerprint: "fp", Source: "alertmanager",
		Summary: strings.Repeat("é", recovery.MaxTextBytes), Context: map[string]any{"deep": overDeep()}}
	_, err := h.eng.Resolve(context.Background(), ev)
	if recovery.ErrorCode(err) != recovery.CodeTooLarge || !strings.Contains(err.Error(), "context.deep") {
		t.Fatalf("Resolve over the bounds: %v; want %s naming context.deep", err, recovery.CodeTooLarge)
	}
	ev.Context = nil
	a, err := h.eng.Resolve(context.Background(), ev)
	if err != nil {
		t.Fatalf("Resolve with a long summary: %v; want it cut, not refused", err)
	}
	rec, err := h.db.EventRecord(context.Background(), a.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.Event.Summary; len(got) > recovery.MaxTextBytes || !strings.Contains(got, "… [cut ") {
		t.Errorf("stored summary of %d bytes; want at most %d, marked as cut", len(got), recovery.MaxTextBytes)
	}
}
