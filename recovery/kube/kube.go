// Package kube is the Kubernetes action driver: RESTART_POD (a rollout restart),
// SCALE_RESOURCE (replicas through the scale subresource, or an environment
// variable on every container of a deployment's pod template) and FAILOVER in its
// Kubernetes form (switching a Service's selector).
//
// Every change records what it observed before (returned by Apply as opaque JSON)
// together with what it wrote and the deployment's metadata.generation after its
// last write. Undo restores that state only if the object still holds our value
// and no one but us changed the deployment's spec since (the API server bumps
// the generation by one per spec change; the driver remembers the generations
// its own writes produced); otherwise it reports the conflict and leaves the
// object alone. resourceVersion is never compared across Apply and Undo:
// controllers' status updates move it all the time.
//
// Writes touch only our field and are compare-and-set on the server, so a
// change that lands between a GET and the write makes the write fail instead of
// being overwritten:
//   - env var (apply and undo), restartedAt (undo), selector (apply and undo):
//     JSON patches (RFC 6902) whose "test" ops check metadata.generation (for
//     deployments) and the exact current entry before the "add"/"replace"/"remove";
//   - restartedAt (apply): the strategic merge patch kubectl rollout restart sends;
//   - replicas: an update of the scale subresource carrying the resourceVersion
//     just read (a precondition over milliseconds, retried on 409 Conflict).
package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

var _ recovery.Driver = (*Driver)(nil)

// RestartedAtAnnotation is the pod template annotation `kubectl rollout restart` sets.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// Defaults.
const (
	DefaultDrainTimeout = 300 * time.Second // RESTART_POD rollout wait, parameters.drainTimeout
	DefaultPollInterval = 2 * time.Second   // between rollout status reads
	DefaultCallTimeout  = 30 * time.Second  // per API call
	DefaultSelectorKey  = "app"             // FAILOVER, parameters.selectorKey
	maxSteps            = 100               // a gradual change never sends more patches
)

// ErrChanged is matched (errors.Is) by the error Undo returns when the target was
// changed by someone else since Apply, so it was left as it is.
var ErrChanged = errors.New("changed by someone else")

// changedError carries the human sentence; errors.Is(err, ErrChanged) holds.
type changedError struct{ msg string }

func (e *changedError) Error() string        { return e.msg }
func (e *changedError) Is(target error) bool { return target == ErrChanged }

// Driver performs Kubernetes actions. It is safe for concurrent use.
type Driver struct {
	client      kubernetes.Interface
	namespace   string
	now         func() time.Time
	poll        time.Duration
	wait        func(ctx context.Context, d time.Duration) error
	callTimeout time.Duration

	// ours remembers, per deployment UID, the generations our own writes
	// produced (Apply and Undo alike), so that an undo accepts a generation
	// moved only by us: a plan that changes an env var and then restarts the
	// same deployment undoes the restart, then the env var. It lives in memory:
	// after a process restart only an action's own last write counts, and a
	// later write by another action is reported as a change (never overwritten).
	mu   sync.Mutex
	ours map[string][]int64
}

// maxOwned bounds the generations remembered per deployment.
const maxOwned = 64

// wrote records that one of our writes left deployment uid at generation gen.
func (d *Driver) wrote(uid string, gen int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ours == nil {
		d.ours = map[string][]int64{}
	}
	g := append(d.ours[uid], gen)
	if len(g) > maxOwned {
		g = g[len(g)-maxOwned:]
	}
	d.ours[uid] = g
}

// ownedSince reports whether every generation after from up to to was produced
// by our writes (the API server bumps the generation by one per spec change).
func (d *Driver) ownedSince(uid string, from, to int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for g := from + 1; g <= to; g++ {
		if !slices.Contains(d.ours[uid], g) {
			return false
		}
	}
	return true
}

// Option configures a Driver.
type Option func(*Driver)

// WithNow sets the clock used for the restartedAt annotation and rollout deadlines.
func WithNow(now func() time.Time) Option { return func(d *Driver) { d.now = now } }

// WithPollInterval sets how often a rollout wait reads the deployment's status.
func WithPollInterval(p time.Duration) Option { return func(d *Driver) { d.poll = p } }

// WithWait replaces the pause between rollout status reads and between the steps
// of a gradual change. It must return early with an error when ctx is done.
// Tests pass a function that advances a fake clock instead of sleeping.
func WithWait(wait func(ctx context.Context, d time.Duration) error) Option {
	return func(d *Driver) { d.wait = wait }
}

