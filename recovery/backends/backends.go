// Package backends says which backend performs an action, and checks the action
// by that backend's driver's own rules, without a configured backend: the
// Kubernetes rules are recovery/kube/kubeop (the kube driver acts by them), the
// Redis rules rediscache.Check, the gateway rules gateway.Check. The bot's
// router uses it for backends that are not configured (dry-run), the log driver
// by default, so every mode names an action's target the same way and refuses
// the same actions.
//
// It imports no client-go (kubeop does not); it does import go-redis through
// rediscache, whose rules live beside its driver.
package backends

import (
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/gateway"
	"github.com/recoverbot/recoverbot/recovery/kube/kubeop"
	"github.com/recoverbot/recoverbot/recovery/rediscache"
	"github.com/recoverbot/recoverbot/runbooks"
)

// Backend is a system actions change.
type Backend string

// Backends.
const (
	Kubernetes Backend = "kubernetes"
	Redis      Backend = "redis"
	Gateway    Backend = "gateway"
)

// Of names the backend that performs a: Kubernetes for pod restarts, scaling
// and Service failover (target.service set), Redis for cache clears, the
// gateway for circuit breakers, rate limits and route failover.
func Of(a runbooks.Action) Backend {
	switch {
	case a.Type == runbooks.RestartPod || a.Type == runbooks.ScaleResource ||
		a.Type == runbooks.Failover && a.Target.Service != "":
		return Kubernetes
	case a.Type == runbooks.CacheClear:
		return Redis
	}
	return Gateway
}

// Rules checks actions by their backend's rules; Namespace is the Kubernetes
// namespace of actions without target.namespace (the kube driver's default).
type Rules struct{ Namespace string }

var _ recovery.Checker = Rules{}

// Check implements recovery.Checker.
func (r Rules) Check(a runbooks.Action) (string, error) {
	switch Of(a) {
	case Kubernetes:
		ns := r.Namespace
		if ns == "" {
			ns = kubeop.DefaultNamespace
		}
		return kubeop.Check(a, ns)
	case Redis:
		return rediscache.Check(a)
	}
	return gateway.Check(a)
}
