package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/recoverbot/recoverbot/runbooks"
)

const (
	smp       = "application/strategic-merge-patch+json"
	jsonPatch = "application/json-patch+json"
	annPath   = "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt"
	c0        = "/spec/template/spec/containers/0"
	c1        = "/spec/template/spec/containers/1"
	c2        = "/spec/template/spec/containers/2"
)

// deployment is prod/api-gateway at generation 7, fully rolled out.
func deployment(change ...func(*appsv1.Deployment)) *appsv1.Deployment {
	replicas := int32(3)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "api-gateway", UID: "uid-dep",
			Generation: 7, ResourceVersion: "100"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "app", Image: "api:1", Env: []corev1.EnvVar{{Name: "DB_POOL_SIZE", Value: "20"}, {Name: "LOG_LEVEL", Value: "info"}}},
				{Name: "sidecar", Image: "proxy:1", Env: []corev1.EnvVar{{Name: "OTHER", Value: "1"}}},
				{Name: "proxy", Image: "envoy:1"},
			}}},
		},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 7, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3},
	}
	for _, f := range change {
		f(d)
	}
	return d
}

func service() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "payments", UID: "uid-svc", ResourceVersion: "200"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "payments-primary", "tier": "web"}},
	}
}

func newDriver(c *fake.Clientset, clk *fakeClock) *Driver {
	return New(c, "prod", WithNow(clk.Now), WithWait(clk.Wait), WithPollInterval(10*time.Second))
}

var (
	restartAction = runbooks.Action{Type: runbooks.RestartPod,
		Parameters: map[string]any{"deployment": "api-gateway", "graceful": true, "drainTimeout": 30.0}}
	replicasAction = runbooks.Action{Type: runbooks.ScaleResource, Resource: "replicas",
		Target: runbooks.Target{Namespace: "prod", Deployment: "api-gateway"}, Parameters: map[string]any{"to": 5.0}}
	gradualAction = runbooks.Action{Type: runbooks.ScaleResource, Resource: "DB_POOL_SIZE", Gradual: true,
		Target:     runbooks.Target{Namespace: "prod", Deployment: "api-gateway"},
		Parameters: map[string]any{"from": 20.0, "to": 50.0, "increment": 10.0, "intervalSeconds": 30.0}}
	envAction = runbooks.Action{Type: runbooks.ScaleResource, Resource: "DB_POOL_SIZE",
		Target: runbooks.Target{Deployment: "api-gateway"}, Parameters: map[string]any{"to": 50.0}}
	failoverAction = runbooks.Action{Type: runbooks.Failover, Target: runbooks.Target{Namespace: "prod", Service: "payments"},
		Parameters: map[string]any{"from": "payments-primary", "to": "payments-backup"}}
)

func TestDescribeSendsNothing(t *testing.T) {
	tests := []struct {
		name   string
		action runbooks.Action
		want   string
	}{
		{"restart", restartAction, "rollout restart of deployment prod/api-gateway (pod template annotation kubectl.kubernetes.io/restartedAt set to now), then wait up to 30s for the rollout"},
		{"replicas", replicasAction, "scale deployment prod/api-gateway to 5 replicas"},
		{"gradual env", gradualAction, "set DB_POOL_SIZE 20 → 50 on every container of deployment prod/api-gateway in 3 steps (30, 40, 50), 30s apart"},
		{"env", envAction, "set DB_POOL_SIZE to 50 on every container of deployment prod/api-gateway"},
		{"failover", failoverAction, "switch service prod/payments selector app=payments-primary → app=payments-backup"},
		{"invalid name refused", runbooks.Action{Type: runbooks.RestartPod, Target: runbooks.Target{Deployment: "API_gateway"}},
			`RESTART_POD: refused: invalid deployment name "API_gateway"`},
		{"other action type", runbooks.Action{Type: runbooks.CacheClear}, "CACHE_CLEAR: refused: the kubernetes driver does not handle CACHE_CLEAR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, deployment(), service())
			got := newDriver(c, newClock()).Describe(tt.action)
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("Describe = %q, want %q", got, tt.want)
			}
			checkActions(t, c) // none
		})
	}
}