// WithCallTimeout sets the deadline of each API call.
func WithCallTimeout(t time.Duration) Option { return func(d *Driver) { d.callTimeout = t } }

// New returns a driver acting through client; actions without target.namespace
// act in defaultNamespace.
func New(client kubernetes.Interface, defaultNamespace string, opts ...Option) *Driver {
	d := &Driver{
		client:      client,
		namespace:   defaultNamespace,
		now:         time.Now,
		poll:        DefaultPollInterval,
		wait:        sleep,
		callTimeout: DefaultCallTimeout,
	}
	for _, o := range opts {
		o(d)
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// call gives one API call its own deadline.
func (d *Driver) call(ctx context.Context, what string) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d.callTimeout,
		fmt.Errorf("kubernetes %s: no answer within %s", what, d.callTimeout))
}

// Kinds of change, also the "kind" of the before-state.
const (
	kindRestart  = "restart"
	kindReplicas = "replicas"
	kindEnv      = "env"
	kindSelector = "selector"
)

// op is a validated action: everything Describe and Apply need, checked once.
type op struct {
	kind      string
	namespace string
	name      string // deployment, or service for kindSelector

	timeout time.Duration // restart: rollout wait

	replicas int32 // replicas

	env      string        // env: variable name
	from     string        // env: the value the runbook expects now ("" if not given)
	steps    []string      // env: values written in order; the last is the target
	interval time.Duration // env: pause between steps

	key, fromValue, toValue string // selector
}

func (o op) ref() string { return o.namespace + "/" + o.name }

// parse validates a and turns it into an op. It makes no API call.
func (d *Driver) parse(a runbooks.Action) (op, error) {
	o := op{namespace: a.Target.Namespace}
	if o.namespace == "" {
		o.namespace = d.namespace
	}
	if err := checkName("namespace", o.namespace, validation.IsDNS1123Label); err != nil {
		return op{}, err
	}
	switch a.Type {
	case runbooks.RestartPod:
		o.kind = kindRestart
		if err := o.deployment(a); err != nil {
			return op{}, err
		}
		t, err := seconds(a, "drainTimeout", DefaultDrainTimeout)
		if err != nil {
			return op{}, err
		}
		if t <= 0 {
			return op{}, fmt.Errorf("parameters.drainTimeout must be positive, got %v", a.Parameters["drainTimeout"])
		}
		o.timeout = t
	case runbooks.ScaleResource:
		if err := o.deployment(a); err != nil {
			return op{}, err
		}
		if a.Resource == "replicas" {
			o.kind = kindReplicas
			n, err := wholeNumber(a, "to")
			if err != nil {
				return op{}, err
			}
			if n < 0 || n > math.MaxInt32 {
				return op{}, fmt.Errorf("parameters.to: %v replicas is out of range", n)
			}
			o.replicas = int32(n)
			return o, nil
		}
		o.kind = kindEnv
		if msgs := validation.IsCIdentifier(a.Resource); len(msgs) > 0 {
			return op{}, fmt.Errorf("resource %q is neither \"replicas\" nor an environment variable name: %s",
				a.Resource, strings.Join(msgs, "; "))
		}
		o.env = a.Resource
		if err := o.envSteps(a); err != nil {
			return op{}, err
		}
	case runbooks.Failover:
		o.kind = kindSelector
		o.name = a.Target.Service
		if o.name == "" {
			return op{}, errors.New("the kubernetes driver handles FAILOVER only with target.service set")
		}
		if err := checkName("service", o.name, validation.IsDNS1123Subdomain); err != nil {
			return op{}, err
		}
		o.key = DefaultSelectorKey
		if k, ok := a.Parameters["selectorKey"]; ok {
			s, isString := k.(string)
			if !isString {
				return op{}, fmt.Errorf("parameters.selectorKey must be a string, got %T", k)
			}
			o.key = s
		}
		if msgs := validation.IsQualifiedName(o.key); len(msgs) > 0 {
			return op{}, fmt.Errorf("parameters.selectorKey %q: %s", o.key, strings.Join(msgs, "; "))
		}
		for _, p := range []struct {
			key string
			dst *string
		}{{"from", &o.fromValue}, {"to", &o.toValue}} {
			s, ok := a.String(p.key)
			if !ok || s == "" {
				return op{}, fmt.Errorf("parameters.%s must be a non-empty string (the %s label value)", p.key, o.key)
			}
			if msgs := validation.IsValidLabelValue(s); len(msgs) > 0 {
				return op{}, fmt.Errorf("parameters.%s %q is not a label value: %s", p.key, s, strings.Join(msgs, "; "))
			}
			*p.dst = s
		}
		if o.fromValue == o.toValue {
			return op{}, fmt.Errorf("parameters.from and parameters.to are both %q", o.fromValue)
		}
	default:
		return op{}, fmt.Errorf("the kubernetes driver does not handle %s", a.Type)
	}
	return o, nil
}

