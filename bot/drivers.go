package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	neturl "net/url"
	"os"
	"sort"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/gateway"
	"github.com/recoverbot/recoverbot/recovery/kube"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/recovery/rediscache"
	"github.com/recoverbot/recoverbot/runbooks"
)

// router sends each action to its backend: Kubernetes for pod restarts,
// scaling and Service failover (target.service set), Redis for cache clears,
// the HTTP gateway for circuit breakers, rate limits and route failover.
type router struct {
	kube, redis, gateway recovery.Driver
}

// backendOf names the backend an action needs and the setting that enables it.
func backendOf(a runbooks.Action) (name, setting string) {
	switch {
	case a.Type == runbooks.RestartPod || a.Type == runbooks.ScaleResource ||
		a.Type == runbooks.Failover && a.Target.Service != "":
		return "kubernetes", "RECOVERBOT_KUBECONFIG (or KUBECONFIG, or running in a cluster)"
	case a.Type == runbooks.CacheClear:
		return "redis", "RECOVERBOT_REDIS_URL"
	default:
		return "gateway", "RECOVERBOT_GATEWAY_URL"
	}
}

// Check implements recovery.Drivers.
// TRANSITIONAL (issue #11): until each backend's rules are callable without a
// configured backend, the identity is runbooks.Action.TargetKey.
func (r *router) Check(a runbooks.Action) (string, error) {
	if d, err := r.For(a); err == nil {
		if c, ok := d.(recovery.Checker); ok {
			return c.Check(a)
		}
	}
	return a.TargetKey(), nil
}

// For implements recovery.Drivers.
func (r *router) For(a runbooks.Action) (recovery.Driver, error) {
	name, setting := backendOf(a)
	var d recovery.Driver
	switch name {
	case "kubernetes":
		d = r.kube
	case "redis":
		d = r.redis
	default:
		d = r.gateway
	}
	if d == nil {
		return nil, fmt.Errorf("%s needs the %s backend, which is not configured: set %s", a.Type, name, setting)
	}
	return d, nil
}

// buildDrivers makes the drivers the config asks for. "log" routes everything to
// the record-only log driver (demos, tests). Otherwise a runbook whose backend is
// not configured stops the start-up, except in dry-run mode, where it is only a
// warning (nothing runs, and the plan says which setting is missing).
func buildDrivers(cfg Config, books *runbooks.Set, getenv func(string) string, log *slog.Logger) (recovery.Drivers, func(), error) {
	if cfg.Drivers == "log" {
		log.Warn("drivers: log — every action is only recorded and logged; nothing is changed")
		d := logdriver.New(log.With("component", "driver"))
		if cfg.LogDriverJournal == "" {
			return d.All(), func() {}, nil
		}
		f, err := os.OpenFile(cfg.LogDriverJournal, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, func() {}, fmt.Errorf("log driver journal: %w", err)
		}
		d.Journal = f
		return d.All(), func() { _ = f.Close() }, nil
	}
	r := &router{}
	closers := []func(){}
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	kubeconfig := cfg.Kubeconfig
	if kubeconfig == "" {
		kubeconfig = getenv("KUBECONFIG")
	}
	if kubeconfig != "" || getenv("KUBERNETES_SERVICE_HOST") != "" {
		rc, ns, err := kube.Config(kubeconfig)
		if err != nil {
			return nil, closeAll, fmt.Errorf("kubernetes: %w", err)
		}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, closeAll, fmt.Errorf("kubernetes: %w", err)
		}
		r.kube = kube.New(cs, ns)
		log.Info("kubernetes driver ready", "namespace", ns)
	}
	if cfg.RedisURL != "" {
		d, err := rediscache.New(cfg.RedisURL)
		if err != nil {
			return nil, closeAll, fmt.Errorf("redis: %w", err)
		}
		closers = append(closers, func() { _ = d.Close() })
		r.redis = d
	}
	if cfg.GatewayURL != "" {
		d, err := gateway.New(cfg.GatewayURL, cfg.GatewayToken)
		if err != nil {
			return nil, closeAll, fmt.Errorf("gateway: %w", err)
		}
		r.gateway = d
	}
	var missing []string
	for _, rb := range books.All() {
		for i, a := range rb.Actions {
			if _, err := r.For(a); err != nil {
				missing = append(missing, fmt.Sprintf("runbook %s (%s) action %d: %v", rb.Name, rb.Source, i+1, err))
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		if recovery.Mode(cfg.Mode) != recovery.ModeDryRun {
			return nil, closeAll, fmt.Errorf("drivers: refusing to start in mode %s:\n%s\n(set the backends, or RECOVERBOT_DRIVERS=log to only record actions)",
				cfg.Mode, strings.Join(missing, "\n"))
		}
		for _, m := range missing {
			log.Warn("dry-run: backend not configured; plans will say so", "detail", m)
		}
	}
	return r, closeAll, nil
}

// checkVerifyQueries asks Prometheus to parse every runbook's verify query. An
// invalid query stops the start-up; Prometheus unreachable is only a warning
// (the bot must start while monitoring is down; verification then reports
// "unavailable", never success).
func checkVerifyQueries(ctx context.Context, books *runbooks.Set, validate func(context.Context, string) error, log *slog.Logger) error {
	var errs []error
	for _, rb := range books.All() {
		if rb.Verify == nil {
			continue
		}
		q, err := runbooks.QueryForValidation(rb)
		if err == nil {
			err = validate(ctx, q)
		}
		switch {
		case err == nil:
		case strings.Contains(err.Error(), "unreachable"):
			log.Warn("could not check a verify query: Prometheus is unreachable", "runbook", rb.Name, "err", err)
		default:
			errs = append(errs, fmt.Errorf("%s: verify.prometheus: %w", rb.Source, err))
		}
	}
	return errors.Join(errs...)
}

// signalWebhook posts each RECOVERY_SIGNAL event as JSON to url, in the
// background with its own deadline: a slow receiver never holds up the engine.
func signalWebhook(url string, log *slog.Logger) func(recovery.Event) {
	client := &http.Client{Timeout: 10 * time.Second}
	return func(ev recovery.Event) {
		go func() {
			b, _ := json.Marshal(ev)
			resp, err := client.Post(url, "application/json", bytes.NewReader(b))
			if err != nil {
				log.Warn("recovery signal webhook failed", "err", redactURL(err))
				return
			}
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				log.Warn("recovery signal webhook refused", "status", resp.StatusCode)
			}
		}()
	}
}

// redactURL drops a URL (which may carry credentials) from an error's text.
func redactURL(err error) string {
	var ue *neturl.Error
	if errors.As(err, &ue) {
		return ue.Op + " <redacted url>: " + ue.Err.Error()
	}
	return err.Error()
}
