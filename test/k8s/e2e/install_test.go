package e2e

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// The install (deploy/, kubectl apply -k) as the README documents it.
const (
	installNamespace = "recoverbot" // deploy/namespace.yaml
	actsInNamespace  = "prod"       // deploy/rbac.yaml's Role
	installSelector  = "app.kubernetes.io/name=recoverbot"
	installedBot     = "system:serviceaccount:recoverbot:recoverbot"
)

// install renders deploy/ with kubectl kustomize and applies it server-side
// as admin, once per test binary: the first test to call it applies, the
// others (and later -count runs) reuse that install and its outcome.
// The namespace the Role acts in is the user's: it is created first, as the
// README says.
func install(t *testing.T, c *cluster) []byte {
	t.Helper()
	installed.Do(func() { installed.rendered, installed.err = apply(t.Context(), c) })
	if installed.err != nil {
		t.Fatal(installed.err)
	}
	return installed.rendered
}

var installed struct {
	sync.Once
	rendered []byte
	err      error
}

func apply(ctx context.Context, c *cluster) ([]byte, error) {
	if _, err := c.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: actsInNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	kubectl := filepath.Join("..", "bin", "kubectl")
	rendered, err := exec.CommandContext(ctx, kubectl, "kustomize", deployDir).Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl kustomize deploy/: %w%s", err, stderrOf(err))
	}
	apply := exec.CommandContext(ctx, kubectl, "--kubeconfig", os.Getenv("RECOVERBOT_TEST_KUBECONFIG_ADMIN"),
		"apply", "--server-side", "--field-manager", "recoverbot-install-test", "-f", "-")
	apply.Stdin = bytes.NewReader(rendered)
	if out, err := apply.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kubectl apply --server-side: %w\n%s", err, out)
	}
	return rendered, nil
}

var deployDir = filepath.Join("..", "..", "..", "deploy")

// kustomization is what the tests read from deploy/kustomization.yaml: the
// image's tag and the runbook files of the ConfigMap generator.
type kustomization struct {
	Images []struct {
		Name   string `yaml:"name"`
		NewTag string `yaml:"newTag"`
	} `yaml:"images"`
	ConfigMapGenerator []struct {
		Name  string   `yaml:"name"`
		Files []string `yaml:"files"`
	} `yaml:"configMapGenerator"`
}

func readKustomization(t *testing.T) kustomization {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("deploy/kustomization.yaml: %v", err)
	}
	return k
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return "\n" + string(ee.Stderr)
	}
	return ""
}

