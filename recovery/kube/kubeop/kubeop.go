// Package kubeop holds the Kubernetes driver's rules for reading an action:
// which object it touches (namespace resolved) and whether its parameters are
// valid. It imports no client-go, so the rules also apply where no cluster is
// configured (dry-run plans, the log driver, start-up checks); recovery/kube acts
// by the same Parse.
package kubeop

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/recoverbot/recoverbot/runbooks"
)

// Defaults.
const (
	DefaultDrainTimeout = 300 * time.Second // RESTART_POD rollout wait, parameters.drainTimeout
	DefaultSelectorKey  = "app"             // FAILOVER, parameters.selectorKey
	// DefaultNamespace is the namespace of actions without target.namespace when
	// no cluster configuration names one (kubectl's default too).
	DefaultNamespace = "default"
	maxSteps         = 100 // a gradual change never sends more patches
)

// Kinds of change.
const (
	Restart  = "restart"
	Replicas = "replicas"
	Env      = "env"
	Selector = "selector"
)

// Op is a validated action: everything the driver needs to describe and apply
// it, checked once.
type Op struct {
	Kind      string
	Namespace string
	Name      string // deployment, or service for Selector

	Timeout time.Duration // Restart: rollout wait

	Replicas int32 // Replicas

	Env      string        // Env: variable name
	From     string        // Env: the value the runbook expects now ("" if not given)
	Steps    []string      // Env: values written in order; the last is the target
	Interval time.Duration // Env: pause between steps

	Key, FromValue, ToValue string // Selector
}

// Ref is "namespace/name".
func (o Op) Ref() string { return o.Namespace + "/" + o.Name }

// Target is the identity of what the op touches: "deployment/<ns>/<name>" or
// "service/<ns>/<name>". Restarting and scaling one deployment share it on
// purpose: both change its pod template or replicas.
func (o Op) Target() string {
	if o.Kind == Selector {
		return "service/" + o.Ref()
	}
	return "deployment/" + o.Ref()
}

// Check validates a and returns its target; namespace is the driver's default
// for actions without target.namespace.
func Check(a runbooks.Action, namespace string) (string, error) {
	o, err := Parse(a, namespace)
	if err != nil {
		return "", err
	}
	return o.Target(), nil
}

// Parse validates a and turns it into an Op. It makes no API call.
func Parse(a runbooks.Action, namespace string) (Op, error) {
	o := Op{Namespace: a.Target.Namespace}
	if o.Namespace == "" {
		o.Namespace = namespace
	}
	if err := CheckName("namespace", o.Namespace, DNSLabel); err != nil {
		return Op{}, err
	}
	var err error
	switch a.Type {
	case runbooks.RestartPod:
		err = o.restart(a)
	case runbooks.ScaleResource:
		err = o.scale(a)
	case runbooks.Failover:
		err = o.failover(a)
	default:
		err = fmt.Errorf("the kubernetes driver does not handle %s", a.Type)
	}
	if err != nil {
		return Op{}, err
	}
	return o, nil
}

// restart reads a RESTART_POD: the deployment and its rollout wait.
func (o *Op) restart(a runbooks.Action) error {
	o.Kind = Restart
	if err := o.deployment(a); err != nil {
		return err
	}
	t, err := seconds(a, "drainTimeout", DefaultDrainTimeout)
	if err != nil {
		return err
	}
	if t <= 0 {
		return fmt.Errorf("parameters.drainTimeout must be positive, got %v", a.Parameters["drainTimeout"])
	}
	o.Timeout = t
	return nil
}

// scale reads a SCALE_RESOURCE: replicas, or else an environment variable.
func (o *Op) scale(a runbooks.Action) error {
	if err := o.deployment(a); err != nil {
		return err
	}
	if a.Resource == "replicas" {
		o.Kind = Replicas
		n, err := wholeNumber(a, "to")
		if err != nil {
			return err
		}
		if n < 0 || n > math.MaxInt32 {
			return fmt.Errorf("parameters.to: %v replicas is out of range", n)
		}
		o.Replicas = int32(n)
		return nil
	}
	o.Kind = Env
	if msgs := validation.IsCIdentifier(a.Resource); len(msgs) > 0 {
		return fmt.Errorf("resource %q is neither \"replicas\" nor an environment variable name: %s",
			a.Resource, strings.Join(msgs, "; "))
	}
	o.Env = a.Resource
	return o.envSteps(a)
}

// failover reads a FAILOVER: the service, the selector key and the two label
// values it switches between.
func (o *Op) failover(a runbooks.Action) error {
	o.Kind = Selector
	o.Name = a.Target.Service
	if o.Name == "" {
		return errors.New("the kubernetes driver handles FAILOVER only with target.service set")
	}
	if err := CheckName("service", o.Name, DNSSubdomain); err != nil {
		return err
	}
	o.Key = DefaultSelectorKey
	if k, ok := a.Parameters["selectorKey"]; ok {
		s, isString := k.(string)
		if !isString {
			return fmt.Errorf("parameters.selectorKey must be a string, got %T", k)
		}
		o.Key = s
	}
	if msgs := validation.IsQualifiedName(o.Key); len(msgs) > 0 {
		return fmt.Errorf("parameters.selectorKey %q: %s", o.Key, strings.Join(msgs, "; "))
	}
	for _, p := range []struct {
		key string
		dst *string
	}{{"from", &o.FromValue}, {"to", &o.ToValue}} {
		s, ok := a.String(p.key)
		if !ok || s == "" {
			return fmt.Errorf("parameters.%s must be a non-empty string (the %s label value)", p.key, o.Key)
		}
		if msgs := validation.IsValidLabelValue(s); len(msgs) > 0 {
			return fmt.Errorf("parameters.%s %q is not a label value: %s", p.key, s, strings.Join(msgs, "; "))
		}
		*p.dst = s
	}
	if o.FromValue == o.ToValue {
		return fmt.Errorf("parameters.from and parameters.to are both %q", o.FromValue)
	}
	return nil
}

