package e2e

import (
	"context"
	"os"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	rbot "github.com/recoverbot/recoverbot/bot"
)

// TestLeaderMayLabelOnlyItsOwnPod: deploy-ha/leader-rbac.yaml, applied for a
// ServiceAccount of this test, lets a pod's token (bound to that pod, as the
// kubelet mounts it) patch the leader label onto its own pod, and the real API
// server's admission refuses the same patch on another pod of the same
// ServiceAccount, and from a token bound to no pod.
func TestLeaderMayLabelOnlyItsOwnPod(t *testing.T) {
	c := connect(t)
	ctx := t.Context()
	sa := unique("rb-ha")
	user := "system:serviceaccount:" + c.ns + ":" + sa
	raw, err := os.ReadFile("../../../deploy-ha/leader-rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(raw), "system:serviceaccount:recoverbot:recoverbot", user)
	if _, err := c.admin.CoreV1().ServiceAccounts(c.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.admin.CoreV1().ServiceAccounts(c.ns).Delete(context.Background(), sa, metav1.DeleteOptions{})
	})
	var policy string
	for _, doc := range strings.Split(text, "\n---\n") {
		var head struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatal(err)
		}
		bg := context.Background()
		switch head.Kind {
		case "Role":
			var r rbacv1.Role
			mustDecode(t, doc, &r)
			r.Namespace, r.Name = c.ns, sa
			if _, err := c.admin.RbacV1().Roles(c.ns).Create(ctx, &r, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.admin.RbacV1().Roles(c.ns).Delete(bg, sa, metav1.DeleteOptions{}) })
		case "RoleBinding":
			var b rbacv1.RoleBinding
			mustDecode(t, doc, &b)
			b.Namespace, b.Name, b.RoleRef.Name = c.ns, sa, sa
			b.Subjects = []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: c.ns}}
			if _, err := c.admin.RbacV1().RoleBindings(c.ns).Create(ctx, &b, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.admin.RbacV1().RoleBindings(c.ns).Delete(bg, sa, metav1.DeleteOptions{}) })
		case "ValidatingAdmissionPolicy":
			var p admissionregistrationv1.ValidatingAdmissionPolicy
			mustDecode(t, doc, &p)
			policy = p.Name
			p.Name = sa
			if _, err := c.admin.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, &p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = c.admin.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(bg, sa, metav1.DeleteOptions{})
			})
		case "ValidatingAdmissionPolicyBinding":
			var b admissionregistrationv1.ValidatingAdmissionPolicyBinding
			mustDecode(t, doc, &b)
			if b.Spec.PolicyName != policy {
				t.Fatalf("the binding names policy %q, the file's policy is %q", b.Spec.PolicyName, policy)
			}
			b.Name, b.Spec.PolicyName = sa, sa
			if _, err := c.admin.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, &b, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = c.admin.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(bg, sa, metav1.DeleteOptions{})
			})
		default:
			t.Fatalf("leader-rbac.yaml: unexpected kind %q", head.Kind)
		}
	}
	own, other := c.pod(t, sa), c.pod(t, sa)
	tr, err := c.admin.CoreV1().ServiceAccounts(c.ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: new(int64(600)),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: own.Name, UID: own.UID}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podCfg := rest.AnonymousClientConfig(c.botConfig)
	podCfg.BearerToken = tr.Status.Token
	asPod := newClient(t, podCfg)
	unbound, err := c.admin.CoreV1().ServiceAccounts(c.ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: new(int64(600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plainCfg := rest.AnonymousClientConfig(c.botConfig)
	plainCfg.BearerToken = unbound.Status.Token
	asPlain := newClient(t, plainCfg)

	label := []byte(`{"metadata":{"labels":{"` + rbot.LeaderLabel + `":"true"}}}`)
	// The policy takes effect once the API server has loaded it.
	eventually(t, "the admission policy refuses a patch of another pod", func(ctx context.Context) (bool, error) {
		_, err := asPod.CoreV1().Pods(c.ns).Patch(ctx, other.Name, types.MergePatchType, label, metav1.PatchOptions{})
		if err == nil {
			// Not loaded yet: undo, try again.
			_, err = c.admin.CoreV1().Pods(c.ns).Patch(ctx, other.Name, types.MergePatchType, []byte(`{"metadata":{"labels":{"`+rbot.LeaderLabel+`":null}}}`), metav1.PatchOptions{})
			return false, err
		}
		if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
			if !strings.Contains(err.Error(), "only its own pod") {
				return false, err
			}
			return true, nil
		}
		return false, err
	})
	if _, err := asPod.CoreV1().Pods(c.ns).Patch(ctx, own.Name, types.MergePatchType, label, metav1.PatchOptions{}); err != nil {
		t.Fatalf("the pod labelling itself: %v", err)
	}
	got, err := c.admin.CoreV1().Pods(c.ns).Get(ctx, own.Name, metav1.GetOptions{})
	if err != nil || got.Labels[rbot.LeaderLabel] != "true" {
		t.Fatalf("own pod's labels %v, %v; want %s=true", got.Labels, err, rbot.LeaderLabel)
	}
	if _, err := asPlain.CoreV1().Pods(c.ns).Patch(ctx, own.Name, types.MergePatchType, label, metav1.PatchOptions{}); err == nil || !strings.Contains(err.Error(), "only its own pod") {
		t.Errorf("a token bound to no pod patching a pod: %v, want the policy's refusal", err)
	}
}

func mustDecode(t *testing.T, doc string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
		t.Fatalf("leader-rbac.yaml: %v", err)
	}
}

// pod creates a pod of ServiceAccount sa (Pending: there is no scheduler),
// deleted at the end of the test.
func (c *cluster) pod(t *testing.T, sa string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: unique("rb-pod"), Labels: map[string]string{"app.kubernetes.io/name": "recoverbot"}},
		Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "bot", Image: "recoverbot:dev"}}}}
	created, err := c.admin.CoreV1().Pods(c.ns).Create(t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.admin.CoreV1().Pods(c.ns).Delete(context.Background(), created.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
	})
	return created
}