// TestInstallAdmittedUnderRestricted: deploy/ as rendered by kubectl kustomize
// is accepted by the real API server (server-side apply validates every
// object); the deployment and ReplicaSet controllers then create the bot's pod,
// which Pod Security admission lets into the namespace that enforces
// "restricted". No kubelet runs here, so the pod stays Pending. The manifests
// hold no Secret: the tokens are the user's.
func TestInstallAdmittedUnderRestricted(t *testing.T) {
	c := connect(t)
	rendered := install(t, c)
	if bytes.Contains(rendered, []byte("\nkind: Secret\n")) {
		t.Error("deploy/ renders a Secret: the tokens must come from one the user creates")
	}

	ns, err := c.admin.CoreV1().Namespaces().Get(t.Context(), installNamespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("namespace %s enforces %q, want restricted", installNamespace, got)
	}

	// The pod of the Deployment's current template (not one left from an
	// earlier apply): the ReplicaSet the controller made for it, then its pod.
	in := *c
	in.ns = installNamespace
	_, rs := in.currentReplicaSet(t, "recoverbot")
	pod := waitForPod(t, c, hashLabel+"="+rs.Labels[hashLabel])
	if len(pod.OwnerReferences) != 1 || pod.OwnerReferences[0].Kind != "ReplicaSet" {
		t.Errorf("pod %s owned by %+v, want the deployment's ReplicaSet", pod.Name, pod.OwnerReferences)
	}
	if pod.Status.Phase != corev1.PodPending {
		t.Errorf("pod %s is %s: without a kubelet it can only be Pending", pod.Name, pod.Status.Phase)
	}
	if pod.Spec.ServiceAccountName != "recoverbot" {
		t.Errorf("pod runs as ServiceAccount %q, want recoverbot", pod.Spec.ServiceAccountName)
	}
	ctr := pod.Spec.Containers[0]
	kust := readKustomization(t)
	var tag string
	for _, img := range kust.Images {
		if img.Name == "recoverbot" {
			tag = img.NewTag
		}
	}
	if want := "recoverbot:" + tag; tag == "" || ctr.Image != want {
		t.Errorf("image %q, want kustomization.yaml's %q", ctr.Image, want)
	}
	for _, e := range ctr.Env {
		if strings.Contains(e.Name, "TOKEN") || strings.Contains(e.Name, "KEY") {
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "recoverbot" {
				t.Errorf("%s is not a reference to the Secret recoverbot: %+v", e.Name, e)
			}
		}
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range ctr.VolumeMounts {
		mounts[m.MountPath] = m
	}
	if m, ok := mounts["/etc/recoverbot/runbooks"]; !ok || !m.ReadOnly {
		t.Errorf("runbooks mount %+v, want /etc/recoverbot/runbooks read-only", m)
	}
	if m, ok := mounts["/data"]; !ok || m.ReadOnly {
		t.Errorf("/data mount %+v, want the bbolt file's volume, writable", m)
	}
	checkPodSpec(t, c, pod, mounts)
	checkRunbooksConfigMap(t, c, pod, kust)
	checkService(t, c, pod)
	checkNetworkPolicy(t, c, pod)
}

// volume returns the pod's volume with the name, or fails the test.
func volume(t *testing.T, pod *corev1.Pod, name string) corev1.Volume {
	t.Helper()
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("pod %s has no volume %q", pod.Name, name)
	return corev1.Volume{}
}

// checkPodSpec: the admitted pod as deploy/deployment.yaml means it (on the
// PVC, read-only root, probes, resources, GOMEMLIMIT under the limit), made by
// a Deployment of one replica replaced by Recreate: one writer of the bbolt file.
func checkPodSpec(t *testing.T, c *cluster, pod *corev1.Pod, mounts map[string]corev1.VolumeMount) {
	dep, err := c.admin.AppsV1().Deployments(installNamespace).Get(t.Context(), "recoverbot", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r := dep.Spec.Replicas; r == nil || *r != 1 {
		got := "unset"
		if r != nil {
			got = strconv.Itoa(int(*r))
		}
		t.Errorf("replicas %s, want 1: bbolt has one writer", got)
	}
	if got := dep.Spec.Strategy.Type; got != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy %q, want Recreate: the old pod lets go of the file first", got)
	}

	ctr := pod.Spec.Containers[0]
	if sc := ctr.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container securityContext %+v, want readOnlyRootFilesystem: true", sc)
	}
	data := volume(t, pod, mounts["/data"].Name)
	if data.PersistentVolumeClaim == nil || data.PersistentVolumeClaim.ClaimName != "recoverbot-data" {
		t.Errorf("/data is volume %+v, want the PVC recoverbot-data", data)
	}
	if _, err := c.admin.CoreV1().PersistentVolumeClaims(installNamespace).Get(t.Context(), "recoverbot-data", metav1.GetOptions{}); err != nil {
		t.Errorf("the PVC the pod mounts: %v", err)
	}

	for _, p := range []struct {
		name, path string
		probe      *corev1.Probe
	}{
		{"startup", "/healthz", ctr.StartupProbe},
		{"liveness", "/healthz", ctr.LivenessProbe},
		{"readiness", "/readyz", ctr.ReadinessProbe},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe %+v, want GET %s on the port http", p.name, p.probe, p.path)
		}
	}
	if len(ctr.Ports) != 1 || ctr.Ports[0].Name != "http" || ctr.Ports[0].ContainerPort != 8080 {
		t.Errorf("ports %+v, want http on 8080", ctr.Ports)
	}

	res := ctr.Resources
	limit, cpu, mem := res.Limits[corev1.ResourceMemory], res.Requests[corev1.ResourceCPU], res.Requests[corev1.ResourceMemory]
	if limit.IsZero() || cpu.IsZero() || mem.IsZero() || mem.Cmp(limit) > 0 {
		t.Errorf("resources %+v, want cpu and memory requests and a memory limit no lower than the request", res)
	}
	// GOMEMLIMIT: a soft limit a little under the hard one (85-95%), in the
	// runtime's own syntax (a number with a B, KiB, MiB or GiB suffix).
	var gomem string
	for _, e := range ctr.Env {
		if e.Name == "GOMEMLIMIT" {
			gomem = e.Value
		}
	}
	units := map[string]int64{"GiB": 1 << 30, "MiB": 1 << 20, "KiB": 1 << 10, "B": 1}
	var soft int64
	for _, u := range []string{"GiB", "MiB", "KiB", "B"} {
		if n, ok := strings.CutSuffix(gomem, u); ok {
			if v, err := strconv.ParseInt(n, 10, 64); err == nil {
				soft = v * units[u]
			}
			break
		}
	}
	if hard := limit.Value(); soft < hard*85/100 || soft > hard*95/100 {
		t.Errorf("GOMEMLIMIT %q (%d bytes), want 85-95%% of limits.memory %s (%d bytes)", gomem, soft, limit.String(), hard)
	}
}

