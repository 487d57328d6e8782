package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/recoverbot/recoverbot/recovery/kube"
)

const (
	howToRun = "no Kubernetes control plane for these tests: run `make test-k8s` " +
		"(it builds etcd, kube-apiserver and kube-controller-manager, starts them on 127.0.0.1 " +
		"and sets RECOVERBOT_TEST_KUBECONFIG and RECOVERBOT_TEST_KUBECONFIG_ADMIN)"

	testNamespace  = "recoverbot-test" // where deploy/rbac.yaml is applied
	otherNamespace = "other"           // no Role for the bot here
	botUser        = "system:serviceaccount:recoverbot-test:recoverbot"

	// patience bounds every wait for the controllers; they answer in well under a second.
	patience = 60 * time.Second
	pollStep = 100 * time.Millisecond

	revisionAnnotation = "deployment.kubernetes.io/revision"
	hashLabel          = appsv1.DefaultDeploymentUniqueLabelKey // pod-template-hash
)

// runID and seq keep each test's objects apart from those of earlier runs
// (-count, or an earlier make test-k8s on a kept control plane), which may
// still be being deleted, and whose names the controllers may still hold in
// their rate-limited queues.
var (
	runID = strconv.FormatInt(time.Now().UnixNano()/1e6%(36*36*36*36), 36)
	seq   atomic.Int64
)

// unique names an object of this test.
func unique(name string) string { return name + "-" + runID + strconv.FormatInt(seq.Add(1), 36) }

// cluster is the control plane make test-k8s started.
type cluster struct {
	ns        string
	botConfig *rest.Config
	bot       kubernetes.Interface // the bot's ServiceAccount token: what the driver uses
	admin     kubernetes.Interface // system:masters: set-up, inspection and "someone else"
}

// connect finds the control plane, or skips the test (fails it under
// RECOVERBOT_REQUIRE_K8S=1, which make test-k8s sets).
func connect(t *testing.T) *cluster {
	t.Helper()
	botPath, adminPath := os.Getenv("RECOVERBOT_TEST_KUBECONFIG"), os.Getenv("RECOVERBOT_TEST_KUBECONFIG_ADMIN")
	if botPath == "" || adminPath == "" {
		if os.Getenv("RECOVERBOT_REQUIRE_K8S") == "1" {
			t.Fatalf("%s (RECOVERBOT_REQUIRE_K8S=1)", howToRun)
		}
		t.Skip(howToRun)
	}
	// The bot's kubeconfig is read the way the binary reads it.
	botConfig, ns, err := kube.Config(botPath)
	if err != nil {
		t.Fatalf("bot kubeconfig: %v", err)
	}
	if ns != testNamespace {
		t.Fatalf("bot kubeconfig namespace %q, want %q", ns, testNamespace)
	}
	adminConfig, _, err := kube.Config(adminPath)
	if err != nil {
		t.Fatalf("admin kubeconfig: %v", err)
	}
	// client-go's default 5 requests/s would only slow the polling down.
	for _, cfg := range []*rest.Config{botConfig, adminConfig} {
		cfg.QPS, cfg.Burst = 200, 400
	}
	return &cluster{ns: ns, botConfig: botConfig, bot: newClient(t, botConfig), admin: newClient(t, adminConfig)}
}

func newClient(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// driver is the bot's driver, as the bot's ServiceAccount.
func (c *cluster) driver(opts ...kube.Option) *kube.Driver {
	return kube.New(c.bot, c.ns, append([]kube.Option{kube.WithPollInterval(pollStep)}, opts...)...)
}

// eventually polls cond until it holds; an error from cond fails the test.
func eventually(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	tick := time.NewTicker(pollStep)
	defer tick.Stop()
	for {
		ok, err := cond(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: not seen within %s", what, patience)
		case <-tick.C:
		}
	}
}

// deployment creates ns/name as admin: replicas, selector app=name, two
// containers ("app" with LOG_LEVEL=info and WORKERS=2, "sidecar" with no env),
// then change. It is deleted at the end of the test.
func (c *cluster) deployment(t *testing.T, ns, name string, replicas int32, change ...func(*appsv1.Deployment)) *appsv1.Deployment {
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{
					{Name: "app", Image: "registry.k8s.io/pause:3.10",
						Env: []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}, {Name: "WORKERS", Value: "2"}}},
					{Name: "sidecar", Image: "registry.k8s.io/pause:3.10"},
				}},
			},
		},
	}
	for _, f := range change {
		f(d)
	}
	created, err := c.admin.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create deployment %s/%s: %v", ns, name, err)
	}
	t.Cleanup(func() {
		bg := metav1.DeletePropagationBackground
		_ = c.admin.AppsV1().Deployments(ns).Delete(context.Background(), name, metav1.DeleteOptions{PropagationPolicy: &bg})
	})
	return created
}