func TestInvalidInputRefusedBeforeAnyCall(t *testing.T) {
	with := func(a runbooks.Action, f func(*runbooks.Action)) runbooks.Action {
		a.Parameters = map[string]any{}
		for k, v := range gradualAction.Parameters {
			a.Parameters[k] = v
		}
		f(&a)
		return a
	}
	tests := []struct {
		name   string
		action runbooks.Action
		want   string
	}{
		{"namespace not a DNS label", with(gradualAction, func(a *runbooks.Action) { a.Target.Namespace = "prod.eu" }), `invalid namespace name "prod.eu"`},
		{"namespace with a slash", with(gradualAction, func(a *runbooks.Action) { a.Target.Namespace = "../kube-system" }), "invalid namespace name"},
		{"deployment with a space", with(gradualAction, func(a *runbooks.Action) { a.Target.Deployment = "api gateway" }), `invalid deployment name "api gateway"`},
		{"deployment from parameters", runbooks.Action{Type: runbooks.RestartPod, Parameters: map[string]any{"deployment": "x;rm -rf /"}}, "invalid deployment name"},
		{"no deployment", runbooks.Action{Type: runbooks.RestartPod}, "RESTART_POD needs target.deployment"},
		{"service uppercase", runbooks.Action{Type: runbooks.Failover, Target: runbooks.Target{Service: "Payments"},
			Parameters: failoverAction.Parameters}, `invalid service name "Payments"`},
		{"failover without service", runbooks.Action{Type: runbooks.Failover, Parameters: failoverAction.Parameters}, "only with target.service"},
		{"failover label value", runbooks.Action{Type: runbooks.Failover, Target: runbooks.Target{Service: "payments"},
			Parameters: map[string]any{"from": "a", "to": "b c"}}, `parameters.to "b c" is not a label value`},
		{"env name not a C identifier", with(gradualAction, func(a *runbooks.Action) { a.Resource = "DB-POOL" }), `resource "DB-POOL" is neither`},
		{"env name with a space", with(gradualAction, func(a *runbooks.Action) { a.Resource = "A B" }), "is neither"},
		{"gradual without increment", with(gradualAction, func(a *runbooks.Action) { delete(a.Parameters, "increment") }), "parameters.increment must be a number"},
		{"gradual with zero increment", with(gradualAction, func(a *runbooks.Action) { a.Parameters["increment"] = 0.0 }), "parameters.increment must be positive"},
		{"too many steps", with(gradualAction, func(a *runbooks.Action) { a.Parameters["increment"] = 0.01 }), "more than 100"},
		{"replicas not whole", runbooks.Action{Type: runbooks.ScaleResource, Resource: "replicas",
			Target: runbooks.Target{Deployment: "api-gateway"}, Parameters: map[string]any{"to": 2.5}}, "parameters.to must be a whole number"},
		{"negative drain timeout", runbooks.Action{Type: runbooks.RestartPod, Target: runbooks.Target{Deployment: "api-gateway"},
			Parameters: map[string]any{"drainTimeout": -1.0}}, "drainTimeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, deployment(), service())
			before, err := newDriver(c, newClock()).Apply(t.Context(), tt.action, (&recorder{}).report)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Apply error = %v, want it to contain %q", err, tt.want)
			}
			if before != nil {
				t.Errorf("Apply returned state %s for a refused action", before)
			}
			checkActions(t, c) // none
		})
	}
}

func TestUndoRefusesBadStateBeforeAnyCall(t *testing.T) {
	tests := []struct {
		name   string
		action runbooks.Action
		state  string
		want   string
	}{
		{"namespace", restartAction, `{"v":1,"kind":"restart","namespace":"Prod","name":"api-gateway","restart":{"wrote":"x"}}`, `invalid namespace name "Prod"`},
		{"deployment", restartAction, `{"v":1,"kind":"restart","namespace":"prod","name":"api/gateway","restart":{"wrote":"x"}}`, `invalid deployment name "api/gateway"`},
		{"service", failoverAction, `{"v":1,"kind":"selector","namespace":"prod","name":"a_b","selector":{"key":"app","previous":{},"wrote":{}}}`, `invalid service name "a_b"`},
		{"kind of another action", failoverAction, `{"v":1,"kind":"env","namespace":"prod","name":"api-gateway"}`, "does not belong to a FAILOVER action"},
		{"unknown version", restartAction, `{"v":2,"kind":"restart","namespace":"prod","name":"api-gateway"}`, "version 2"},
		{"incomplete", restartAction, `{"v":1,"kind":"restart","namespace":"prod","name":"api-gateway"}`, "incomplete"},
		{"env name", gradualAction, `{"v":1,"kind":"env","namespace":"prod","name":"api-gateway","env":{"name":"A-B","containers":[{"container":"app","wrote":"1"}]}}`, "incomplete"},
		{"not json", restartAction, `{`, "decode state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, deployment(), service())
			err := newDriver(c, newClock()).Undo(t.Context(), tt.action, json.RawMessage(tt.state), (&recorder{}).report)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Undo error = %v, want it to contain %q", err, tt.want)
			}
			checkActions(t, c) // none
		})
	}
}

// rolledOut makes the deployment's status say generation gen is fully rolled out.
func rolledOut(gen int64) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: gen, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3}
	}
}

