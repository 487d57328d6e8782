package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	"github.com/recoverbot/recoverbot/recovery/kube"
	"github.com/recoverbot/recoverbot/runbooks"
)

func restartAction(name string, drainTimeout float64) runbooks.Action {
	return runbooks.Action{Type: runbooks.RestartPod, Target: runbooks.Target{Deployment: name},
		Parameters: map[string]any{"deployment": name, "graceful": true, "drainTimeout": drainTimeout}}
}

func replicasAction(name string, to float64) runbooks.Action {
	return runbooks.Action{Type: runbooks.ScaleResource, Resource: "replicas",
		Target: runbooks.Target{Deployment: name}, Parameters: map[string]any{"to": to}}
}

func envAction(name string, to float64) runbooks.Action {
	return runbooks.Action{Type: runbooks.ScaleResource, Resource: "WORKERS",
		Target: runbooks.Target{Deployment: name}, Parameters: map[string]any{"to": to}}
}

func failoverAction(name string) runbooks.Action {
	return runbooks.Action{Type: runbooks.Failover, Target: runbooks.Target{Service: name},
		Parameters: map[string]any{"selectorKey": "track", "from": "primary", "to": "standby"}}
}

// TestRestartRollout: a rollout restart is a new pod template, so the deployment
// controller makes a new ReplicaSet; the driver then waits for the rollout and
// reports how it ended. Without a kubelet pods stay Pending, so with replicas
// the expected outcome here is the timeout (or the progress deadline) report;
// with zero replicas the rollout really finishes.
func TestRestartRollout(t *testing.T) {
	c := connect(t)
	tests := []struct {
		name         string
		deployment   string
		replicas     int32
		change       func(*appsv1.Deployment)
		drainTimeout float64
		wantErr      string // in Apply's error; "" for success
		wantLast     string // in the last report line
	}{
		{name: "pods stay pending: the wait times out and says so", deployment: unique("restart-pending"), replicas: 2,
			drainTimeout: 2, wantErr: "rollout not finished after 2s: ", wantLast: "rollout not finished after 2s: "},
		{name: "progress deadline exceeded: the wait reports the controller's verdict", deployment: unique("restart-deadline"), replicas: 1,
			change:       func(d *appsv1.Deployment) { d.Spec.ProgressDeadlineSeconds = new(int32(1)) },
			drainTimeout: 50, wantErr: "rollout failed: progress deadline exceeded: ", wantLast: "rollout failed: progress deadline exceeded: "},
		{name: "no replicas: the rollout finishes", deployment: unique("restart-zero"), replicas: 0,
			drainTimeout: 50, wantLast: ": rollout finished: 0/0 updated, 0 available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var change []func(*appsv1.Deployment)
			if tt.change != nil {
				change = append(change, tt.change)
			}
			c.deployment(t, c.ns, tt.deployment, tt.replicas, change...)
			before, rs0 := c.currentReplicaSet(t, tt.deployment)
			if _, ok := before.Spec.Template.Annotations[kube.RestartedAtAnnotation]; ok {
				t.Fatalf("new deployment already has %s", kube.RestartedAtAnnotation)
			}

			rep := &report{}
			start := time.Now()
			state, err := c.driver().Apply(t.Context(), restartAction(tt.deployment, tt.drainTimeout), rep.add)
			took := time.Since(start)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Apply: %v (report %s)", err, rep)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Apply error %v, want one containing %q (report %s)", err, tt.wantErr, rep)
			}
			// Loose on purpose: it tells "the drain timeout ended Apply" from
			// "Apply waited for the rollout regardless", on a loaded machine too.
			if tt.wantErr != "" && took > time.Duration(tt.drainTimeout*float64(time.Second))+60*time.Second {
				t.Errorf("Apply took %s with drainTimeout %vs", took, tt.drainTimeout)
			}
			if state == nil {
				t.Fatal("Apply returned no state: the restart could not be undone")
			}
			lines := rep.all()
			if len(lines) < 2 || !strings.HasPrefix(lines[0], "deployment recoverbot-test/"+tt.deployment+": rollout restart started (kubectl.kubernetes.io/restartedAt=") ||
				!strings.Contains(lines[len(lines)-1], tt.wantLast) {
				t.Fatalf("report %s: want the start, then a last line with %q", rep, tt.wantLast)
			}
			t.Logf("report: %s", rep)

			// The new template has its own ReplicaSet, with a new pod-template-hash.
			dep, rs1 := c.currentReplicaSet(t, tt.deployment)
			wrote, ok := dep.Spec.Template.Annotations[kube.RestartedAtAnnotation]
			if !ok || !strings.Contains(lines[0], wrote) {
				t.Fatalf("pod template %s = %q (set %v), report says %q", kube.RestartedAtAnnotation, wrote, ok, lines[0])
			}
			if rs1.UID == rs0.UID || rs1.Labels[hashLabel] == rs0.Labels[hashLabel] {
				t.Fatalf("current ReplicaSet %s (hash %s) is the one from before the restart (%s, hash %s)",
					rs1.Name, rs1.Labels[hashLabel], rs0.Name, rs0.Labels[hashLabel])
			}
			if tt.change != nil { // the deadline case: the controller's verdict is about the new ReplicaSet
				cond := progressing(dep)
				if cond == nil || cond.Reason != "ProgressDeadlineExceeded" || !strings.Contains(cond.Message, rs1.Name) {
					t.Fatalf("Progressing condition %+v, want ProgressDeadlineExceeded for ReplicaSet %s", cond, rs1.Name)
				}
			}
			if rs1.Spec.Template.Annotations[kube.RestartedAtAnnotation] != wrote {
				t.Fatalf("ReplicaSet %s template has %s=%q, want %q", rs1.Name, kube.RestartedAtAnnotation,
					rs1.Spec.Template.Annotations[kube.RestartedAtAnnotation], wrote)
			}

			// Undo removes the annotation again: the template is the old one, so
			// the controller goes back to the old ReplicaSet (another rollout).
			rep = &report{}
			if err := c.driver().Undo(t.Context(), restartAction(tt.deployment, tt.drainTimeout), state, rep.add); err != nil {
				t.Fatalf("Undo: %v (report %s)", err, rep)
			}
			if !rep.has(kube.RestartedAtAnnotation + " removed again") {
				t.Errorf("undo report %s", rep)
			}
			after, rs2 := c.currentReplicaSet(t, tt.deployment)
			sameTemplate(t, "after undo", after, before.Spec.Template)
			if rs2.UID != rs0.UID || rs2.Labels[hashLabel] != rs0.Labels[hashLabel] {
				t.Fatalf("after undo the current ReplicaSet is %s (hash %s), want the original %s (hash %s)",
					rs2.Name, rs2.Labels[hashLabel], rs0.Name, rs0.Labels[hashLabel])
			}
		})
	}
}