// deployment sets the deployment name from target.deployment or parameters.deployment.
func (o *op) deployment(a runbooks.Action) error {
	o.name = a.Target.Deployment
	if o.name == "" {
		o.name, _ = a.String("deployment")
	}
	if o.name == "" {
		return fmt.Errorf("%s needs target.deployment (or parameters.deployment)", a.Type)
	}
	return checkName("deployment", o.name, validation.IsDNS1123Subdomain)
}

// envSteps computes the values a SCALE_RESOURCE on an environment variable writes.
func (o *op) envSteps(a runbooks.Action) error {
	if !a.Gradual {
		to, err := envValue(a, "to")
		if err != nil {
			return err
		}
		if _, ok := a.Parameters["from"]; ok {
			if o.from, err = envValue(a, "from"); err != nil {
				return err
			}
		}
		o.steps = []string{to}
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
	o.from = formatNumber(from)
	for k := 1; k <= int(n); k++ {
		v := from + dir*float64(k)*inc // not accumulated: no drift
		if k == int(n) {
			v = to
		}
		o.steps = append(o.steps, formatNumber(v))
	}
	o.interval = time.Duration(interval * float64(time.Second))
	return nil
}

func checkName(what, name string, check func(string) []string) error {
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
		return formatNumber(v), nil
	default:
		return "", fmt.Errorf("parameters.%s must be a string or a number, got %v", key, a.Parameters[key])
	}
}

func formatNumber(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// Describe says what Apply would do. It makes no API call.
func (d *Driver) Describe(a runbooks.Action) string {
	o, err := d.parse(a)
	if err != nil {
		return fmt.Sprintf("%s: refused: %v", a.Type, err)
	}
	switch o.kind {
	case kindRestart:
		return fmt.Sprintf("rollout restart of deployment %s (pod template annotation %s set to now), then wait up to %s for the rollout",
			o.ref(), RestartedAtAnnotation, o.timeout)
	case kindReplicas:
		return fmt.Sprintf("scale deployment %s to %d replicas", o.ref(), o.replicas)
	case kindEnv:
		to := o.steps[len(o.steps)-1]
		if len(o.steps) == 1 {
			if o.from != "" {
				return fmt.Sprintf("set %s %s → %s on every container of deployment %s", o.env, o.from, to, o.ref())
			}
			return fmt.Sprintf("set %s to %s on every container of deployment %s", o.env, to, o.ref())
		}
		return fmt.Sprintf("set %s %s → %s on every container of deployment %s in %d steps (%s), %s apart",
			o.env, o.from, to, o.ref(), len(o.steps), strings.Join(o.steps, ", "), o.interval)
	case kindSelector:
		return fmt.Sprintf("switch service %s selector %s=%s → %s=%s", o.ref(), o.key, o.fromValue, o.key, o.toValue)
	}
	return string(a.Type)
}

// Apply performs a. See the package comment for the returned state.
func (d *Driver) Apply(ctx context.Context, a runbooks.Action, report recovery.Reporter) (json.RawMessage, error) {
	o, err := d.parse(a)
	if err != nil {
		return nil, err
	}
	if report == nil {
		report = func(string) {}
	}
	var st *before
	switch o.kind {
	case kindRestart:
		st, err = d.applyRestart(ctx, o, report)
	case kindReplicas:
		st, err = d.applyReplicas(ctx, o, report)
	case kindEnv:
		st, err = d.applyEnv(ctx, o, report)
	case kindSelector:
		st, err = d.applySelector(ctx, o, report)
	}
	if st == nil {
		return nil, err
	}
	raw, merr := json.Marshal(st)
	if merr != nil { // cannot happen with these types; never lose the change silently
		return nil, errors.Join(err, fmt.Errorf("encode state of %s %s: %w", o.kind, o.ref(), merr))
	}
	return raw, err
}

// Undo restores the state Apply returned, unless someone else changed the target.
func (d *Driver) Undo(ctx context.Context, a runbooks.Action, raw json.RawMessage, report recovery.Reporter) error {
	if report == nil {
		report = func(string) {}
	}
	if len(raw) == 0 || string(raw) == "null" {
		report(fmt.Sprintf("%s changed nothing: nothing to undo", a.Type))
		return nil
	}
	var st before
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("decode state of %s: %w", a.Type, err)
	}
	if err := st.validate(a.Type); err != nil {
		return err
	}
	switch st.Kind {
	case kindRestart:
		return d.undoRestart(ctx, st, report)
	case kindReplicas:
		return d.undoReplicas(ctx, st, report)
	case kindEnv:
		return d.undoEnv(ctx, st, report)
	default: // kindSelector; validate checked the kind
		return d.undoSelector(ctx, st, report)
	}
}