func TestRestart(t *testing.T) {
	tests := []struct {
		name     string
		previous *string // restartedAt before the action
		undo     string  // the last op of the undo patch
		undone   string  // report line of the undo
	}{
		{"annotation absent: undo removes it", nil,
			`{"op":"remove","path":"` + annPath + `"}`,
			"deployment prod/api-gateway: kubectl.kubernetes.io/restartedAt removed again; this starts a rollout back to the previous pod template"},
		{"annotation set: undo restores it", new("2026-05-01T08:00:00Z"),
			`{"op":"replace","path":"` + annPath + `","value":"2026-05-01T08:00:00Z"}`,
			"deployment prod/api-gateway: kubectl.kubernetes.io/restartedAt restored to 2026-05-01T08:00:00Z; this starts a rollout back to the previous pod template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dep := deployment(func(d *appsv1.Deployment) {
				d.Spec.Template.Annotations = map[string]string{"team": "edge"}
				if tt.previous != nil {
					d.Spec.Template.Annotations[RestartedAtAnnotation] = *tt.previous
				}
			})
			c := newCluster(t, dep)
			clk := newClock()
			// The controller finishes the rollout during the second pause.
			clk.onWait = func(n int) {
				if n == 2 {
					edit(t, c, "prod", "api-gateway", rolledOut(8))
				}
			}
			rec := &recorder{}
			d := newDriver(c, clk)

			raw, err := d.Apply(t.Context(), restartAction, rec.report)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			checkActions(t, c,
				"get deployments prod/api-gateway",
				"patch deployments prod/api-gateway "+smp+` {"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-05-04T10:00:00Z"}}}}}`,
				"get deployments prod/api-gateway", // t=0: status still at generation 7
				"get deployments prod/api-gateway", // t=10s: still
				"get deployments prod/api-gateway", // t=20s: done
			)
			checkLines(t, rec,
				"deployment prod/api-gateway: rollout restart started (kubectl.kubernetes.io/restartedAt=2026-05-04T10:00:00Z)",
				"deployment prod/api-gateway: rollout finished: 3/3 updated, 3 available")
			if got, want := fmt.Sprint(clk.Waits()), "[10s 10s]"; got != want {
				t.Errorf("waits = %s, want %s", got, want)
			}
			got := stored(t, c, "prod", "api-gateway").Spec.Template.Annotations
			if got[RestartedAtAnnotation] != "2026-05-04T10:00:00Z" || got["team"] != "edge" {
				t.Errorf("annotations after restart = %v", got)
			}

			c.ClearActions()
			rec = &recorder{}
			if err := d.Undo(t.Context(), restartAction, raw, rec.report); err != nil {
				t.Fatalf("Undo: %v", err)
			}
			checkActions(t, c,
				"get deployments prod/api-gateway",
				"patch deployments prod/api-gateway "+jsonPatch+` [{"op":"test","path":"/metadata/generation","value":8},`+
					`{"op":"test","path":"`+annPath+`","value":"2026-05-04T10:00:00Z"},`+tt.undo+`]`)
			checkLines(t, rec, tt.undone)
			got = stored(t, c, "prod", "api-gateway").Spec.Template.Annotations
			want := map[string]string{"team": "edge"}
			if tt.previous != nil {
				want[RestartedAtAnnotation] = *tt.previous
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("annotations after undo = %v, want %v", got, want)
			}
		})
	}
}

func TestRestartRolloutTimesOut(t *testing.T) {
	c := newCluster(t, deployment())
	clk := newClock()
	// Rollout stuck: one new pod up, two old ones still serving.
	edit(t, c, "prod", "api-gateway", func(d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 7, Replicas: 4, UpdatedReplicas: 1, AvailableReplicas: 1}
	})
	clk.onWait = func(n int) {
		if n == 1 {
			edit(t, c, "prod", "api-gateway", func(d *appsv1.Deployment) { d.Status.ObservedGeneration = 8 })
		}
	}
	rec := &recorder{}
	raw, err := newDriver(c, clk).Apply(t.Context(), restartAction, rec.report)
	if err == nil || !strings.Contains(err.Error(), "rollout not finished after 30s: 1/3 updated, 1 available") {
		t.Fatalf("Apply error = %v, want the rollout timeout", err)
	}
	// The restart happened, so the state comes back for the rollback.
	var st before
	if err := json.Unmarshal(raw, &st); err != nil || st.Restart == nil || st.Restart.Wrote != "2026-05-04T10:00:00Z" || st.Generation != 8 {
		t.Errorf("state = %s (%v), want the restart recorded at generation 8", raw, err)
	}
	checkLines(t, rec,
		"deployment prod/api-gateway: rollout restart started (kubectl.kubernetes.io/restartedAt=2026-05-04T10:00:00Z)",
		"rollout not finished after 30s: 1/3 updated, 1 available")
	// Polls at 0, 10, 20 and 30 s of fake time; no real sleeping.
	if got, want := fmt.Sprint(clk.Waits()), "[10s 10s 10s]"; got != want {
		t.Errorf("waits = %s, want %s", got, want)
	}
	if n := len(actions(c)); n != 6 {
		t.Errorf("sent %d requests, want 6 (get, patch, 4 status reads):\n%s", n, lines(actions(c)))
	}
}

func TestRestartRolloutProgressDeadlineExceeded(t *testing.T) {
	c := newCluster(t, deployment())
	clk := newClock()
	clk.onWait = func(n int) {
		edit(t, c, "prod", "api-gateway", func(d *appsv1.Deployment) {
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: 8, Replicas: 4, UpdatedReplicas: 1,
				AvailableReplicas: 3, Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing,
					Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"}}}
		})
	}
	rec := &recorder{}
	raw, err := newDriver(c, clk).Apply(t.Context(), restartAction, rec.report)
	if err == nil || !strings.Contains(err.Error(), "progress deadline exceeded: 1/3 updated, 3 available") || raw == nil {
		t.Fatalf("Apply = %s, %v; want the state and a progress deadline error", raw, err)
	}
	if got := len(clk.Waits()); got != 1 {
		t.Errorf("waited %d times, want 1: a failed rollout is reported at once", got)
	}
}

func TestRestartStopsWaitingWhenCancelled(t *testing.T) {
	c := newCluster(t, deployment())
	clk := newClock()
	ctx, cancel := context.WithCancel(t.Context())
	clk.onWait = func(int) { cancel() }
	raw, err := newDriver(c, clk).Apply(ctx, restartAction, (&recorder{}).report)
	if !errors.Is(err, context.Canceled) || raw == nil {
		t.Fatalf("Apply = %s, %v; want the state and context.Canceled", raw, err)
	}
}

