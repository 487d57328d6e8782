package backends_test

import (
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/backends"
	"github.com/recoverbot/recoverbot/recovery/gateway"
	"github.com/recoverbot/recoverbot/recovery/kube"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/recovery/rediscache"
	"github.com/recoverbot/recoverbot/runbooks"
)

// TestLogDriverAgreesWithRealDrivers: the log driver (demos, and nearly every
// test) names every action's target and refuses every action exactly as the
// real driver of its backend does, configured or not.
func TestLogDriverAgreesWithRealDrivers(t *testing.T) {
	gw, err := gateway.New("http://127.0.0.1:1", "token")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rediscache.New("redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	real := map[backends.Backend]recovery.Checker{
		backends.Kubernetes: kube.New(fake.NewClientset(), "default"),
		backends.Redis:      rc,
		backends.Gateway:    gw,
	}
	log := logdriver.New(nil)
	p := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	dep := runbooks.Target{Deployment: "api"}
	for _, tc := range []struct {
		name   string
		a      runbooks.Action
		target string // "" refused
	}{
		{"restart by target", runbooks.Action{Type: runbooks.RestartPod, Target: dep}, "deployment/default/api"},
		{"restart by parameter", runbooks.Action{Type: runbooks.RestartPod, Target: runbooks.Target{Namespace: "prod"}, Parameters: p("deployment", "api")}, "deployment/prod/api"},
		{"restart: parameter disagrees with target", runbooks.Action{Type: runbooks.RestartPod, Target: dep, Parameters: p("deployment", "web")}, ""},
		{"restart: no deployment", runbooks.Action{Type: runbooks.RestartPod}, ""},
		{"restart: invalid name", runbooks.Action{Type: runbooks.RestartPod, Parameters: p("deployment", "API-GATEWAY")}, ""},
		{"restart: invalid namespace", runbooks.Action{Type: runbooks.RestartPod, Target: runbooks.Target{Namespace: "Prod", Deployment: "api"}}, ""},
		{"scale replicas", runbooks.Action{Type: runbooks.ScaleResource, Resource: "replicas", Target: dep, Parameters: p("to", 3.0)}, "deployment/default/api"},
		{"scale by parameter", runbooks.Action{Type: runbooks.ScaleResource, Resource: "POOL", Parameters: p("deployment", "svc-b", "to", 50.0)}, "deployment/default/svc-b"},
		{"scale gradual", runbooks.Action{Type: runbooks.ScaleResource, Resource: "POOL", Target: dep, Gradual: true,
			Parameters: p("from", 20.0, "to", 50.0, "increment", 10.0, "intervalSeconds", 30.0)}, "deployment/default/api"},
		{"scale: no deployment", runbooks.Action{Type: runbooks.ScaleResource, Resource: "POOL", Parameters: p("to", 50.0)}, ""},
		{"scale: to not a number", runbooks.Action{Type: runbooks.ScaleResource, Resource: "replicas", Target: dep, Parameters: p("to", "fifty")}, ""},
		{"scale: gradual without increment", runbooks.Action{Type: runbooks.ScaleResource, Resource: "POOL", Target: dep, Gradual: true, Parameters: p("from", 1.0, "to", 5.0)}, ""},
		{"service failover", runbooks.Action{Type: runbooks.Failover, Target: runbooks.Target{Service: "payments"}, Parameters: p("from", "blue", "to", "green")}, "service/default/payments"},
		{"service failover onto itself", runbooks.Action{Type: runbooks.Failover, Target: runbooks.Target{Service: "payments"}, Parameters: p("from", "blue", "to", "blue")}, ""},
		{"route failover", runbooks.Action{Type: runbooks.Failover, Parameters: p("from", "payments", "to", "payments-dr")}, "route/payments"},
		{"route failover: invalid name", runbooks.Action{Type: runbooks.Failover, Parameters: p("from", "Payments", "to", "payments-dr")}, ""},
		{"route failover without to", runbooks.Action{Type: runbooks.Failover, Parameters: p("from", "payments")}, ""},
		{"breaker", runbooks.Action{Type: runbooks.CircuitBreaker, Operation: "OPEN", Parameters: p("service", "payments", "duration", 60.0)}, "breaker/payments"},
		{"breaker: bad operation", runbooks.Action{Type: runbooks.CircuitBreaker, Operation: "HALF", Parameters: p("service", "payments")}, ""},
		{"breaker: invalid service", runbooks.Action{Type: runbooks.CircuitBreaker, Operation: "OPEN", Parameters: p("service", "Payments_v2")}, ""},
		{"cache", runbooks.Action{Type: runbooks.CacheClear, Parameters: p("pattern", "/api/users:*", "graceful", true)}, "cache//api/users:*"},
		{"cache: every key", runbooks.Action{Type: runbooks.CacheClear, Parameters: p("pattern", ":*")}, ""},
		{"cache: no pattern", runbooks.Action{Type: runbooks.CacheClear}, ""},
		{"rate limit", runbooks.Action{Type: runbooks.RateLimit, Parameters: p("target", "10.1.2.3", "limit", 100.0, "window", 60.0)}, "ratelimit/10.1.2.3"},
		{"rate limit: catch-all", runbooks.Action{Type: runbooks.RateLimit, Parameters: p("target", "0.0.0.0/0", "limit", 100.0, "window", 60.0, "allowWidePrefix", true)}, ""},
		{"rate limit: /16", runbooks.Action{Type: runbooks.RateLimit, Parameters: p("target", "10.1.0.0/16", "limit", 100.0, "window", 60.0)}, ""},
		{"rate limit: unsafe target", runbooks.Action{Type: runbooks.RateLimit, Parameters: p("target", "10.0.0.1,10.0.0.2", "limit", 100.0, "window", 60.0)}, ""},
		{"rate limit: no window", runbooks.Action{Type: runbooks.RateLimit, Parameters: p("target", "c", "limit", 1.0)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, wantErr := real[backends.Of(tc.a)].Check(tc.a)
			got, gotErr := log.Check(tc.a)
			if got != want || (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
				t.Errorf("log driver: (%q, %v); real driver: (%q, %v)", got, gotErr, want, wantErr)
			}
			if got != tc.target || (tc.target == "") != (gotErr != nil) {
				t.Errorf("Check: got (%q, %v), want target %q", got, gotErr, tc.target)
			}
		})
	}
}