// checkRunbooksConfigMap: the pod's runbooks volume names the ConfigMap
// kustomize generated (recoverbot-runbooks-<hash>), which exists with one key
// per file the generator lists, each holding that file.
func checkRunbooksConfigMap(t *testing.T, c *cluster, pod *corev1.Pod, kust kustomization) {
	v := volume(t, pod, "runbooks")
	if v.ConfigMap == nil {
		t.Fatalf("runbooks volume %+v is not a ConfigMap", v)
	}
	name := v.ConfigMap.Name
	if hash, ok := strings.CutPrefix(name, "recoverbot-runbooks-"); !ok || len(hash) < 6 {
		t.Errorf("runbooks volume names ConfigMap %q, want the generated recoverbot-runbooks-<hash>", name)
	}
	cm, err := c.admin.CoreV1().ConfigMaps(installNamespace).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the ConfigMap the pod mounts: %v", err)
	}
	var files []string
	for _, g := range kust.ConfigMapGenerator {
		if g.Name == "recoverbot-runbooks" {
			files = g.Files
		}
	}
	var want []string
	for _, f := range files {
		key := filepath.Base(f)
		want = append(want, key)
		b, err := os.ReadFile(filepath.Join(deployDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data[key] != string(b) {
			t.Errorf("ConfigMap %s key %s is not deploy/%s", name, key, f)
		}
	}
	slices.Sort(want)
	got := slices.Sorted(maps.Keys(cm.Data))
	if len(want) != 6 || !slices.Equal(got, want) {
		t.Errorf("ConfigMap %s has keys %q, want the six runbooks %q", name, got, want)
	}
}

// checkService: the Service selects the admitted pod and sends its port to
// the container's port http (8080).
func checkService(t *testing.T, c *cluster, pod *corev1.Pod) {
	svc, err := c.admin.CoreV1().Services(installNamespace).Get(t.Context(), "recoverbot", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sel := svc.Spec.Selector; len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(labels.Set(pod.Labels)) {
		t.Errorf("Service selector %v does not select the pod (labels %v)", sel, pod.Labels)
	}
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service ports %+v, want one", svc.Spec.Ports)
	}
	p := svc.Spec.Ports[0]
	if p.Port != 8080 || p.TargetPort.String() != pod.Spec.Containers[0].Ports[0].Name {
		t.Errorf("Service port %d -> %s, want 8080 -> the container's port %q", p.Port, p.TargetPort.String(), pod.Spec.Containers[0].Ports[0].Name)
	}
}

// checkNetworkPolicy: the policy applies to the admitted pod and admits
// ingress only from the namespace monitoring, on TCP 8080.
func checkNetworkPolicy(t *testing.T, c *cluster, pod *corev1.Pod) {
	np, err := c.admin.NetworkingV1().NetworkPolicies(installNamespace).Get(t.Context(), "recoverbot-intake", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("NetworkPolicy podSelector %+v does not select the pod (labels %v): %v", np.Spec.PodSelector, pod.Labels, err)
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("policyTypes %v, want [Ingress]", np.Spec.PolicyTypes)
	}
	if len(np.Spec.Ingress) != 1 {
		t.Fatalf("ingress rules %+v, want one", np.Spec.Ingress)
	}
	rule := np.Spec.Ingress[0]
	monitoring := labels.Set{corev1.LabelMetadataName: "monitoring"}
	if len(rule.From) != 1 || rule.From[0].PodSelector != nil || rule.From[0].IPBlock != nil || rule.From[0].NamespaceSelector == nil {
		t.Errorf("ingress from %+v, want only a namespaceSelector", rule.From)
	} else if ns, err := metav1.LabelSelectorAsSelector(rule.From[0].NamespaceSelector); err != nil || ns.Empty() ||
		!ns.Matches(monitoring) || ns.Matches(labels.Set{corev1.LabelMetadataName: "default"}) {
		t.Errorf("ingress namespaceSelector %+v, want the namespace monitoring alone", rule.From[0].NamespaceSelector)
	}
	if len(rule.Ports) != 1 || rule.Ports[0].Port == nil || rule.Ports[0].Port.IntValue() != 8080 ||
		rule.Ports[0].Protocol == nil || *rule.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("ingress ports %+v, want TCP 8080", rule.Ports)
	}
}