func TestScaleReplicas(t *testing.T) {
	c := newCluster(t, deployment())
	rec := &recorder{}
	d := newDriver(c, newClock())
	raw, err := d.Apply(t.Context(), replicasAction, rec.report)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkActions(t, c,
		"get deployments prod/api-gateway",
		"get deployments/scale prod/api-gateway",
		"update deployments/scale prod/api-gateway replicas=5 rv=100")
	checkLines(t, rec, "deployment prod/api-gateway: replicas 3 → 5")
	if got := specReplicas(stored(t, c, "prod", "api-gateway")); got != 5 {
		t.Errorf("replicas after Apply = %d, want 5", got)
	}

	// The controller updates the status meanwhile: resourceVersion moves, generation does not.
	edit(t, c, "prod", "api-gateway", func(d *appsv1.Deployment) { d.Status.Replicas = 5 })
	c.ClearActions()
	rec = &recorder{}
	if err := d.Undo(t.Context(), replicasAction, raw, rec.report); err != nil {
		t.Fatalf("Undo: %v", err)
	}
	checkActions(t, c,
		"get deployments prod/api-gateway",
		"get deployments/scale prod/api-gateway",
		"update deployments/scale prod/api-gateway replicas=3 rv=102")
	checkLines(t, rec, "deployment prod/api-gateway: replicas 5 → 3 (restored)")
	if got := specReplicas(stored(t, c, "prod", "api-gateway")); got != 3 {
		t.Errorf("replicas after Undo = %d, want 3", got)
	}

	// A second undo (say after a crash mid-rollback) finds nothing to do.
	c.ClearActions()
	rec = &recorder{}
	if err := d.Undo(t.Context(), replicasAction, raw, rec.report); err != nil {
		t.Fatalf("second Undo: %v", err)
	}
	checkActions(t, c, "get deployments prod/api-gateway")
	checkLines(t, rec, "deployment prod/api-gateway already has 3 replicas again: nothing to undo")
}

func TestScaleReplicasRetriesAConflict(t *testing.T) {
	c := newCluster(t, deployment())
	conflicts := 0
	// The controller writes status between our read and our update, once.
	c.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "scale" && conflicts == 0 {
			conflicts++
			old, _ := trackedDeployment(c.Tracker(), "prod", "api-gateway")
			upd := old.DeepCopy()
			upd.Status.ReadyReplicas = 2
			if _, err := commit(c.Tracker(), old, upd); err != nil {
				return true, nil, err
			}
		}
		return false, nil, nil
	})
	raw, err := newDriver(c, newClock()).Apply(t.Context(), replicasAction, (&recorder{}).report)
	if err != nil || raw == nil {
		t.Fatalf("Apply = %s, %v", raw, err)
	}
	checkActions(t, c,
		"get deployments prod/api-gateway",
		"get deployments/scale prod/api-gateway",
		"update deployments/scale prod/api-gateway replicas=5 rv=100", // 409
		"get deployments prod/api-gateway",
		"get deployments/scale prod/api-gateway",
		"update deployments/scale prod/api-gateway replicas=5 rv=101")
	var st before
	if err := json.Unmarshal(raw, &st); err != nil || st.Generation != 8 || st.Replicas.Previous != 3 {
		t.Errorf("state = %s, want previous 3 at generation 8", raw)
	}
	if got := stored(t, c, "prod", "api-gateway").Generation; got != 8 {
		t.Errorf("generation = %d, want 8", got)
	}
}

// envPatch is the JSON patch one gradual step sends for the deployment()
// fixture: app had DB_POOL_SIZE (index 0), sidecar and proxy get it added by
// the first step (at env/1 and env/0).
func envStep(gen int64, from, to string, first bool) string {
	entry := func(v string) string { return `{"name":"DB_POOL_SIZE","value":"` + v + `"}` }
	b := `[{"op":"test","path":"/metadata/generation","value":` + fmt.Sprint(gen) + `},` +
		`{"op":"test","path":"` + c0 + `/name","value":"app"},` +
		`{"op":"test","path":"` + c0 + `/env/0","value":` + entry(from) + `},` +
		`{"op":"add","path":"` + c0 + `/env/0/value","value":"` + to + `"},` +
		`{"op":"test","path":"` + c1 + `/name","value":"sidecar"},`
	if first {
		b += `{"op":"add","path":"` + c1 + `/env/-","value":` + entry(to) + `},` +
			`{"op":"test","path":"` + c2 + `/name","value":"proxy"},` +
			`{"op":"add","path":"` + c2 + `/env","value":[` + entry(to) + `]}]`
	} else {
		b += `{"op":"test","path":"` + c1 + `/env/1","value":` + entry(from) + `},` +
			`{"op":"add","path":"` + c1 + `/env/1/value","value":"` + to + `"},` +
			`{"op":"test","path":"` + c2 + `/name","value":"proxy"},` +
			`{"op":"test","path":"` + c2 + `/env/0","value":` + entry(from) + `},` +
			`{"op":"add","path":"` + c2 + `/env/0/value","value":"` + to + `"}]`
	}
	return "patch deployments prod/api-gateway " + jsonPatch + " " + b
}

func envOf(dep *appsv1.Deployment) string {
	var parts []string
	for _, c := range dep.Spec.Template.Spec.Containers {
		var env []string
		for _, e := range c.Env {
			env = append(env, e.Name+"="+e.Value)
		}
		parts = append(parts, c.Name+":"+strings.Join(env, ","))
	}
	return strings.Join(parts, " ")
}