// stateVersion is bumped when before changes incompatibly; Undo refuses others.
const stateVersion = 1

// before is the opaque state Apply returns and Undo consumes. It is stored by the
// engine, so it is re-validated on the way back in.
type before struct {
	V         int    `json:"v"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
	// Generation is the deployment's metadata.generation after our last write.
	Generation int64 `json:"generation,omitempty"`

	Restart  *restartState  `json:"restart,omitempty"`
	Replicas *replicasState `json:"replicas,omitempty"`
	Env      *envState      `json:"env,omitempty"`
	Selector *selectorState `json:"selector,omitempty"`
}

type restartState struct {
	Previous *string `json:"previous"` // nil: the annotation was absent
	Wrote    string  `json:"wrote"`
}

type replicasState struct {
	Previous int32 `json:"previous"`
	Wrote    int32 `json:"wrote"`
}

type envState struct {
	Name       string         `json:"name"`
	Containers []containerEnv `json:"containers"`
}

type containerEnv struct {
	Container string  `json:"container"`
	Previous  *string `json:"previous"` // nil: the variable was absent
	Wrote     string  `json:"wrote"`
}

type selectorState struct {
	Key      string            `json:"key"`
	Previous map[string]string `json:"previous"`
	Wrote    map[string]string `json:"wrote"`
}

func (st *before) ref() string { return st.Namespace + "/" + st.Name }

// validate checks a decoded state before any API call.
func (st *before) validate(t runbooks.ActionType) error {
	if st.V != stateVersion {
		return fmt.Errorf("state of %s has version %d, this driver reads %d", t, st.V, stateVersion)
	}
	if err := checkName("namespace", st.Namespace, validation.IsDNS1123Label); err != nil {
		return err
	}
	want := map[string]runbooks.ActionType{kindRestart: runbooks.RestartPod, kindReplicas: runbooks.ScaleResource,
		kindEnv: runbooks.ScaleResource, kindSelector: runbooks.Failover}[st.Kind]
	if want != t {
		return fmt.Errorf("state of kind %q does not belong to a %s action", st.Kind, t)
	}
	what, ok := "deployment", false
	switch st.Kind {
	case kindRestart:
		ok = st.Restart != nil
	case kindReplicas:
		ok = st.Replicas != nil
	case kindEnv:
		ok = st.Env != nil && len(validation.IsCIdentifier(st.Env.Name)) == 0 && len(st.Env.Containers) > 0
	case kindSelector:
		what, ok = "service", st.Selector != nil && st.Selector.Previous != nil && st.Selector.Wrote != nil
	}
	if !ok {
		return fmt.Errorf("state of %s %s is incomplete", t, st.ref())
	}
	return checkName(what, st.Name, validation.IsDNS1123Subdomain)
}

// changed builds the report line and error for a target someone else changed.
func changed(what string, st before, detail string) error {
	return &changedError{fmt.Sprintf("%s %s was changed by someone else since the action (%s): not rolled back",
		what, st.ref(), detail)}
}

// jsonOp is one RFC 6902 operation.
type jsonOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"` // nil only for "remove"
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// pointer builds an RFC 6901 JSON pointer from raw path segments.
func pointer(segments ...string) string {
	var b strings.Builder
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(pointerEscaper.Replace(s))
	}
	return b.String()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps, slices and strings of ours reach here
	}
	return b
}
