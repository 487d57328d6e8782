package e2e

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	typedappsv1 "k8s.io/client-go/kubernetes/typed/apps/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/recoverbot/recoverbot/runbooks"
)

// grantedRules is deploy/rbac.yaml's Role, as "group resource verbs".
var grantedRules = []string{
	" services get,patch",
	"apps deployments get,patch",
	"apps deployments/scale get,update",
}

// TestRBACRulesAreExactlyTheRole: the API server's own account of what the bot's
// ServiceAccount may do is the Role's three rules in its namespace, and nothing
// in another namespace, beyond what any ServiceAccount of the cluster may (the
// baseline: the same review for the namespace's "default" ServiceAccount, which
// has no binding of its own: self-reviews, discovery, cluster trust bundles).
func TestRBACRulesAreExactlyTheRole(t *testing.T) {
	c := connect(t)
	who, err := c.bot.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := who.Status.UserInfo.Username; got != botUser {
		t.Fatalf("the tests' client is %q, want the bot's ServiceAccount %q", got, botUser)
	}
	tr, err := c.admin.CoreV1().ServiceAccounts(c.ns).CreateToken(t.Context(), "default", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	baseCfg := rest.AnonymousClientConfig(c.botConfig)
	baseCfg.BearerToken = tr.Status.Token
	base := newClient(t, baseCfg)

	for ns, want := range map[string][]string{testNamespace: grantedRules, otherNamespace: nil} {
		baseline := map[string]bool{}
		for _, r := range rules(t, base, ns) {
			baseline[r] = true
		}
		var got []string
		for _, r := range rules(t, c.bot, ns) {
			if !baseline[r] {
				got = append(got, r)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: beyond any ServiceAccount, the bot may\n%s\nwant\n%s", ns, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for r := range baseline {
			if strings.Contains(r, "deployments") || strings.Contains(r, " services ") {
				t.Errorf("%s: every ServiceAccount may %q: the test proves nothing", ns, r)
			}
		}
	}
}

// rules returns what client may do in ns, as sorted "group resource verbs" lines,
// from the API server's SelfSubjectRulesReview.
func rules(t *testing.T, client kubernetes.Interface, ns string) []string {
	t.Helper()
	review, err := client.AuthorizationV1().SelfSubjectRulesReviews().Create(t.Context(),
		&authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if review.Status.Incomplete || review.Status.EvaluationError != "" {
		t.Fatalf("%s: rules review incomplete: %s", ns, review.Status.EvaluationError)
	}
	var out []string
	for _, r := range review.Status.ResourceRules {
		verbs := slices.Sorted(slices.Values(r.Verbs))
		names := ""
		if len(r.ResourceNames) > 0 {
			names = " names=" + strings.Join(r.ResourceNames, ",")
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				out = append(out, g+" "+res+" "+strings.Join(verbs, ",")+names)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestRBACEnforced: every call the driver makes succeeds in its namespace and
// is refused (403) in another; calls the Role does not grant are refused in
// its own namespace too. Writes are server-side dry runs: authorised exactly
// like real ones, changing nothing.
func TestRBACEnforced(t *testing.T) {
	c := connect(t)
	name := unique("rbac")
	for _, ns := range []string{testNamespace, otherNamespace} {
		c.deployment(t, ns, name, 1)
		c.service(t, ns, name, map[string]string{"app": name})
	}
	if _, err := c.admin.CoreV1().Secrets(testNamespace).Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.admin.CoreV1().Secrets(testNamespace).Delete(context.Background(), name, metav1.DeleteOptions{})
	})

	dry := []string{metav1.DryRunAll}
	deps := func(ns string) typedappsv1.DeploymentInterface { return c.bot.AppsV1().Deployments(ns) }
	svcs := func(ns string) typedcorev1.ServiceInterface { return c.bot.CoreV1().Services(ns) }
	// The driver's calls, one per verb the Role grants.
	driverCalls := map[string]func(ctx context.Context, ns string) error{
		"get deployments": func(ctx context.Context, ns string) error {
			_, err := deps(ns).Get(ctx, name, metav1.GetOptions{})
			return err
		},
		"patch deployments": func(ctx context.Context, ns string) error {
			_, err := deps(ns).Patch(ctx, name, types.StrategicMergePatchType,
				[]byte(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"x"}}}}}`),
				metav1.PatchOptions{DryRun: dry})
			return err
		},
		"get deployments/scale": func(ctx context.Context, ns string) error {
			_, err := deps(ns).GetScale(ctx, name, metav1.GetOptions{})
			return err
		},
		"update deployments/scale": func(ctx context.Context, ns string) error {
			sc := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: autoscalingv1.ScaleSpec{Replicas: 3}}
			_, err := deps(ns).UpdateScale(ctx, name, sc, metav1.UpdateOptions{DryRun: dry})
			return err
		},
		"get services": func(ctx context.Context, ns string) error {
			_, err := svcs(ns).Get(ctx, name, metav1.GetOptions{})
			return err
		},
		"patch services": func(ctx context.Context, ns string) error {
			_, err := svcs(ns).Patch(ctx, name, types.JSONPatchType,
				[]byte(`[{"op":"replace","path":"/spec/selector/app","value":"other"}]`), metav1.PatchOptions{DryRun: dry})
			return err
		},
	}
	for _, what := range slices.Sorted(maps.Keys(driverCalls)) {
		call := driverCalls[what]
		t.Run("allowed in "+testNamespace+": "+what, func(t *testing.T) {
			if err := call(t.Context(), testNamespace); err != nil {
				t.Fatalf("%s as the bot: %v", what, err)
			}
		})
		t.Run("forbidden in "+otherNamespace+": "+what, func(t *testing.T) {
			forbidden(t, call(t.Context(), otherNamespace))
		})
	}

	ns := testNamespace
	notGranted := map[string]func(ctx context.Context) error{
		"list deployments": func(ctx context.Context) error {
			_, err := deps(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"watch deployments": func(ctx context.Context) error {
			w, err := deps(ns).Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		},
		"create deployments": func(ctx context.Context) error {
			d := c.get(t, name).DeepCopy()
			d.ObjectMeta = metav1.ObjectMeta{Name: "rbac-new"}
			_, err := deps(ns).Create(ctx, d, metav1.CreateOptions{DryRun: dry})
			return err
		},
		"update deployments": func(ctx context.Context) error {
			_, err := deps(ns).Update(ctx, c.get(t, name), metav1.UpdateOptions{DryRun: dry})
			return err
		},
		"delete deployments": func(ctx context.Context) error {
			return deps(ns).Delete(ctx, name, metav1.DeleteOptions{DryRun: dry})
		},
		"update deployments/status": func(ctx context.Context) error {
			_, err := deps(ns).UpdateStatus(ctx, c.get(t, name), metav1.UpdateOptions{DryRun: dry})
			return err
		},
		"patch deployments/scale": func(ctx context.Context) error {
			_, err := deps(ns).Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"replicas":3}}`),
				metav1.PatchOptions{DryRun: dry}, "scale")
			return err
		},
		"list replicasets": func(ctx context.Context) error {
			_, err := c.bot.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"list pods": func(ctx context.Context) error {
			_, err := c.bot.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"delete pods": func(ctx context.Context) error {
			return c.bot.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{DryRun: dry}, metav1.ListOptions{})
		},
		"list services": func(ctx context.Context) error {
			_, err := svcs(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"update services": func(ctx context.Context) error {
			_, err := svcs(ns).Update(ctx, c.getService(t, ns, name), metav1.UpdateOptions{DryRun: dry})
			return err
		},
		"delete services": func(ctx context.Context) error {
			return svcs(ns).Delete(ctx, name, metav1.DeleteOptions{DryRun: dry})
		},
		"list secrets": func(ctx context.Context) error {
			_, err := c.bot.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
			return err
		},
		"get secrets": func(ctx context.Context) error {
			_, err := c.bot.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			return err
		},
		"get configmaps": func(ctx context.Context) error {
			_, err := c.bot.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
			return err
		},
		"create serviceaccounts/token": func(ctx context.Context) error {
			_, err := c.bot.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "recoverbot",
				&authenticationv1.TokenRequest{}, metav1.CreateOptions{DryRun: dry})
			return err
		},
		"create rolebindings": func(ctx context.Context) error {
			rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "escalate"},
				RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "admin"},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "recoverbot", Namespace: ns}}}
			_, err := c.bot.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{DryRun: dry})
			return err
		},
		"list namespaces (cluster-wide)": func(ctx context.Context) error {
			_, err := c.bot.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			return err
		},
		"list nodes (cluster-wide)": func(ctx context.Context) error {
			_, err := c.bot.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		},
	}
	for _, what := range slices.Sorted(maps.Keys(notGranted)) {
		call := notGranted[what]
		t.Run("forbidden in "+testNamespace+": "+what, func(t *testing.T) {
			forbidden(t, call(t.Context()))
		})
	}
}