// service creates ns/name as admin with selector, deleted at the end of the test.
func (c *cluster) service(t *testing.T, ns, name string, selector map[string]string) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Selector: selector,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
	created, err := c.admin.CoreV1().Services(ns).Create(t.Context(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service %s/%s: %v", ns, name, err)
	}
	t.Cleanup(func() { _ = c.admin.CoreV1().Services(ns).Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return created
}

func (c *cluster) get(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	d, err := c.admin.AppsV1().Deployments(c.ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get deployment %s: %v", name, err)
	}
	return d
}

func (c *cluster) getService(t *testing.T, ns, name string) *corev1.Service {
	t.Helper()
	s, err := c.admin.CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get service %s/%s: %v", ns, name, err)
	}
	return s
}

// observed waits until the deployment controller has seen the deployment's
// current spec (status.observedGeneration == metadata.generation) and returns
// it. The controller writes that status after the spec change that bumped the
// generation, so from then on resourceVersion has moved past that change.
func (c *cluster) observed(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	eventually(t, "the deployment controller to observe deployment "+name, func(ctx context.Context) (bool, error) {
		var err error
		d, err = c.admin.AppsV1().Deployments(c.ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && d.Status.ObservedGeneration == d.Generation, err
	})
	return d
}

// currentReplicaSet waits for the ReplicaSet the deployment controller made for
// the deployment's current pod template (the controller's own test: the same
// template but for the pod-template-hash label) and returns both. It never
// counts ReplicaSets: quick successive changes leave a varying number of them.
func (c *cluster) currentReplicaSet(t *testing.T, name string) (*appsv1.Deployment, *appsv1.ReplicaSet) {
	t.Helper()
	var (
		dep *appsv1.Deployment
		cur *appsv1.ReplicaSet
	)
	eventually(t, "the ReplicaSet of deployment "+name+"'s current pod template", func(ctx context.Context) (bool, error) {
		var err error
		if dep, err = c.admin.AppsV1().Deployments(c.ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return false, err
		}
		if dep.Status.ObservedGeneration != dep.Generation {
			return false, nil
		}
		sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
		if err != nil {
			return false, err
		}
		list, err := c.admin.AppsV1().ReplicaSets(c.ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return false, err
		}
		for i := range list.Items {
			rs := &list.Items[i]
			if metav1.IsControlledBy(rs, dep) && sameTemplateIgnoringHash(rs.Spec.Template, dep.Spec.Template) &&
				rs.Annotations[revisionAnnotation] == dep.Annotations[revisionAnnotation] {
				cur = rs
				return true, nil
			}
		}
		return false, nil
	})
	if h := cur.Labels[hashLabel]; h == "" || cur.Spec.Template.Labels[hashLabel] != h {
		t.Fatalf("ReplicaSet %s: %s label %q, template label %q", cur.Name, hashLabel, h, cur.Spec.Template.Labels[hashLabel])
	}
	return dep, cur
}

func sameTemplateIgnoringHash(a, b corev1.PodTemplateSpec) bool {
	a, b = *a.DeepCopy(), *b.DeepCopy()
	delete(a.Labels, hashLabel)
	delete(b.Labels, hashLabel)
	return apiequality.Semantic.DeepEqual(a, b)
}

// env returns container's value of name, and whether it is set.
func env(d *appsv1.Deployment, container, name string) (string, bool) {
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name != container {
			continue
		}
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value, true
			}
		}
	}
	return "", false
}

// workers describes WORKERS on both containers: "app=2 sidecar=unset".
func workers(d *appsv1.Deployment) string {
	var parts []string
	for _, c := range []string{"app", "sidecar"} {
		v, ok := env(d, c, "WORKERS")
		if !ok {
			v = "unset"
		}
		parts = append(parts, c+"="+v)
	}
	return strings.Join(parts, " ")
}

// sameTemplate fails the test unless the deployment's pod template is exactly
// want (after the API server's defaulting, which both went through).
func sameTemplate(t *testing.T, what string, got *appsv1.Deployment, want corev1.PodTemplateSpec) {
	t.Helper()
	if !apiequality.Semantic.DeepEqual(got.Spec.Template, want) {
		g, _ := json.Marshal(got.Spec.Template)
		w, _ := json.Marshal(want)
		t.Fatalf("%s: pod template\n got %s\nwant %s", what, g, w)
	}
}

// report collects a driver's report lines; each may also run a hook.
type report struct {
	mu    sync.Mutex
	lines []string
	hook  func(line string)
}

func (r *report) add(line string) {
	r.mu.Lock()
	r.lines = append(r.lines, line)
	hook := r.hook
	r.mu.Unlock()
	if hook != nil {
		hook(line)
	}
}

func (r *report) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

func (r *report) String() string { return fmt.Sprintf("%q", r.all()) }

// has reports whether some line contains s.
func (r *report) has(s string) bool {
	for _, l := range r.all() {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
