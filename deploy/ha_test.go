package deploy

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/recoverbot/recoverbot/bot"
	"github.com/recoverbot/recoverbot/internal/testutil"
)

// haObject is what the HA test reads of a rendered object.
type haObject struct {
	Kind     string
	Metadata struct {
		Name      string
		Namespace string
	}
	Spec struct {
		Replicas *int
		Strategy struct{ Type string }
		Selector map[string]any
		Template struct {
			Spec struct {
				Containers []struct {
					Env []struct {
						Name      string
						Value     *string
						ValueFrom struct {
							FieldRef *struct {
								FieldPath string `yaml:"fieldPath"`
							} `yaml:"fieldRef"`
							SecretKeyRef *struct{ Key string } `yaml:"secretKeyRef"`
						} `yaml:"valueFrom"`
					}
					VolumeMounts []struct{ Name string } `yaml:"volumeMounts"`
				}
				Volumes []struct{ Name string }
			}
		}
		PolicyName string `yaml:"policyName"`
	}
	Rules []struct {
		APIGroups []string `yaml:"apiGroups"`
		Resources []string
		Verbs     []string
	}
	Subjects []struct{ Kind, Name, Namespace string }
	RoleRef  struct{ Kind, Name string } `yaml:"roleRef"`
}

// TestHAOverlay: deploy-ha renders (kubectl kustomize) to the base with 3
// replicas on etcd, a rolling update, no bbolt volume or claim, the pod's
// name and namespace from the downward API, settings the bot accepts as
// store: etcd; a Role allowing exactly patch on pods in the bot's namespace,
// bound to its ServiceAccount and narrowed to its own pod by an admission
// policy; and a Service selecting the leader label the bot sets.
func TestHAOverlay(t *testing.T) {
	kubectl := testutil.Binary(t, "kubectl", "kubectl")
	out, err := exec.Command(kubectl, "kustomize", "../deploy-ha").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("kubectl kustomize ../deploy-ha: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	objs := map[string]haObject{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o haObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		objs[o.Kind+"/"+o.Metadata.Namespace+"/"+o.Metadata.Name] = o
	}
	for k := range objs {
		if strings.HasPrefix(k, "PersistentVolumeClaim/") {
			t.Errorf("%s: the HA store is etcd, no volume", k)
		}
	}
	dep, ok := objs["Deployment/recoverbot/recoverbot"]
	if !ok {
		t.Fatal("no Deployment recoverbot")
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 || dep.Spec.Strategy.Type != "RollingUpdate" {
		t.Errorf("replicas %v strategy %q, want 3 and RollingUpdate", dep.Spec.Replicas, dep.Spec.Strategy.Type)
	}
	for _, v := range dep.Spec.Template.Spec.Volumes {
		if v.Name == "data" {
			t.Error("the data volume is still there")
		}
	}
	ctr := dep.Spec.Template.Spec.Containers[0]
	for _, m := range ctr.VolumeMounts {
		if m.Name == "data" {
			t.Error("the data volume is still mounted")
		}
	}
	env := map[string]string{}
	fields := map[string]string{}
	for _, e := range ctr.Env {
		switch {
		case e.Value != nil:
			env[e.Name] = *e.Value
		case e.ValueFrom.FieldRef != nil:
			fields[e.Name] = e.ValueFrom.FieldRef.FieldPath
		case e.ValueFrom.SecretKeyRef != nil:
			if v, ok := testSecret[e.ValueFrom.SecretKeyRef.Key]; ok {
				env[e.Name] = v
			}
		}
	}
	if _, ok := env["RECOVERBOT_DATA"]; ok {
		t.Error("RECOVERBOT_DATA is set: there is no data volume")
	}
	if fields["POD_NAME"] != "metadata.name" || fields["POD_NAMESPACE"] != "metadata.namespace" {
		t.Errorf("downward API %v, want POD_NAME and POD_NAMESPACE", fields)
	}
	cfg, err := bot.LoadConfig("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the HA Deployment's settings: %v", err)
	}
	if cfg.Store != bot.StoreEtcd || cfg.EtcdEndpoints == "" {
		t.Errorf("store %q endpoints %q, want etcd with endpoints", cfg.Store, cfg.EtcdEndpoints)
	}
	if _, hosts := cfg.API(); !slices.Contains(hosts, "recoverbot-leader.recoverbot.svc") {
		t.Errorf("allowed hosts %q lack the leader Service's name: requests to it would be refused", hosts)
	}

	role, ok := objs["Role/recoverbot/recoverbot-leader"]
	if !ok || len(role.Rules) != 1 || !slices.Equal(role.Rules[0].APIGroups, []string{""}) ||
		!slices.Equal(role.Rules[0].Resources, []string{"pods"}) || !slices.Equal(role.Rules[0].Verbs, []string{"patch"}) {
		t.Errorf("Role recoverbot-leader: %+v, want exactly patch on pods", role.Rules)
	}
	rb, ok := objs["RoleBinding/recoverbot/recoverbot-leader"]
	if !ok || rb.RoleRef.Name != "recoverbot-leader" || len(rb.Subjects) != 1 || rb.Subjects[0].Name != "recoverbot" || rb.Subjects[0].Namespace != "recoverbot" {
		t.Errorf("RoleBinding recoverbot-leader: %+v", rb)
	}
	if _, ok := objs["ValidatingAdmissionPolicy//recoverbot-own-pod-label"]; !ok {
		t.Error("no admission policy narrowing the patch to the bot's own pod")
	}
	if b := objs["ValidatingAdmissionPolicyBinding//recoverbot-own-pod-label"]; b.Spec.PolicyName != "recoverbot-own-pod-label" {
		t.Errorf("the admission policy is not bound: %+v", b)
	}
	svc, ok := objs["Service/recoverbot/recoverbot-leader"]
	if !ok || svc.Spec.Selector[bot.LeaderLabel] != "true" || svc.Spec.Selector["app.kubernetes.io/name"] != "recoverbot" {
		t.Errorf("Service recoverbot-leader selects %v, want the bot's pods with %s=true", svc.Spec.Selector, bot.LeaderLabel)
	}
}