// waitForPod returns the install's pod with the selector, watching until the
// ReplicaSet controller has created it (and Pod Security admission let it in).
func waitForPod(t *testing.T, c *cluster, selector string) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), patience)
	defer cancel()
	pods := c.admin.CoreV1().Pods(installNamespace)
	list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) > 0 {
		return &list.Items[0]
	}
	w, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("pod watch closed before a pod appeared")
			}
			if p, isPod := ev.Object.(*corev1.Pod); isPod && ev.Type == watch.Added {
				return p
			}
		case <-ctx.Done():
			// Say why: a refused pod is a FailedCreate on the ReplicaSet.
			rs, _ := c.admin.AppsV1().ReplicaSets(installNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: installSelector})
			var why []string
			for _, r := range rs.Items {
				for _, cond := range r.Status.Conditions {
					why = append(why, string(cond.Type)+": "+cond.Message)
				}
			}
			t.Fatalf("no pod %s within %s; ReplicaSets %d, conditions %q", selector, patience, len(rs.Items), why)
		}
	}
}

// TestInstallBrokenCopiesRefused: the namespace really enforces "restricted":
// the Deployment's own pod template, created as a bare pod, is admitted (a
// server-side dry run, which runs admission), and each copy broken in one
// restricted field is refused by Pod Security admission naming that field.
func TestInstallBrokenCopiesRefused(t *testing.T) {
	c := connect(t)
	install(t, c)
	dep, err := c.admin.AppsV1().Deployments(installNamespace).Get(t.Context(), "recoverbot", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podFrom := func(change func(*corev1.PodSpec)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "broken-", Namespace: installNamespace}}
		p.Spec = *dep.Spec.Template.Spec.DeepCopy()
		if change != nil {
			change(&p.Spec)
		}
		return p
	}
	create := func(p *corev1.Pod) error {
		_, err := c.admin.CoreV1().Pods(installNamespace).Create(t.Context(), p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	if err := create(podFrom(nil)); err != nil {
		t.Fatalf("the Deployment's own pod spec was refused: %v", err)
	}
	ctr := func(s *corev1.PodSpec) *corev1.SecurityContext { return s.Containers[0].SecurityContext }
	for _, tc := range []struct {
		name, field string
		change      func(*corev1.PodSpec)
	}{
		{"privilege escalation allowed", "allowPrivilegeEscalation != false", func(s *corev1.PodSpec) {
			ctr(s).AllowPrivilegeEscalation = new(true)
		}},
		{"a capability added", "unrestricted capabilities", func(s *corev1.PodSpec) {
			ctr(s).Capabilities.Add = []corev1.Capability{"NET_RAW"}
		}},
		{"capabilities not dropped", "unrestricted capabilities", func(s *corev1.PodSpec) {
			ctr(s).Capabilities.Drop = nil
		}},
		{"root user", "runAsUser=0", func(s *corev1.PodSpec) {
			ctr(s).RunAsUser = new(int64(0))
			s.SecurityContext.RunAsUser = new(int64(0))
		}},
		{"runAsNonRoot unset", "runAsNonRoot != true", func(s *corev1.PodSpec) {
			ctr(s).RunAsNonRoot = nil
			s.SecurityContext.RunAsNonRoot = nil
		}},
		{"no seccomp profile", "seccompProfile", func(s *corev1.PodSpec) {
			ctr(s).SeccompProfile = nil
			s.SecurityContext.SeccompProfile = nil
		}},
		{"a hostPath volume", "restricted volume types", func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		}},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			err := create(podFrom(tc.change))
			if !apierrors.IsForbidden(err) {
				t.Fatalf("got %v, want 403 from Pod Security admission", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, `violates PodSecurity "restricted:latest"`) || !strings.Contains(msg, tc.field) {
				t.Errorf("refusal %q does not name PodSecurity restricted and %q", msg, tc.field)
			}
		})
	}
}

