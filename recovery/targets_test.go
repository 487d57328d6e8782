package recovery_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/backends"
	"github.com/recoverbot/recoverbot/runbooks"
)

// scaleBook scales the deployment the event names: the target is in
// parameters.deployment, where the Kubernetes driver reads it.
const scaleBook = `name: scale-pool
trigger:
  eventType: LATENCY_ANOMALY
actions:
  - type: SCALE_RESOURCE
    resource: POOL
    parameters: {deployment: '{{context.deployment}}', to: 50}
safety:
  requiresApproval: false
  maxExecutionsPerHour: 10
`

func scaleHarness(t *testing.T) *harness {
	t.Helper()
	books, err := runbooks.LoadFS(fstest.MapFS{"books/scale.yaml": {Data: []byte(scaleBook)}}, "books")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, recovery.ModeFull)
	h.close()
	h.books = books
	h.open()
	return h
}

func latency(id, deployment string) recovery.Event {
	return recovery.Event{ID: id, Type: runbooks.LatencyAnomaly, Severity: runbooks.Warning, Confidence: 0.9,
		Context: map[string]any{"deployment": deployment}}
}

// TestTwoDeploymentsAreTwoTargets: the scale runbook for svc-a, then for
// svc-b, makes two plans; the old TargetKey made both "resource/POOL", and the
// second was answered "duplicate … cooling down" (#11 item 1).
func TestTwoDeploymentsAreTwoTargets(t *testing.T) {
	h := scaleHarness(t)
	a := h.submit(latency("ev-a", "svc-a"))
	b := h.submit(latency("ev-b", "svc-b"))
	if a.Decision != recovery.DecideAuto || b.Decision != recovery.DecideAuto || a.PlanID == b.PlanID {
		t.Fatalf("answers: got %+v and %+v, want two auto plans", a, b)
	}
	h.idle()
	for id, want := range map[string]string{a.PlanID: "deployment/default/svc-a", b.PlanID: "deployment/default/svc-b"} {
		x := h.exec(id)
		if len(x.Targets) != 1 || x.Targets[0] != want || x.TargetKey != "scale-pool|"+want {
			t.Errorf("plan %s: targets %q, key %q; want [%s]", id, x.Targets, x.TargetKey, want)
		}
	}
	// The same deployment again is the duplicate.
	if c := h.submit(latency("ev-c", "svc-a")); c.Decision != recovery.DecideDuplicate {
		t.Errorf("svc-a again: got %s, want duplicate", c.Decision)
	}
}

// TestDriverRefusalRefusesThePlan: a rendered value the driver refuses is
// refused at plan time with the driver's reason, never executed, and starts no
// cooldown: the next valid event for the target is planned (#11 item 2).
func TestDriverRefusalRefusesThePlan(t *testing.T) {
	h := scaleHarness(t)
	bad := h.submit(latency("ev-bad", "API-GATEWAY"))
	if bad.Decision != recovery.DecideRefused || bad.PlanID != "" || len(bad.Reasons) != 1 ||
		!strings.Contains(bad.Reasons[0], `action 1 (SCALE_RESOURCE): invalid deployment name "API-GATEWAY"`) {
		t.Fatalf("answer: got %+v, want refused with the driver's reason", bad)
	}
	p, err := h.eng.Evaluate(&recovery.Event{Type: runbooks.LatencyAnomaly, Severity: runbooks.Warning, Confidence: 0.9,
		Context: map[string]any{"deployment": "API-GATEWAY"}})
	if err != nil || p.Decision != recovery.DecideRefused || !strings.Contains(strings.Join(p.Reasons, ";"), "invalid deployment name") {
		t.Errorf("Evaluate: got (%s %q, %v), want the same refusal", p.Decision, p.Reasons, err)
	}
	good := h.submit(latency("ev-good", "api-gateway"))
	if good.Decision != recovery.DecideAuto {
		t.Fatalf("the next valid event: got %+v, want planned", good)
	}
	h.idle()
	if calls := h.drv.Calls(); len(calls) != 1 || calls[0].Action.Parameters["deployment"] != "api-gateway" {
		t.Errorf("driver calls: got %+v, want only the valid one", calls)
	}
}

// TestTargetNamespaceResolved: an action without target.namespace is keyed in
// the driver's default namespace, never "deployment//x".
func TestTargetNamespaceResolved(t *testing.T) {
	h := scaleHarness(t)
	h.close()
	h.drv.Rules = backends.Rules{Namespace: "prod"}
	h.open()
	p, err := h.eng.Evaluate(&recovery.Event{Type: runbooks.LatencyAnomaly, Severity: runbooks.Warning, Confidence: 0.9,
		Context: map[string]any{"deployment": "svc-a"}})
	if err != nil || len(p.Targets) != 1 || p.Targets[0] != "deployment/prod/svc-a" {
		t.Errorf("Evaluate: got targets %q (%v), want [deployment/prod/svc-a]", p.Targets, err)
	}
}