// TestRBACDriverRefusedInOtherNamespace: each action aimed at a namespace the
// Role does not cover fails with the API server's 403, before any change.
func TestRBACDriverRefusedInOtherNamespace(t *testing.T) {
	c := connect(t)
	name := unique("rbac-driver")
	c.deployment(t, otherNamespace, name, 1)
	c.service(t, otherNamespace, name, map[string]string{"app": "payments", "track": "primary"})
	in := func(a runbooks.Action) runbooks.Action { a.Target.Namespace = otherNamespace; return a }
	for _, a := range []runbooks.Action{
		in(restartAction(name, 5)), in(replicasAction(name, 5)), in(envAction(name, 8)), in(failoverAction(name)),
	} {
		t.Run(string(a.Type)+" "+a.Resource, func(t *testing.T) {
			rep := &report{}
			state, err := c.driver().Apply(t.Context(), a, rep.add)
			forbidden(t, err)
			if state != nil {
				t.Errorf("state %s after a refused call", state)
			}
		})
	}
	dep, err := c.admin.AppsV1().Deployments(otherNamespace).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := c.admin.CoreV1().Services(otherNamespace).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Generation != 1 || svc.Spec.Selector["track"] != "primary" {
		t.Errorf("objects in %s changed: deployment generation %d, service selector %v", otherNamespace, dep.Generation, svc.Spec.Selector)
	}
}

// forbidden fails the test unless err is the API server's 403 for the bot.
func forbidden(t *testing.T, err error) {
	t.Helper()
	if !apierrors.IsForbidden(err) {
		t.Fatalf("got %v, want 403 Forbidden", err)
	}
	if !strings.Contains(err.Error(), botUser) {
		t.Errorf("403 %q does not name %s", err, botUser)
	}
}
