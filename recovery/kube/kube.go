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
//
// How an action is read — its target (deployment/<ns>/<name> or
// service/<ns>/<name>, the driver's default namespace when target.namespace is
// unset) and whether it is valid — is kubeop.Parse, which Check, Describe and
// Apply share and which also applies where no cluster is configured.
package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/kube/kubeop"
	"github.com/recoverbot/recoverbot/runbooks"
)

var _ recovery.Driver = (*Driver)(nil)

// RestartedAtAnnotation is the pod template annotation `kubectl rollout restart` sets.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// Defaults.
const (
	DefaultPollInterval = 2 * time.Second  // between rollout status reads
	DefaultCallTimeout  = 30 * time.Second // per API call
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
	kindRestart  = kubeop.Restart
	kindReplicas = kubeop.Replicas
	kindEnv      = kubeop.Env
	kindSelector = kubeop.Selector
)

// op is a validated action (see kubeop.Parse).
type op = kubeop.Op

// Check implements recovery.Checker: the action's target, namespace resolved
// to the driver's default, validated by the rules Apply acts by.
func (d *Driver) Check(a runbooks.Action) (string, error) { return kubeop.Check(a, d.namespace) }

func (d *Driver) parse(a runbooks.Action) (op, error) { return kubeop.Parse(a, d.namespace) }

// Describe says what Apply would do. It makes no API call.
func (d *Driver) Describe(a runbooks.Action) string {
	o, err := d.parse(a)
	if err != nil {
		return fmt.Sprintf("%s: refused: %v", a.Type, err)
	}
	switch o.Kind {
	case kindRestart:
		return fmt.Sprintf("rollout restart of deployment %s (pod template annotation %s set to now), then wait up to %s for the rollout",
			o.Ref(), RestartedAtAnnotation, o.Timeout)
	case kindReplicas:
		return fmt.Sprintf("scale deployment %s to %d replicas", o.Ref(), o.Replicas)
	case kindEnv:
		to := o.Steps[len(o.Steps)-1]
		if len(o.Steps) == 1 {
			if o.From != "" {
				return fmt.Sprintf("set %s %s → %s on every container of deployment %s", o.Env, o.From, to, o.Ref())
			}
			return fmt.Sprintf("set %s to %s on every container of deployment %s", o.Env, to, o.Ref())
		}
		return fmt.Sprintf("set %s %s → %s on every container of deployment %s in %d steps (%s), %s apart",
			o.Env, o.From, to, o.Ref(), len(o.Steps), strings.Join(o.Steps, ", "), o.Interval)
	case kindSelector:
		return fmt.Sprintf("switch service %s selector %s=%s → %s=%s", o.Ref(), o.Key, o.FromValue, o.Key, o.ToValue)
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
	switch o.Kind {
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
		return nil, errors.Join(err, fmt.Errorf("encode state of %s %s: %w", o.Kind, o.Ref(), merr))
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
	if err := kubeop.CheckName("namespace", st.Namespace, kubeop.DNSLabel); err != nil {
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
	return kubeop.CheckName(what, st.Name, kubeop.DNSSubdomain)
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