// deployment sets the deployment name from target.deployment or
// parameters.deployment. When both are set they must agree: the target would
// otherwise name one deployment while another is changed.
func (o *Op) deployment(a runbooks.Action) error {
	o.Name = a.Target.Deployment
	if v, ok := a.Parameters["deployment"]; ok {
		s, isString := v.(string)
		switch {
		case !isString:
			return fmt.Errorf("parameters.deployment must be a string, got %T", v)
		case o.Name == "":
			o.Name = s
		case s != o.Name:
			return fmt.Errorf("parameters.deployment %q disagrees with target.deployment %q", s, o.Name)
		}
	}
	if o.Name == "" {
		return fmt.Errorf("%s needs target.deployment (or parameters.deployment)", a.Type)
	}
	return CheckName("deployment", o.Name, DNSSubdomain)
}

// envSteps computes the values a SCALE_RESOURCE on an environment variable writes.
func (o *Op) envSteps(a runbooks.Action) error {
	if !a.Gradual {
		to, err := envValue(a, "to")
		if err != nil {
			return err
		}
		if _, ok := a.Parameters["from"]; ok {
			if o.From, err = envValue(a, "from"); err != nil {
				return err
			}
		}
		o.Steps = []string{to}
		return nil
	}
	var nums [4]float64
	for i, key := range []string{"from", "to", "increment", "intervalSeconds"} {
		f, ok := a.Number(key)
		if !ok {
			return fmt.Errorf("parameters.%s must be a number for a gradual change, got %v", key, a.Parameters[key])
		}
		nums[i] = f
	}
	from, to, inc, interval := nums[0], nums[1], nums[2], nums[3]
	if inc <= 0 {
		return fmt.Errorf("parameters.increment must be positive, got %v", inc)
	}
	if interval < 0 {
		return fmt.Errorf("parameters.intervalSeconds must not be negative, got %v", interval)
	}
	if from == to {
		return fmt.Errorf("parameters.from and parameters.to are both %v", from)
	}
	n := math.Ceil(math.Abs(to-from) / inc)
	if n > maxSteps {
		return fmt.Errorf("%v → %v by %v takes %v steps, more than %d", from, to, inc, n, maxSteps)
	}
	dir := 1.0
	if to < from {
		dir = -1
	}
	o.From = FormatNumber(from)
	for k := 1; k <= int(n); k++ {
		v := from + dir*float64(k)*inc // not accumulated: no drift
		if k == int(n) {
			v = to
		}
		o.Steps = append(o.Steps, FormatNumber(v))
	}
	o.Interval = time.Duration(interval * float64(time.Second))
	return nil
}

// CheckName refuses a name that check (an apimachinery validation) refuses.
func CheckName(what, name string, check func(string) []string) error {
	if msgs := check(name); len(msgs) > 0 {
		return fmt.Errorf("invalid %s name %q: %s", what, name, strings.Join(msgs, "; "))
	}
	return nil
}

// seconds reads an optional parameter given in seconds.
func seconds(a runbooks.Action, key string, def time.Duration) (time.Duration, error) {
	v, ok := a.Parameters[key]
	if !ok {
		return def, nil
	}
	f, isNumber := v.(float64)
	if !isNumber || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("parameters.%s must be a number of seconds, got %v", key, v)
	}
	return time.Duration(f * float64(time.Second)), nil
}

func wholeNumber(a runbooks.Action, key string) (float64, error) {
	f, ok := a.Number(key)
	if !ok || f != math.Trunc(f) {
		return 0, fmt.Errorf("parameters.%s must be a whole number, got %v", key, a.Parameters[key])
	}
	return f, nil
}

// envValue reads a parameter as an environment variable value: a string, or a
// number written without exponent or trailing zeros.
func envValue(a runbooks.Action, key string) (string, error) {
	switch v := a.Parameters[key].(type) {
	case string:
		return v, nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "", fmt.Errorf("parameters.%s is %v", key, v)
		}
		return FormatNumber(v), nil
	default:
		return "", fmt.Errorf("parameters.%s must be a string or a number, got %v", key, a.Parameters[key])
	}
}

// FormatNumber writes f as an environment variable value: no exponent, no
// trailing zeros.
func FormatNumber(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// DNSLabel is validation.IsDNS1123Label with a fast path: a valid name is
// recognised without the regular expression (a profile of the planner found
// the expression a quarter of its time); an invalid one gets apimachinery's
// own messages. TestNameChecksAgreeWithApimachinery holds the two together.
func DNSLabel(s string) []string {
	if len(s) <= validation.DNS1123LabelMaxLength && isLabel(s) {
		return nil
	}
	return validation.IsDNS1123Label(s)
}

// DNSSubdomain is validation.IsDNS1123Subdomain with the same fast path.
func DNSSubdomain(s string) []string {
	if len(s) <= validation.DNS1123SubdomainMaxLength && isSubdomain(s) {
		return nil
	}
	return validation.IsDNS1123Subdomain(s)
}

// isLabel: [a-z0-9]([-a-z0-9]*[a-z0-9])?
func isLabel(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isSubdomain: labels (as isLabel) joined by single dots.
func isSubdomain(s string) bool {
	for {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			return isLabel(s)
		}
		if !isLabel(s[:i]) {
			return false
		}
		s = s[i+1:]
	}
}