func progressing(d *appsv1.Deployment) *appsv1.DeploymentCondition {
	for i, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

// TestGradualEnvScaling: each step of a gradual change is its own write, seen by
// other clients (a watch) and on the object right after the step's report; all
// containers change together. Undo restores the exact previous template: the
// variable the sidecar did not have is removed again.
func TestGradualEnvScaling(t *testing.T) {
	c := connect(t)
	name := unique("gradual-env")
	c.deployment(t, c.ns, name, 1)
	orig := c.observed(t, name)

	// An independent watcher, as admin, from the version we just read.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w, err := c.admin.AppsV1().Deployments(c.ns).Watch(ctx, metav1.ListOptions{
		FieldSelector: "metadata.name=" + name, ResourceVersion: orig.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	// The report hook reads the object after each step, before the next one.
	rep := &report{}
	var afterStep []string
	rep.hook = func(line string) {
		if strings.Contains(line, "(step ") {
			d, err := c.admin.AppsV1().Deployments(c.ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Errorf("read after %q: %v", line, err)
				return
			}
			afterStep = append(afterStep, workers(d))
		}
	}
	var waits []time.Duration // the driver's pause between steps, asked for but not slept
	drv := c.driver(kube.WithWait(func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	}))
	action := runbooks.Action{Type: runbooks.ScaleResource, Resource: "WORKERS", Gradual: true,
		Target:     runbooks.Target{Deployment: name},
		Parameters: map[string]any{"from": 2.0, "to": 8.0, "increment": 2.0, "intervalSeconds": 30.0}}
	state, err := drv.Apply(t.Context(), action, rep.add)
	if err != nil {
		t.Fatalf("Apply: %v (report %s)", err, rep)
	}
	wantLines := []string{
		"note: container sidecar had WORKERS unset, the runbook expected 2",
		"WORKERS 2 → 4 (step 1/3)", "WORKERS 4 → 6 (step 2/3)", "WORKERS 6 → 8 (step 3/3)",
	}
	if got := rep.all(); !slices.Equal(got, wantLines) {
		t.Errorf("report\n got %q\nwant %q", got, wantLines)
	}
	if want := []string{"app=4 sidecar=4", "app=6 sidecar=6", "app=8 sidecar=8"}; !slices.Equal(afterStep, want) {
		t.Errorf("object after each step %q, want %q", afterStep, want)
	}
	if want := []time.Duration{30 * time.Second, 30 * time.Second}; !slices.Equal(waits, want) {
		t.Errorf("pauses between steps %v, want %v", waits, want)
	}

	// The watcher saw every step as its own change, then the controller's status
	// update for the last one: resourceVersion moved after our last write.
	final := c.get(t, name).Generation
	if final != orig.Generation+3 {
		t.Errorf("generation %d → %d, want one per step (+3)", orig.Generation, final)
	}
	var seen []string
	lastWrite := ""
	deadline := time.After(patience)
	for statusMoved := false; !statusMoved; {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed")
			}
			d, isDep := ev.Object.(*appsv1.Deployment)
			if ev.Type != watch.Modified || !isDep {
				t.Fatalf("watch event %s %T", ev.Type, ev.Object)
			}
			if v := workers(d); v != workers(orig) && (len(seen) == 0 || seen[len(seen)-1] != v) {
				seen = append(seen, v)
			}
			switch {
			case d.Generation == final && lastWrite == "":
				lastWrite = d.ResourceVersion
			case d.Generation == final && d.Status.ObservedGeneration == final && d.ResourceVersion != lastWrite:
				statusMoved = true
			}
		case <-deadline:
			t.Fatalf("watch: no status update after our last write within %s (seen %q)", patience, seen)
		}
	}
	if want := []string{"app=4 sidecar=4", "app=6 sidecar=6", "app=8 sidecar=8"}; !slices.Equal(seen, want) {
		t.Errorf("watch saw %q, want %q", seen, want)
	}

	rep = &report{}
	if err := c.driver().Undo(t.Context(), action, state, rep.add); err != nil {
		t.Fatalf("Undo: %v (report %s)", err, rep)
	}
	if want := []string{"deployment recoverbot-test/" + name + ": WORKERS restored: app 2, sidecar (removed)"}; !slices.Equal(rep.all(), want) {
		t.Errorf("undo report\n got %q\nwant %q", rep.all(), want)
	}
	after := c.get(t, name)
	sameTemplate(t, "after undo", after, orig.Spec.Template)
	if got := after.Spec.Template.Spec.Containers[1].Env; got != nil {
		t.Errorf("sidecar env %v, want none (it had none)", got)
	}
}

