package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var (
	deploymentsGVR = appsv1.SchemeGroupVersion.WithResource("deployments")
	servicesGVR    = corev1.SchemeGroupVersion.WithResource("services")
)

// newCluster returns a fake clientset that behaves like the API server where
// these tests depend on it and the fake tracker does not: a write that changes a
// deployment's spec bumps metadata.generation, every write bumps
// resourceVersion, and the deployments/scale subresource reads and writes
// spec.replicas (with the resourceVersion precondition an update carries).
// Reactors run under the fake's lock, so they use the tracker, never the client.
func newCluster(t *testing.T, objs ...runtime.Object) *fake.Clientset {
	t.Helper()
	c := fake.NewClientset(objs...)
	tracker := c.Tracker()
	def := k8stesting.ObjectReaction(tracker)

	c.PrependReactor("patch", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		old, err := trackedDeployment(tracker, a.GetNamespace(), a.(k8stesting.PatchAction).GetName())
		if err != nil {
			return true, nil, err
		}
		_, obj, err := def(a)
		if err != nil {
			return true, nil, err
		}
		upd, err := commit(tracker, old, obj.(*appsv1.Deployment))
		return true, upd, err
	})
	c.PrependReactor("get", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		dep, err := trackedDeployment(tracker, a.GetNamespace(), a.(k8stesting.GetAction).GetName())
		if err != nil {
			return true, nil, err
		}
		return true, scaleOf(dep), nil
	})
	c.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		sc := a.(k8stesting.UpdateAction).GetObject().(*autoscalingv1.Scale)
		old, err := trackedDeployment(tracker, a.GetNamespace(), sc.Name)
		if err != nil {
			return true, nil, err
		}
		if sc.ResourceVersion != "" && sc.ResourceVersion != old.ResourceVersion {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"},
				sc.Name, fmt.Errorf("resourceVersion %s, object is at %s", sc.ResourceVersion, old.ResourceVersion))
		}
		upd := old.DeepCopy()
		upd.Spec.Replicas = &sc.Spec.Replicas
		upd, err = commit(tracker, old, upd)
		if err != nil {
			return true, nil, err
		}
		return true, scaleOf(upd), nil
	})
	c.PrependReactor("patch", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		_, obj, err := def(a)
		if err != nil {
			return true, nil, err
		}
		svc := obj.(*corev1.Service).DeepCopy()
		svc.ResourceVersion = nextRV(svc.ResourceVersion)
		return true, svc, tracker.Update(servicesGVR, svc, svc.Namespace)
	})
	return c
}

func trackedDeployment(tracker k8stesting.ObjectTracker, ns, name string) (*appsv1.Deployment, error) {
	obj, err := tracker.Get(deploymentsGVR, ns, name)
	if err != nil {
		return nil, err
	}
	return obj.(*appsv1.Deployment).DeepCopy(), nil
}

// commit stores upd as the API server would after a write to old.
func commit(tracker k8stesting.ObjectTracker, old, upd *appsv1.Deployment) (*appsv1.Deployment, error) {
	upd = upd.DeepCopy()
	upd.Generation = old.Generation
	if !equality.Semantic.DeepEqual(old.Spec, upd.Spec) {
		upd.Generation++
	}
	upd.ResourceVersion = nextRV(old.ResourceVersion)
	return upd, tracker.Update(deploymentsGVR, upd, upd.Namespace)
}

func nextRV(rv string) string {
	n, _ := strconv.Atoi(rv)
	return strconv.Itoa(n + 1)
}

func scaleOf(dep *appsv1.Deployment) *autoscalingv1.Scale {
	return &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: dep.Name, Namespace: dep.Namespace, UID: dep.UID, ResourceVersion: dep.ResourceVersion},
		Spec:       autoscalingv1.ScaleSpec{Replicas: specReplicas(dep)},
		Status:     autoscalingv1.ScaleStatus{Replicas: dep.Status.Replicas},
	}
}

// edit changes a deployment as someone else would, through the API server
// (generation bumps if the spec changed).
func edit(t *testing.T, c *fake.Clientset, ns, name string, change func(*appsv1.Deployment)) {
	t.Helper()
	old, err := trackedDeployment(c.Tracker(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	upd := old.DeepCopy()
	change(upd)
	if _, err := commit(c.Tracker(), old, upd); err != nil {
		t.Fatal(err)
	}
}

func stored(t *testing.T, c *fake.Clientset, ns, name string) *appsv1.Deployment {
	t.Helper()
	dep, err := trackedDeployment(c.Tracker(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return dep
}

// actions renders the requests the driver sent, one line each:
// verb resource[/subresource] namespace/name [patch type and body | scale replicas and resourceVersion].
func actions(c *fake.Clientset) []string {
	var out []string
	for _, a := range c.Actions() {
		res := a.GetResource().Resource
		if sub := a.GetSubresource(); sub != "" {
			res += "/" + sub
		}
		line := a.GetVerb() + " " + res + " " + a.GetNamespace() + "/"
		switch a := a.(type) {
		case k8stesting.PatchAction:
			line += a.GetName() + " " + string(a.GetPatchType()) + " " + string(a.GetPatch())
		case k8stesting.UpdateAction:
			if sc, ok := a.GetObject().(*autoscalingv1.Scale); ok {
				line += fmt.Sprintf("%s replicas=%d rv=%s", sc.Name, sc.Spec.Replicas, sc.ResourceVersion)
			} else {
				line += fmt.Sprintf("%T", a.GetObject())
			}
		case k8stesting.GetAction:
			line += a.GetName()
		}
		out = append(out, line)
	}
	return out
}

func checkActions(t *testing.T, c *fake.Clientset, want ...string) {
	t.Helper()
	got := actions(c)
	if len(got) != len(want) {
		t.Errorf("sent %d requests, want %d:\ngot:\n%s\nwant:\n%s", len(got), len(want), lines(got), lines(want))
		return
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d:\ngot:  %s\nwant: %s", i, got[i], want[i])
		}
	}
}

func lines(s []string) string {
	b, _ := json.MarshalIndent(s, "", "  ")
	return string(b)
}

// fakeClock is the driver's Now and Wait: Wait advances the clock instead of
// sleeping, records the pause, and calls onWait (with the 1-based count) so a
// test can change the cluster while the driver "waits".
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	waits  []time.Duration
	onWait func(n int)
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Wait(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.waits = append(c.waits, d)
	n, hook := len(c.waits), c.onWait
	c.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return ctx.Err()
}

func (c *fakeClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// recorder collects report lines.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) report(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
}

func (r *recorder) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

func checkLines(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	got := r.Lines()
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(want) {
		t.Errorf("report lines:\ngot:\n%s\nwant:\n%s", lines(got), lines(want))
	}
}
