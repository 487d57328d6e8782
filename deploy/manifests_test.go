package deploy

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/recoverbot/recoverbot/bot"
	"github.com/recoverbot/recoverbot/internal/testutil"
	"github.com/recoverbot/recoverbot/runbooks"
)

// TestMonitoringExamplesCheck: Alertmanager and Prometheus themselves accept
// the example receiver and rules (amtool check-config, promtool check rules).
func TestMonitoringExamplesCheck(t *testing.T) {
	for _, tc := range []struct {
		pkg, bin string
		args     []string
	}{
		{"prometheus-alertmanager", "amtool", []string{"check-config", "monitoring/alertmanager.yml"}},
		{"prometheus", "promtool", []string{"check", "rules", "monitoring/rules.yml"}},
	} {
		t.Run(tc.bin+" accepts", func(t *testing.T) {
			bin := testutil.Binary(t, tc.pkg, tc.bin)
			out, err := exec.Command(bin, tc.args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", tc.bin, strings.Join(tc.args, " "), err, out)
			}
			if !bytes.Contains(out, []byte("SUCCESS")) {
				t.Errorf("%s said\n%s\nwant SUCCESS", tc.bin, out)
			}
		})
	}
}

// TestAlertingRulesMatchRunbooks: the example rules produce each of the six
// event types monitoring sends (RECOVERY_SIGNAL is the bot's own) exactly
// once, and the event each alert becomes matches a runbook of deploy/runbooks
// (the alert's labels and annotations mapped as README "Alertmanager" says;
// TestImage posts the same alerts to the real binary's /v1/alertmanager).
func TestAlertingRulesMatchRunbooks(t *testing.T) {
	set, err := runbooks.Load("runbooks")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[runbooks.EventType]string{}
	for _, a := range firingAlerts(t) {
		e := runbooks.Event{Data: map[string]any{}, Context: map[string]any{}}
		for k, v := range a.Labels {
			switch k {
			case "event_type":
				e.Type = runbooks.EventType(v)
			case "severity":
				e.Severity = runbooks.Severity(strings.ToUpper(v))
			default:
				e.Context[k] = v
			}
		}
		for k, v := range a.Annotations {
			switch k {
			case "confidence":
				if e.Confidence, err = strconv.ParseFloat(v, 64); err != nil {
					t.Errorf("%s: confidence %q is not a number", a.Name, v)
				}
			case "summary":
				e.Summary = v
			default:
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					e.Data[k] = f
				} else {
					e.Data[k] = v
				}
			}
		}
		if first, dup := seen[e.Type]; dup {
			t.Errorf("%s and %s both send %s", first, a.Name, e.Type)
		}
		seen[e.Type] = a.Name
		rb := set.Match(&e)
		if rb == nil {
			t.Errorf("%s: its event %+v matches no runbook in deploy/runbooks", a.Name, e)
			continue
		}
		t.Logf("%s → %s → %s", a.Name, e.Type, rb.Name)
	}
	var want []runbooks.EventType
	for _, et := range runbooks.EventTypes {
		if et != runbooks.RecoverySignal {
			want = append(want, et)
		}
	}
	slices.Sort(want)
	if got := slices.Sorted(maps.Keys(seen)); !slices.Equal(got, want) {
		t.Errorf("the rules send %q, want each of %q", got, want)
	}
}

// alert is one rule of monitoring/rules.yml firing, as Alertmanager would
// send it: the rule's labels plus the series' (the expression's "by" labels,
// with sample values), its annotations with the templates filled in.
type alert struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

// seriesLabels are sample values for the labels the rules' expressions keep.
var seriesLabels = map[string]string{
	"service": "api-gateway", "upstream": "payments", "client": "10.1.2.3",
	"namespace": "prod", "deployment": "api-gateway", "route": "/api/users",
}

func firingAlerts(t *testing.T) []alert {
	t.Helper()
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string
				Expr        string
				Labels      map[string]string
				Annotations map[string]string
			}
		}
	}
	b, err := os.ReadFile("monitoring/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	by := regexp.MustCompile(`by \(([^)]*)\)`)
	tmpl := regexp.MustCompile(`\{\{\s*(\$labels\.(\w+)|\$value)[^}]*\}\}`)
	var out []alert
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			a := alert{Name: r.Alert, Labels: map[string]string{"alertname": r.Alert}, Annotations: map[string]string{}}
			for _, m := range by.FindAllStringSubmatch(r.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					l = strings.TrimSpace(l)
					if v, ok := seriesLabels[l]; ok {
						a.Labels[l] = v
					} else if l != "le" {
						t.Fatalf("%s keeps label %q: give it a sample value in seriesLabels", r.Alert, l)
					}
				}
			}
			maps.Copy(a.Labels, r.Labels)
			for k, v := range r.Annotations {
				a.Annotations[k] = tmpl.ReplaceAllStringFunc(v, func(m string) string {
					if sub := tmpl.FindStringSubmatch(m); sub[2] != "" {
						return a.Labels[sub[2]]
					}
					return "95"
				})
			}
			out = append(out, a)
		}
	}
	return out
}