func TestScaleEnvGradualAndUndo(t *testing.T) {
	c := newCluster(t, deployment())
	clk := newClock()
	rec := &recorder{}
	d := newDriver(c, clk)
	raw, err := d.Apply(t.Context(), gradualAction, rec.report)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkActions(t, c,
		"get deployments prod/api-gateway",
		envStep(7, "20", "30", true),
		envStep(8, "30", "40", false),
		envStep(9, "40", "50", false))
	checkLines(t, rec,
		"note: container sidecar had DB_POOL_SIZE unset, the runbook expected 20",
		"note: container proxy had DB_POOL_SIZE unset, the runbook expected 20",
		"DB_POOL_SIZE 20 → 30 (step 1/3)",
		"DB_POOL_SIZE 30 → 40 (step 2/3)",
		"DB_POOL_SIZE 40 → 50 (step 3/3)")
	if got, want := fmt.Sprint(clk.Waits()), "[30s 30s]"; got != want {
		t.Errorf("pauses = %s, want %s (between steps only)", got, want)
	}
	if got, want := envOf(stored(t, c, "prod", "api-gateway")),
		"app:DB_POOL_SIZE=50,LOG_LEVEL=info sidecar:OTHER=1,DB_POOL_SIZE=50 proxy:DB_POOL_SIZE=50"; got != want {
		t.Errorf("env after Apply = %s, want %s", got, want)
	}

	// Status churn between Apply and Undo: resourceVersion moves, which must not matter.
	edit(t, c, "prod", "api-gateway", rolledOut(10))
	c.ClearActions()
	rec = &recorder{}
	if err := d.Undo(t.Context(), gradualAction, raw, rec.report); err != nil {
		t.Fatalf("Undo: %v", err)
	}
	entry50 := `{"name":"DB_POOL_SIZE","value":"50"}`
	checkActions(t, c,
		"get deployments prod/api-gateway",
		"patch deployments prod/api-gateway "+jsonPatch+` [{"op":"test","path":"/metadata/generation","value":10},`+
			`{"op":"test","path":"`+c0+`/name","value":"app"},{"op":"test","path":"`+c0+`/env/0","value":`+entry50+`},`+
			`{"op":"add","path":"`+c0+`/env/0/value","value":"20"},`+
			`{"op":"test","path":"`+c1+`/name","value":"sidecar"},{"op":"test","path":"`+c1+`/env/1","value":`+entry50+`},`+
			`{"op":"remove","path":"`+c1+`/env/1"},`+
			`{"op":"test","path":"`+c2+`/name","value":"proxy"},{"op":"test","path":"`+c2+`/env/0","value":`+entry50+`},`+
			`{"op":"remove","path":"`+c2+`/env/0"}]`)
	checkLines(t, rec, "deployment prod/api-gateway: DB_POOL_SIZE restored: app 20, sidecar (removed), proxy (removed)")
	if got, want := envOf(stored(t, c, "prod", "api-gateway")),
		"app:DB_POOL_SIZE=20,LOG_LEVEL=info sidecar:OTHER=1 proxy:"; got != want {
		t.Errorf("env after Undo = %s, want %s", got, want)
	}
}

func TestScaleEnvStraightToTarget(t *testing.T) {
	c := newCluster(t, deployment(func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers = d.Spec.Template.Spec.Containers[:1] // app only, DB_POOL_SIZE=20
	}))
	clk := newClock()
	rec := &recorder{}
	raw, err := newDriver(c, clk).Apply(t.Context(), envAction, rec.report) // namespace from the default
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkActions(t, c,
		"get deployments prod/api-gateway",
		"patch deployments prod/api-gateway "+jsonPatch+` [{"op":"test","path":"/metadata/generation","value":7},`+
			`{"op":"test","path":"`+c0+`/name","value":"app"},`+
			`{"op":"test","path":"`+c0+`/env/0","value":{"name":"DB_POOL_SIZE","value":"20"}},`+
			`{"op":"add","path":"`+c0+`/env/0/value","value":"50"}]`)
	checkLines(t, rec, "DB_POOL_SIZE 20 → 50")
	if len(clk.Waits()) != 0 {
		t.Errorf("paused %v, want no pause for a single step", clk.Waits())
	}
	var st before
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	if st.Generation != 8 || len(st.Env.Containers) != 1 || *st.Env.Containers[0].Previous != "20" || st.Env.Containers[0].Wrote != "50" {
		t.Errorf("state = %s", raw)
	}
}

func TestScaleEnvRefusesValueFrom(t *testing.T) {
	c := newCluster(t, deployment(func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[1].Env = []corev1.EnvVar{{Name: "DB_POOL_SIZE", ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "pool"}}}}
	}))
	raw, err := newDriver(c, newClock()).Apply(t.Context(), gradualAction, (&recorder{}).report)
	if err == nil || !strings.Contains(err.Error(), "container sidecar sets DB_POOL_SIZE from valueFrom") || raw != nil {
		t.Fatalf("Apply = %s, %v; want a valueFrom refusal and no state", raw, err)
	}
	checkActions(t, c, "get deployments prod/api-gateway") // no patch
}

func TestScaleEnvNothingToChange(t *testing.T) {
	c := newCluster(t, deployment(func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers = d.Spec.Template.Spec.Containers[:1]
		d.Spec.Template.Spec.Containers[0].Env[0].Value = "50"
	}))
	raw, err := newDriver(c, newClock()).Apply(t.Context(), envAction, (&recorder{}).report)
	if err != nil || raw != nil {
		t.Fatalf("Apply = %s, %v; want nil state (nothing changed)", raw, err)
	}
	checkActions(t, c, "get deployments prod/api-gateway")
}

