package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
// as admin, once per test binary (apply is idempotent; -count reuses it).
// The namespace the Role acts in is the user's: it is created first, as the
// README says.
func install(t *testing.T, c *cluster) []byte {
	t.Helper()
	if _, err := c.admin.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: actsInNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	kubectl := filepath.Join("..", "bin", "kubectl")
	rendered, err := exec.Command(kubectl, "kustomize", filepath.Join("..", "..", "..", "deploy")).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/: %v%s", err, stderrOf(err))
	}
	apply := exec.Command(kubectl, "--kubeconfig", os.Getenv("RECOVERBOT_TEST_KUBECONFIG_ADMIN"),
		"apply", "--server-side", "--field-manager", "recoverbot-install-test", "-f", "-")
	apply.Stdin = bytes.NewReader(rendered)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply --server-side: %v\n%s", err, out)
	}
	return rendered
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
	if ctr.Image != "recoverbot:dev" {
		t.Errorf("image %q, want kustomization.yaml's recoverbot:dev", ctr.Image)
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
	if _, ok := mounts["/data"]; !ok {
		t.Error("no /data mount for the bbolt file")
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