// deploymentEnv is deployment.yaml's container environment with the Secret's
// two required keys filled in as README "Install in a cluster" creates them,
// and its volume mounts by volume name.
func deploymentEnv(t *testing.T) (env, mounts map[string]string) {
	t.Helper()
	var dep struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Env []struct {
							Name      string
							Value     *string
							ValueFrom struct {
								SecretKeyRef *struct {
									Name, Key string
									Optional  bool
								} `yaml:"secretKeyRef"`
							} `yaml:"valueFrom"`
						}
						VolumeMounts []struct {
							Name      string
							MountPath string `yaml:"mountPath"`
						} `yaml:"volumeMounts"`
					}
				}
			}
		}
	}
	b, err := os.ReadFile("deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &dep); err != nil {
		t.Fatal(err)
	}
	ctr := dep.Spec.Template.Spec.Containers[0]
	env, mounts = map[string]string{}, map[string]string{}
	for _, e := range ctr.Env {
		switch ref := e.ValueFrom.SecretKeyRef; {
		case e.Value != nil:
			env[e.Name] = *e.Value
		case ref != nil:
			if ref.Name != "recoverbot" {
				t.Errorf("%s from Secret %q, want recoverbot", e.Name, ref.Name)
			}
			if v, ok := testSecret[ref.Key]; ok {
				if ref.Optional {
					t.Errorf("%s (%s) is optional: the bot cannot start without it off loopback", e.Name, ref.Key)
				}
				env[e.Name] = v
			} else if !ref.Optional {
				t.Errorf("%s requires key %s, which README does not have the user create", e.Name, ref.Key)
			}
		}
	}
	for _, m := range ctr.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	return env, mounts
}

// testSecret is the Secret recoverbot with the keys README has the user create.
var testSecret = map[string]string{
	"intake-token": "intake-0123456789abcdef",
	"admin-tokens": "ops=admin-0123456789abcdef",
}

// TestDeployRunbooksAreTheDefaults: deploy/runbooks is what the user edits, so
// it is a copy of runbooks/defaults; it differs only in naming the namespace
// deploy/rbac.yaml grants (in a pod, an unset namespace is the pod's own, where
// the bot may do nothing). A change to the defaults must be made here too, and
// the kustomization must list every file.
func TestDeployRunbooksAreTheDefaults(t *testing.T) {
	defaults, err := filepath.Glob("../runbooks/defaults/*.yaml")
	if err != nil || len(defaults) == 0 {
		t.Fatalf("no default runbooks: %v", err)
	}
	kust, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const namespaced = "namespace: prod}  # the namespace deploy/rbac.yaml grants"
	var files []string
	for _, d := range defaults {
		name := filepath.Base(d)
		files = append(files, "runbooks/"+name)
		want, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("runbooks", name))
		if err != nil {
			t.Errorf("deploy/runbooks lacks %s: %v", name, err)
			continue
		}
		for _, line := range strings.Split(string(got), "\n") {
			if strings.Contains(line, "deployment:") && strings.Contains(line, "target:") && !strings.Contains(line, namespaced) {
				t.Errorf("deploy/runbooks/%s: %q names no namespace", name, strings.TrimSpace(line))
			}
		}
		if normal := strings.ReplaceAll(string(got), ", "+namespaced, "}"); normal != string(want) {
			t.Errorf("deploy/runbooks/%s differs from runbooks/defaults/%s beyond the namespace", name, name)
		}
		if !bytes.Contains(kust, []byte("- runbooks/"+name+"\n")) {
			t.Errorf("kustomization.yaml's configMapGenerator does not list runbooks/%s", name)
		}
	}
	extra, _ := filepath.Glob("runbooks/*")
	if len(extra) != len(files) {
		t.Errorf("deploy/runbooks holds %q, the defaults are %q", extra, files)
	}
}

// TestDeploymentSettingsStartTheBot: the Deployment's environment, with the
// Secret's two required keys filled in, is a configuration the bot accepts
// (bot.LoadConfig, as serve calls it), listening on all interfaces, with its
// data and runbooks on the Deployment's mounts; without the intake token (a
// Secret missing its key) the bot refuses to start and names it.
func TestDeploymentSettingsStartTheBot(t *testing.T) {
	env, mounts := deploymentEnv(t)
	cfg, err := bot.LoadConfig("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the Deployment's settings: %v", err)
	}
	if cfg.Listen != ":8080" {
		t.Errorf("listen %q, want all interfaces on the Service's port", cfg.Listen)
	}
	if filepath.Dir(cfg.Data) != mounts["data"] {
		t.Errorf("data %s is not on the data volume (%s)", cfg.Data, mounts["data"])
	}
	if cfg.Runbooks != mounts["runbooks"] {
		t.Errorf("runbooks %s, the ConfigMap is mounted at %s", cfg.Runbooks, mounts["runbooks"])
	}
	if cfg.Mode != "dry-run" {
		t.Errorf("mode %s: a new install starts in dry-run", cfg.Mode)
	}

	delete(env, "RECOVERBOT_INTAKE_TOKEN")
	if _, err := bot.LoadConfig("", func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "intake_token") {
		t.Errorf("without the intake token: %v, want a refusal naming intake_token", err)
	}
}