// TestInstallRBACIsTheRole: the installed ServiceAccount recoverbot/recoverbot
// may, beyond what any ServiceAccount may, exactly deploy/rbac.yaml's three
// rules in the namespace it acts in, and nothing in its own namespace (where
// its Secret lives: the kubelet reads it, not the bot).
func TestInstallRBACIsTheRole(t *testing.T) {
	c := connect(t)
	install(t, c)
	token := func(ns, sa string) string {
		tr, err := c.admin.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(600))}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	as := func(tok string) *rest.Config {
		cfg := rest.AnonymousClientConfig(c.botConfig)
		cfg.BearerToken = tok
		return cfg
	}
	bot := newClient(t, as(token(installNamespace, "recoverbot")))
	// The baseline: a ServiceAccount without bindings of its own (up.sh waited
	// for this one to exist).
	base := newClient(t, as(token(testNamespace, "default")))

	who, err := bot.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := who.Status.UserInfo.Username; got != installedBot {
		t.Fatalf("token for %q, want %q", got, installedBot)
	}
	for ns, want := range map[string][]string{actsInNamespace: grantedRules, installNamespace: nil, otherNamespace: nil} {
		baseline := map[string]bool{}
		for _, r := range rules(t, base, ns) {
			baseline[r] = true
		}
		var got []string
		for _, r := range rules(t, bot, ns) {
			if !baseline[r] {
				got = append(got, r)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: beyond any ServiceAccount, the installed bot may\n%s\nwant\n%s", ns, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	// A read of its own Secret is refused: the pod gets the tokens as
	// environment variables from the kubelet, the bot never reads Secrets.
	if _, err := bot.CoreV1().Secrets(installNamespace).Get(t.Context(), "recoverbot", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("get secret recoverbot as the bot: %v, want 403", err)
	}
}