// TestScaleReplicas: replicas change through the scale subresource (get and
// update deployments/scale, nothing else); the controller acts on it; undo
// puts the previous count back after the controller has moved resourceVersion.
func TestScaleReplicas(t *testing.T) {
	c := connect(t)
	name := unique("scale-replicas")
	c.deployment(t, c.ns, name, 2)
	orig := c.observed(t, name)

	rep := &report{}
	state, err := c.driver().Apply(t.Context(), replicasAction(name, 5), rep.add)
	if err != nil {
		t.Fatalf("Apply: %v (report %s)", err, rep)
	}
	if want := []string{"deployment recoverbot-test/" + name + ": replicas 2 → 5"}; !slices.Equal(rep.all(), want) {
		t.Errorf("report\n got %q\nwant %q", rep.all(), want)
	}
	sc, err := c.admin.AppsV1().Deployments(c.ns).GetScale(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Spec.Replicas != 5 {
		t.Fatalf("scale spec.replicas %d, want 5", sc.Spec.Replicas)
	}
	// The driver records generation+1 as its write without reading it back: the
	// API server must bump the generation by exactly one for a scale update.
	dep := c.observed(t, name)
	if dep.Generation != orig.Generation+1 {
		t.Fatalf("generation %d → %d after one scale update, want +1", orig.Generation, dep.Generation)
	}
	if dep.ResourceVersion == orig.ResourceVersion {
		t.Fatal("resourceVersion did not move")
	}
	eventually(t, "the current ReplicaSet to be scaled to 5", func(context.Context) (bool, error) {
		_, rs := c.currentReplicaSet(t, name)
		return *rs.Spec.Replicas == 5, nil
	})

	rep = &report{}
	if err := c.driver().Undo(t.Context(), replicasAction(name, 5), state, rep.add); err != nil {
		t.Fatalf("Undo: %v (report %s)", err, rep)
	}
	if want := []string{"deployment recoverbot-test/" + name + ": replicas 5 → 2 (restored)"}; !slices.Equal(rep.all(), want) {
		t.Errorf("undo report\n got %q\nwant %q", rep.all(), want)
	}
	eventually(t, "the current ReplicaSet to be scaled back to 2", func(context.Context) (bool, error) {
		dep, rs := c.currentReplicaSet(t, name)
		return *dep.Spec.Replicas == 2 && *rs.Spec.Replicas == 2, nil
	})
}

// TestFailoverSelector: FAILOVER switches one selector key of a Service and its
// undo puts the whole previous selector back.
func TestFailoverSelector(t *testing.T) {
	c := connect(t)
	name := unique("failover")
	orig := map[string]string{"app": "payments", "track": "primary"}
	c.service(t, c.ns, name, orig)

	rep := &report{}
	state, err := c.driver().Apply(t.Context(), failoverAction(name), rep.add)
	if err != nil {
		t.Fatalf("Apply: %v (report %s)", err, rep)
	}
	if want := []string{"service recoverbot-test/" + name + ": selector track=primary → track=standby"}; !slices.Equal(rep.all(), want) {
		t.Errorf("report\n got %q\nwant %q", rep.all(), want)
	}
	if got, want := c.getService(t, c.ns, name).Spec.Selector, map[string]string{"app": "payments", "track": "standby"}; !maps.Equal(got, want) {
		t.Fatalf("selector %v, want %v", got, want)
	}
	rep = &report{}
	if err := c.driver().Undo(t.Context(), failoverAction(name), state, rep.add); err != nil {
		t.Fatalf("Undo: %v (report %s)", err, rep)
	}
	if want := []string{"service recoverbot-test/" + name + ": selector restored to app=payments,track=primary"}; !slices.Equal(rep.all(), want) {
		t.Errorf("undo report\n got %q\nwant %q", rep.all(), want)
	}
	if got := c.getService(t, c.ns, name).Spec.Selector; !maps.Equal(got, orig) {
		t.Fatalf("selector after undo %v, want %v", got, orig)
	}
}

// TestUndoExactState: an env var set on containers that did not have it is
// removed again, one that had a value gets it back, in place; and the
// controller's status writes between apply and undo do not block it.
func TestUndoExactState(t *testing.T) {
	c := connect(t)
	name := unique("undo-exact")
	c.deployment(t, c.ns, name, 3, func(d *appsv1.Deployment) {
		cs := d.Spec.Template.Spec.Containers
		cs[0].Env = []corev1.EnvVar{{Name: "WORKERS", Value: "2"}, {Name: "LOG_LEVEL", Value: "info"}, {Name: "EXTRA", Value: "x"}}
		cs[1].Env = nil // the sidecar has none at all
		d.Spec.Template.Spec.Containers = append(cs, corev1.Container{Name: "proxy", Image: cs[1].Image,
			Env: []corev1.EnvVar{{Name: "OTHER", Value: "1"}}})
	})
	orig := c.observed(t, name)
	action := envAction(name, 16)
	state, err := c.driver().Apply(t.Context(), action, (&report{}).add)
	if err != nil {
		t.Fatal(err)
	}
	applied := c.get(t, name)
	for _, ct := range []string{"app", "sidecar", "proxy"} {
		if v, _ := env(applied, ct, "WORKERS"); v != "16" {
			t.Fatalf("after apply: container %s has WORKERS %q, want 16", ct, v)
		}
	}
	moved := c.observed(t, name) // a status write by the controller came after ours
	if moved.ResourceVersion == orig.ResourceVersion {
		t.Fatal("resourceVersion did not move")
	}
	rep := &report{}
	if err := c.driver().Undo(t.Context(), action, state, rep.add); err != nil {
		t.Fatalf("Undo: %v (report %s)", err, rep)
	}
	sameTemplate(t, "after undo", c.get(t, name), orig.Spec.Template)
	// A second undo (the engine retrying after a crash) finds nothing to do.
	rep = &report{}
	if err := c.driver().Undo(t.Context(), action, state, rep.add); err != nil || !rep.has("already back to its previous state") {
		t.Fatalf("second Undo: %v (report %s)", err, rep)
	}
}

// TestUndoReportsConcurrentChange: someone else's change between apply and undo
// is detected and reported (kube.ErrChanged), and left as it is. The driver of
// the undo is a fresh one, as after a bot restart.
func TestUndoReportsConcurrentChange(t *testing.T) {
	c := connect(t)
	mergePatch := func(t *testing.T, name, patch string) {
		t.Helper()
		if _, err := c.admin.AppsV1().Deployments(c.ns).Patch(t.Context(), name, types.StrategicMergePatchType,
			[]byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatalf("someone else's patch: %v", err)
		}
	}
	tests := []struct {
		name    string
		target  string
		service bool
		action  func(name string) runbooks.Action
		change  func(t *testing.T, name string) // someone else, as admin
		want    string                          // in the report and the error
	}{
		{name: "same env var set again", target: unique("conflict-env"), action: func(n string) runbooks.Action { return envAction(n, 8) },
			change: func(t *testing.T, n string) {
				mergePatch(t, n, `{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"WORKERS","value":"99"}]}]}}}}`)
			},
			want: "was changed by someone else since the action (generation 2 → 3): not rolled back"},
		{name: "another field of the spec", target: unique("conflict-image"), action: func(n string) runbooks.Action { return envAction(n, 8) },
			change: func(t *testing.T, n string) {
				mergePatch(t, n, `{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"registry.k8s.io/pause:3.9"}]}}}}`)
			},
			want: "(generation 2 → 3)"},
		{name: "scaled again", target: unique("conflict-replicas"), action: func(n string) runbooks.Action { return replicasAction(n, 5) },
			change: func(t *testing.T, n string) { mergePatch(t, n, `{"spec":{"replicas":7}}`) },
			want:   "(generation 2 → 3)"},
		{name: "restarted again", target: unique("conflict-restart"), action: func(n string) runbooks.Action { return restartAction(n, 50) },
			change: func(t *testing.T, n string) {
				mergePatch(t, n, `{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2000-01-01T00:00:00Z"}}}}}`)
			},
			want: "(generation 2 → 3)"},
		{name: "deleted and created again", target: unique("conflict-recreate"), action: func(n string) runbooks.Action { return envAction(n, 8) },
			change: func(t *testing.T, n string) {
				if err := c.admin.AppsV1().Deployments(c.ns).Delete(t.Context(), n, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
				eventually(t, "the deployment to be gone", func(ctx context.Context) (bool, error) {
					_, err := c.admin.AppsV1().Deployments(c.ns).Get(ctx, n, metav1.GetOptions{})
					return err != nil, nil
				})
				c.deployment(t, c.ns, n, 0)
			},
			want: "(it was deleted and created again)"},
		{name: "service selector switched elsewhere", target: unique("conflict-service"), service: true, action: failoverAction,
			change: func(t *testing.T, n string) {
				if _, err := c.admin.CoreV1().Services(c.ns).Patch(t.Context(), n, types.MergePatchType,
					[]byte(`{"spec":{"selector":{"track":"canary"}}}`), metav1.PatchOptions{}); err != nil {
					t.Fatal(err)
				}
			},
			want: "was changed by someone else since the action (selector app=payments,track=canary, we set app=payments,track=standby): not rolled back"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.service {
				c.service(t, c.ns, tt.target, map[string]string{"app": "payments", "track": "primary"})
			} else {
				c.deployment(t, c.ns, tt.target, 0) // 0 replicas: a restart's rollout finishes
				c.observed(t, tt.target)
			}
			state, err := c.driver().Apply(t.Context(), tt.action(tt.target), (&report{}).add)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if !tt.service {
				c.observed(t, tt.target)
			}
			tt.change(t, tt.target)
			var beforeUndo any
			if tt.service {
				beforeUndo = c.getService(t, c.ns, tt.target).Spec
			} else {
				beforeUndo = c.observed(t, tt.target).Spec
			}

			rep := &report{}
			err = c.driver().Undo(t.Context(), tt.action(tt.target), state, rep.add)
			if !errors.Is(err, kube.ErrChanged) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Undo error %v, want kube.ErrChanged with %q", err, tt.want)
			}
			if got := rep.all(); len(got) != 1 || got[0] != err.Error() {
				t.Errorf("report %q, want the error %q", got, err)
			}
			var afterUndo any
			if tt.service {
				afterUndo = c.getService(t, c.ns, tt.target).Spec
			} else {
				afterUndo = c.get(t, tt.target).Spec
			}
			a, _ := json.Marshal(afterUndo)
			b, _ := json.Marshal(beforeUndo)
			if string(a) != string(b) {
				t.Fatalf("undo overwrote someone else's change:\n got %s\nwant %s", a, b)
			}
		})
	}
}