func TestScaleEnvPartialFailureReturnsStateAndUndoes(t *testing.T) {
	c := newCluster(t, deployment())
	patches := 0
	c.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		patches++
		if patches == 2 {
			return true, nil, errors.New("etcdserver: request timed out")
		}
		return false, nil, nil
	})
	d := newDriver(c, newClock())
	raw, err := d.Apply(t.Context(), gradualAction, (&recorder{}).report)
	if err == nil || !strings.Contains(err.Error(), "request timed out") {
		t.Fatalf("Apply error = %v, want the second patch's error", err)
	}
	var st before
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf("state %s: %v", raw, err)
	}
	if st.Generation != 8 || st.Env.Containers[0].Wrote != "30" || st.Env.Containers[1].Previous != nil {
		t.Errorf("state = %s, want step 1 (30) recorded at generation 8", raw)
	}
	if err := d.Undo(t.Context(), gradualAction, raw, (&recorder{}).report); err != nil {
		t.Fatalf("Undo: %v", err)
	}
	if got, want := envOf(stored(t, c, "prod", "api-gateway")),
		"app:DB_POOL_SIZE=20,LOG_LEVEL=info sidecar:OTHER=1 proxy:"; got != want {
		t.Errorf("env after Undo = %s, want %s", got, want)
	}
}

func TestScaleEnvStopsBetweenStepsWhenCancelled(t *testing.T) {
	c := newCluster(t, deployment())
	clk := newClock()
	ctx, cancel := context.WithCancel(t.Context())
	clk.onWait = func(int) { cancel() }
	raw, err := newDriver(c, clk).Apply(ctx, gradualAction, (&recorder{}).report)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped after step 1/3") {
		t.Fatalf("Apply error = %v, want cancellation after step 1", err)
	}
	if raw == nil {
		t.Fatal("no state after a partial change")
	}
	if n := len(actions(c)); n != 2 {
		t.Errorf("sent %d requests, want get and one patch", n)
	}
}

func TestFailover(t *testing.T) {
	c := newCluster(t, service())
	rec := &recorder{}
	d := newDriver(c, newClock())
	raw, err := d.Apply(t.Context(), failoverAction, rec.report)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkActions(t, c,
		"get services prod/payments",
		"patch services prod/payments "+jsonPatch+` [{"op":"test","path":"/spec/selector","value":{"app":"payments-primary","tier":"web"}},`+
			`{"op":"replace","path":"/spec/selector/app","value":"payments-backup"}]`)
	checkLines(t, rec, "service prod/payments: selector app=payments-primary → app=payments-backup")

	// Unrelated change to the service: resourceVersion moves, selector does not.
	obj, _ := c.Tracker().Get(servicesGVR, "prod", "payments")
	svc := obj.(*corev1.Service).DeepCopy()
	svc.ResourceVersion, svc.Annotations = "999", map[string]string{"note": "x"}
	if err := c.Tracker().Update(servicesGVR, svc, "prod"); err != nil {
		t.Fatal(err)
	}
	c.ClearActions()
	rec = &recorder{}
	if err := d.Undo(t.Context(), failoverAction, raw, rec.report); err != nil {
		t.Fatalf("Undo: %v", err)
	}
	checkActions(t, c,
		"get services prod/payments",
		"patch services prod/payments "+jsonPatch+` [{"op":"test","path":"/spec/selector","value":{"app":"payments-backup","tier":"web"}},`+
			`{"op":"replace","path":"/spec/selector","value":{"app":"payments-primary","tier":"web"}}]`)
	checkLines(t, rec, "service prod/payments: selector restored to app=payments-primary,tier=web")
	obj, _ = c.Tracker().Get(servicesGVR, "prod", "payments")
	if got := formatSelector(obj.(*corev1.Service).Spec.Selector); got != "app=payments-primary,tier=web" {
		t.Errorf("selector after Undo = %s", got)
	}
}

func TestFailoverSelectorKeyWithSlash(t *testing.T) {
	svc := service()
	svc.Spec.Selector = map[string]string{"app.kubernetes.io/name": "payments-primary"}
	c := newCluster(t, svc)
	a := failoverAction
	a.Parameters = map[string]any{"from": "payments-primary", "to": "payments-backup", "selectorKey": "app.kubernetes.io/name"}
	if _, err := newDriver(c, newClock()).Apply(t.Context(), a, (&recorder{}).report); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkActions(t, c,
		"get services prod/payments",
		"patch services prod/payments "+jsonPatch+` [{"op":"test","path":"/spec/selector","value":{"app.kubernetes.io/name":"payments-primary"}},`+
			`{"op":"replace","path":"/spec/selector/app.kubernetes.io~1name","value":"payments-backup"}]`)
}

func TestFailoverRefusesWhenPrimaryIsNotSelected(t *testing.T) {
	svc := service()
	svc.Spec.Selector["app"] = "payments-canary"
	c := newCluster(t, svc)
	raw, err := newDriver(c, newClock()).Apply(t.Context(), failoverAction, (&recorder{}).report)
	if err == nil || !strings.Contains(err.Error(), `selector has app "payments-canary", expected "payments-primary"`) || raw != nil {
		t.Fatalf("Apply = %s, %v", raw, err)
	}
	checkActions(t, c, "get services prod/payments")
}