// TestUndoIsCompareAndSetOnTheServer: someone else's change that lands between
// the undo's GET and its write (injected by the bot's HTTP transport, just
// before the write leaves) makes the API server refuse the write: JSON patch
// "test" ops for deployments and services, resourceVersion for the scale. The
// change is kept and the undo is reported as blocked by it.
func TestUndoIsCompareAndSetOnTheServer(t *testing.T) {
	c := connect(t)
	tests := []struct {
		name    string
		target  string
		service bool
		action  func(name string) runbooks.Action
		patch   string // someone else's merge patch
	}{
		{name: "env", target: unique("cas-env"), action: func(n string) runbooks.Action { return envAction(n, 8) },
			patch: `{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"WORKERS","value":"99"}]}]}}}}`},
		{name: "restart", target: unique("cas-restart"), action: func(n string) runbooks.Action { return restartAction(n, 50) },
			patch: `{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2000-01-01T00:00:00Z"}}}}}`},
		{name: "replicas", target: unique("cas-replicas"), action: func(n string) runbooks.Action { return replicasAction(n, 5) },
			patch: `{"spec":{"replicas":7}}`},
		{name: "service selector", target: unique("cas-service"), service: true, action: failoverAction,
			patch: `{"spec":{"selector":{"track":"canary"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.service {
				c.service(t, c.ns, tt.target, map[string]string{"app": "payments", "track": "primary"})
			} else {
				c.deployment(t, c.ns, tt.target, 0)
				c.observed(t, tt.target)
			}
			state, err := c.driver().Apply(t.Context(), tt.action(tt.target), (&report{}).add)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			someoneElse := func(ctx context.Context) error {
				var err error
				if tt.service {
					_, err = c.admin.CoreV1().Services(c.ns).Patch(ctx, tt.target, types.StrategicMergePatchType, []byte(tt.patch), metav1.PatchOptions{})
				} else {
					_, err = c.admin.AppsV1().Deployments(c.ns).Patch(ctx, tt.target, types.StrategicMergePatchType, []byte(tt.patch), metav1.PatchOptions{})
				}
				return err
			}
			var injected []string
			cfg := rest.CopyConfig(c.botConfig)
			cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
				return roundTripper(func(r *http.Request) (*http.Response, error) {
					if (r.Method == http.MethodPatch || r.Method == http.MethodPut) && len(injected) == 0 {
						injected = append(injected, r.Method+" "+r.URL.Path)
						if err := someoneElse(r.Context()); err != nil {
							t.Errorf("someone else's change: %v", err)
						}
					}
					return rt.RoundTrip(r)
				})
			})
			drv := kube.New(newClient(t, cfg), c.ns)
			var before any
			if tt.service {
				before = c.getService(t, c.ns, tt.target).Spec.Selector
			}

			rep := &report{}
			err = drv.Undo(t.Context(), tt.action(tt.target), state, rep.add)
			t.Logf("injected before %v; Undo: %v; report %s", injected, err, rep)
			if len(injected) != 1 {
				t.Fatalf("no write to inject before (calls %v)", injected)
			}
			if err == nil {
				t.Fatal("Undo succeeded over a concurrent change")
			}
			if !errors.Is(err, kube.ErrChanged) {
				t.Errorf("Undo error %v: want kube.ErrChanged (someone else changed the target)", err)
			}
			if !rep.has("was changed by someone else since the action") {
				t.Errorf("report %s does not say someone else changed it", rep)
			}
			// Someone else's change is what is there now.
			if tt.service {
				if got := c.getService(t, c.ns, tt.target).Spec.Selector; got["track"] != "canary" {
					t.Errorf("selector %v (was %v), want someone else's track=canary kept", got, before)
				}
				return
			}
			d := c.get(t, tt.target)
			switch tt.name {
			case "env":
				if v, _ := env(d, "app", "WORKERS"); v != "99" {
					t.Errorf("WORKERS %s, want someone else's 99 kept", v)
				}
			case "restart":
				if v := d.Spec.Template.Annotations[kube.RestartedAtAnnotation]; v != "2000-01-01T00:00:00Z" {
					t.Errorf("restartedAt %s, want someone else's kept", v)
				}
			case "replicas":
				if *d.Spec.Replicas != 7 {
					t.Errorf("replicas %d, want someone else's 7 kept", *d.Spec.Replicas)
				}
			}
		})
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestUndoOfATwoActionPlan: a plan that sets an env var and then restarts the
// same deployment is rolled back in reverse; the env undo accepts the
// generations our own restart and its undo produced. After a bot restart the
// driver no longer knows them (they live in memory), so the env undo reports
// a change instead of writing: never an overwrite.
func TestUndoOfATwoActionPlan(t *testing.T) {
	c := connect(t)
	for _, tt := range []struct {
		name, target string
		freshDriver  bool
		want         string // env undo error; "" for success
	}{
		{name: "same process", target: unique("two-actions")},
		{name: "after a bot restart", target: unique("two-actions-restart"), freshDriver: true,
			want: "deployment recoverbot-test/%s was changed by someone else since the action (generation 2 → 4): not rolled back"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c.deployment(t, c.ns, tt.target, 0)
			orig := c.observed(t, tt.target)
			drv := c.driver()
			envState, err := drv.Apply(t.Context(), envAction(tt.target, 8), (&report{}).add)
			if err != nil {
				t.Fatal(err)
			}
			restartState, err := drv.Apply(t.Context(), restartAction(tt.target, 50), (&report{}).add)
			if err != nil {
				t.Fatal(err)
			}
			c.observed(t, tt.target)
			if err := drv.Undo(t.Context(), restartAction(tt.target, 50), restartState, (&report{}).add); err != nil {
				t.Fatalf("undo restart: %v", err)
			}
			if tt.freshDriver {
				drv = c.driver()
			}
			c.observed(t, tt.target)
			rep := &report{}
			err = drv.Undo(t.Context(), envAction(tt.target, 8), envState, rep.add)
			if tt.want != "" {
				if want := fmt.Sprintf(tt.want, tt.target); !errors.Is(err, kube.ErrChanged) || err.Error() != want {
					t.Fatalf("undo env: %v, want %q", err, want)
				}
				if v, _ := env(c.get(t, tt.target), "app", "WORKERS"); v != "8" {
					t.Fatalf("WORKERS %s after a refused undo, want 8 left alone", v)
				}
				return
			}
			if err != nil {
				t.Fatalf("undo env: %v (report %s)", err, rep)
			}
			sameTemplate(t, "after both undos", c.get(t, tt.target), orig.Spec.Template)
		})
	}
}