// TestUndoDetectsChanges: whatever someone else did between Apply and Undo, Undo
// reports it and sends nothing but its GET.
func TestUndoDetectsChanges(t *testing.T) {
	tests := []struct {
		name   string
		action runbooks.Action
		change func(t *testing.T, c *fake.Clientset)
		get    []string // Undo's reads
		want   string
	}{
		{"env var changed by someone else", envAction, func(t *testing.T, c *fake.Clientset) {
			edit(t, c, "prod", "api-gateway", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Env[0].Value = "35" })
		}, []string{"get deployments prod/api-gateway"},
			"deployment prod/api-gateway was changed by someone else since the action (generation 8 → 9): not rolled back"},
		{"env var value changed, generation not (defence in depth)", envAction, func(t *testing.T, c *fake.Clientset) {
			dep := stored(t, c, "prod", "api-gateway")
			dep.Spec.Template.Spec.Containers[1].Env[1].Value = "35"
			if err := c.Tracker().Update(deploymentsGVR, dep, "prod"); err != nil {
				t.Fatal(err)
			}
		}, []string{"get deployments prod/api-gateway"},
			`deployment prod/api-gateway was changed by someone else since the action (DB_POOL_SIZE in container sidecar is "35", we set "50"): not rolled back`},
		{"image changed (generation moved)", envAction, func(t *testing.T, c *fake.Clientset) {
			edit(t, c, "prod", "api-gateway", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "api:2" })
			edit(t, c, "prod", "api-gateway", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "api:3" })
		}, []string{"get deployments prod/api-gateway"},
			"deployment prod/api-gateway was changed by someone else since the action (generation 8 → 10): not rolled back"},
		{"env var switched to valueFrom", envAction, func(t *testing.T, c *fake.Clientset) {
			edit(t, c, "prod", "api-gateway", func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.Containers[0].Env[0] = corev1.EnvVar{Name: "DB_POOL_SIZE",
					ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}
			})
		}, []string{"get deployments prod/api-gateway"},
			"deployment prod/api-gateway was changed by someone else since the action (container app sets DB_POOL_SIZE from valueFrom"},
		{"deployment deleted and created again", envAction, func(t *testing.T, c *fake.Clientset) {
			if err := c.Tracker().Delete(deploymentsGVR, "prod", "api-gateway"); err != nil {
				t.Fatal(err)
			}
			fresh := deployment(func(d *appsv1.Deployment) { d.UID, d.Generation = "uid-new", 1 })
			if err := c.Tracker().Add(fresh); err != nil {
				t.Fatal(err)
			}
		}, []string{"get deployments prod/api-gateway"},
			"deployment prod/api-gateway was changed by someone else since the action (it was deleted and created again): not rolled back"},
		{"replicas changed by an autoscaler", replicasAction, func(t *testing.T, c *fake.Clientset) {
			edit(t, c, "prod", "api-gateway", func(d *appsv1.Deployment) { d.Spec.Replicas = new(int32(8)) })
		}, []string{"get deployments prod/api-gateway"},
			"deployment prod/api-gateway was changed by someone else since the action (generation 8 → 9): not rolled back"},
		{"replicas changed, generation not (defence in depth)", replicasAction, func(t *testing.T, c *fake.Clientset) {
			dep := stored(t, c, "prod", "api-gateway")
			dep.Spec.Replicas = new(int32(8))
			if err := c.Tracker().Update(deploymentsGVR, dep, "prod"); err != nil {
				t.Fatal(err)
			}
		}, []string{"get deployments prod/api-gateway"},
			"deployment prod/api-gateway was changed by someone else since the action (replicas 8, we set 5): not rolled back"},
		{"restarted again by someone else", restartAction, func(t *testing.T, c *fake.Clientset) {
			edit(t, c, "prod", "api-gateway", func(d *appsv1.Deployment) {
				d.Spec.Template.Annotations[RestartedAtAnnotation] = "2026-05-04T10:05:00Z"
			})
		}, []string{"get deployments prod/api-gateway"},
			"deployment prod/api-gateway was changed by someone else since the action (generation 8 → 9): not rolled back"},
		{"restart annotation changed, generation not (defence in depth)", restartAction, func(t *testing.T, c *fake.Clientset) {
			dep := stored(t, c, "prod", "api-gateway")
			dep.Spec.Template.Annotations[RestartedAtAnnotation] = "2026-05-04T10:05:00Z"
			if err := c.Tracker().Update(deploymentsGVR, dep, "prod"); err != nil {
				t.Fatal(err)
			}
		}, []string{"get deployments prod/api-gateway"},
			`deployment prod/api-gateway was changed by someone else since the action (kubectl.kubernetes.io/restartedAt is "2026-05-04T10:05:00Z", we set "2026-05-04T10:00:00Z"): not rolled back`},
		{"selector changed by someone else", failoverAction, func(t *testing.T, c *fake.Clientset) {
			obj, _ := c.Tracker().Get(servicesGVR, "prod", "payments")
			svc := obj.(*corev1.Service).DeepCopy()
			svc.Spec.Selector["app"] = "payments-dr"
			if err := c.Tracker().Update(servicesGVR, svc, "prod"); err != nil {
				t.Fatal(err)
			}
		}, []string{"get services prod/payments"},
			"service prod/payments was changed by someone else since the action (selector app=payments-dr,tier=web, we set app=payments-backup,tier=web): not rolled back"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, deployment(), service())
			clk := newClock()
			clk.onWait = func(int) { edit(t, c, "prod", "api-gateway", rolledOut(8)) }
			d := newDriver(c, clk)
			raw, err := d.Apply(t.Context(), tt.action, (&recorder{}).report)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			tt.change(t, c)
			c.ClearActions()
			rec := &recorder{}
			err = d.Undo(t.Context(), tt.action, raw, rec.report)
			if !errors.Is(err, ErrChanged) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Undo error = %v, want ErrChanged with %q", err, tt.want)
			}
			checkActions(t, c, tt.get...) // no write
			if got := rec.Lines(); len(got) != 1 || got[0] != err.Error() {
				t.Errorf("report = %q, want the error %q", got, err)
			}
		})
	}
}

// TestUndoPatchIsCompareAndSet: a change that lands between Undo's GET and its
// PATCH makes the server refuse the patch (its test ops fail); nothing is overwritten.
func TestUndoPatchIsCompareAndSet(t *testing.T) {
	c := newCluster(t, deployment())
	d := newDriver(c, newClock())
	raw, err := d.Apply(t.Context(), envAction, (&recorder{}).report)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	c.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		old, _ := trackedDeployment(c.Tracker(), "prod", "api-gateway")
		upd := old.DeepCopy()
		upd.Spec.Template.Spec.Containers[0].Env[0].Value = "99"
		if _, err := commit(c.Tracker(), old, upd); err != nil {
			return true, nil, err
		}
		return false, nil, nil // now the real patch runs against the changed object
	})
	if err := d.Undo(t.Context(), envAction, raw, (&recorder{}).report); err == nil {
		t.Fatal("Undo succeeded over a concurrent change")
	}
	if got, want := envOf(stored(t, c, "prod", "api-gateway")),
		"app:DB_POOL_SIZE=99,LOG_LEVEL=info sidecar:OTHER=1,DB_POOL_SIZE=50 proxy:DB_POOL_SIZE=50"; got != want {
		t.Errorf("env = %s, want %s (the concurrent change kept)", got, want)
	}
}

func TestUndoOfNothing(t *testing.T) {
	c := newCluster(t, deployment())
	rec := &recorder{}
	if err := newDriver(c, newClock()).Undo(t.Context(), replicasAction, nil, rec.report); err != nil {
		t.Fatal(err)
	}
	checkActions(t, c)
	checkLines(t, rec, "SCALE_RESOURCE changed nothing: nothing to undo")
}

func TestNothingToChangeReturnsNilState(t *testing.T) {
	tests := []struct {
		name   string
		action runbooks.Action
		want   []string
	}{
		{"replicas", runbooks.Action{Type: runbooks.ScaleResource, Resource: "replicas", Target: runbooks.Target{Deployment: "api-gateway"},
			Parameters: map[string]any{"to": 3.0}}, []string{"get deployments prod/api-gateway", "get deployments/scale prod/api-gateway"}},
		{"failover", runbooks.Action{Type: runbooks.Failover, Target: runbooks.Target{Service: "payments"},
			Parameters: map[string]any{"from": "payments-backup", "to": "payments-primary"}}, []string{"get services prod/payments"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, deployment(), service())
			raw, err := newDriver(c, newClock()).Apply(t.Context(), tt.action, (&recorder{}).report)
			if err != nil || raw != nil {
				t.Fatalf("Apply = %s, %v; want nil, nil", raw, err)
			}
			checkActions(t, c, tt.want...)
		})
	}
}

// TestUndoAcceptsOurOwnLaterWrites: a plan changes an env var, then restarts the
// same deployment; the rollback undoes the restart, then the env var. The
// generation moved twice since the env change, both times by us.
func TestUndoAcceptsOurOwnLaterWrites(t *testing.T) {
	tests := []struct {
		name        string
		between     func(t *testing.T, c *fake.Clientset) // after the env change, before the restart
		freshDriver bool                                  // the env undo runs in a new process
		want        string                                // env undo error; "" for success
	}{
		{name: "same process", want: ""},
		{name: "someone else wrote in between", between: func(t *testing.T, c *fake.Clientset) {
			edit(t, c, "prod", "api-gateway", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "api:2" })
		}, want: "deployment prod/api-gateway was changed by someone else since the action (generation 8 → 11): not rolled back"},
		{name: "after a process restart only the action's own write counts", freshDriver: true,
			want: "deployment prod/api-gateway was changed by someone else since the action (generation 8 → 10): not rolled back"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, deployment())
			clk := newClock()
			d := newDriver(c, clk)
			envState, err := d.Apply(t.Context(), envAction, (&recorder{}).report)
			if err != nil {
				t.Fatal(err)
			}
			if tt.between != nil {
				tt.between(t, c)
			}
			gen := stored(t, c, "prod", "api-gateway").Generation + 1 // the restart's
			clk.onWait = func(int) { edit(t, c, "prod", "api-gateway", rolledOut(gen)) }
			restartState, err := d.Apply(t.Context(), restartAction, (&recorder{}).report)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Undo(t.Context(), restartAction, restartState, (&recorder{}).report); err != nil {
				t.Fatalf("undo restart: %v", err)
			}
			if tt.freshDriver {
				d = newDriver(c, clk)
			}
			c.ClearActions()
			err = d.Undo(t.Context(), envAction, envState, (&recorder{}).report)
			if tt.want != "" {
				if !errors.Is(err, ErrChanged) || err.Error() != tt.want {
					t.Fatalf("undo env: %v, want %q", err, tt.want)
				}
				checkActions(t, c, "get deployments prod/api-gateway")
				return
			}
			if err != nil {
				t.Fatalf("undo env: %v", err)
			}
			if got, want := envOf(stored(t, c, "prod", "api-gateway")),
				"app:DB_POOL_SIZE=20,LOG_LEVEL=info sidecar:OTHER=1 proxy:"; got != want {
				t.Errorf("env after both undos = %s, want %s", got, want)
			}
			// The undo patch tests the generation it checked (10), not the recorded one (8).
			if got := actions(c)[1]; !strings.Contains(got, `[{"op":"test","path":"/metadata/generation","value":10},`) {
				t.Errorf("undo patch = %s, want a test of generation 10", got)
			}
		})
	}
}
