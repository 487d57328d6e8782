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
	"github.com/recoverbot/recoverbot/recovery/backends"
	"github.com/recoverbot/recoverbot/recovery/gateway"
	"github.com/recoverbot/recoverbot/recovery/kube"
	"github.com/recoverbot/recoverbot/recovery/kube/kubeop"
	"github.com/recoverbot/recoverbot/recovery/logdriver"
	"github.com/recoverbot/recoverbot/recovery/promcheck"
	"github.com/recoverbot/recoverbot/recovery/rediscache"
	"github.com/recoverbot/recoverbot/runbooks"
)

// router sends each action to its backend (backends.Of): Kubernetes for pod
// restarts, scaling and Service failover (target.service set), Redis for cache
// clears, the HTTP gateway for circuit breakers, rate limits and route failover.
type router struct {
	kube, redis, gateway recovery.Driver
	// rules are the drivers' own rules, with the kube driver's default
	// namespace: they apply whether a backend is configured or not.
	rules backends.Rules
}

// settingOf names the setting that enables a backend.
var settingOf = map[backends.Backend]string{
	backends.Kubernetes: "RECOVERBOT_KUBECONFIG (or KUBECONFIG, or running in a cluster)",
	backends.Redis:      "RECOVERBOT_REDIS_URL",
	backends.Gateway:    "RECOVERBOT_GATEWAY_URL",
}

// Check implements recovery.Drivers with the rules the action's driver acts
// by, also when its backend is not configured (dry-run).
func (r *router) Check(a runbooks.Action) (string, error) { return r.rules.Check(a) }

// For implements recovery.Drivers.
func (r *router) For(a runbooks.Action) (recovery.Driver, error) {
	name := backends.Of(a)
	var d recovery.Driver
	switch name {
	case backends.Kubernetes:
		d = r.kube
	case backends.Redis:
		d = r.redis
	default:
		d = r.gateway
	}
	if d == nil {
		return nil, fmt.Errorf("%s needs the %s backend, which is not configured: set %s", a.Type, name, settingOf[name])
	}
	return d, nil
}

// buildDrivers makes the drivers the config asks for. "log" routes everything to
// the record-only log driver (demos, tests). Otherwise a runbook whose backend is
// not configured stops the start-up, except in dry-run mode, where it is only a
// warning (nothing runs, and the plan says which setting is missing). In every
// mode a literal action its driver refuses stops the start-up (checkActions).
func buildDrivers(cfg Config, books *runbooks.Set, getenv func(string) string, term func() int64, log *slog.Logger) (recovery.Drivers, func(), error) {
	if cfg.Drivers == "log" {
		log.Warn("drivers: log — every action is only recorded and logged; nothing is changed")
		d := logdriver.New(log.With("component", "driver"))
		d.Rules = backends.Rules{Namespace: kubeop.DefaultNamespace}
		d.Term = term
		drivers := d.All()
		if err := checkActions(books, drivers); err != nil {
			return nil, func() {}, err
		}
		if cfg.LogDriverJournal == "" {
			return drivers, func() {}, nil
		}
		f, err := os.OpenFile(cfg.LogDriverJournal, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, func() {}, fmt.Errorf("log driver journal: %w", err)
		}
		d.Journal = f
		return drivers, func() { _ = f.Close() }, nil
	}
	r := &router{rules: backends.Rules{Namespace: kubeop.DefaultNamespace}}
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
		r.rules.Namespace = ns
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
	if err := checkActions(books, r); err != nil {
		return nil, closeAll, err
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

// CheckActions checks every literal runbook action by its driver's rules, as
// the start-up does, with Kubernetes' default namespace: `recoverbot validate`.
func CheckActions(books *runbooks.Set) error {
	return checkActions(books, backends.Rules{Namespace: kubeop.DefaultNamespace})
}

// checkActions runs every runbook action without a {{template}} through its
// driver's rules (Drivers.Check) and reports each refusal as
// "file:line: runbook NAME: actions[i] (TYPE): the driver's reason", one a
// line. Templated actions are checked when they are rendered, at plan time.
func checkActions(books *runbooks.Set, drivers recovery.Checker) error {
	var errs []error
	for _, rb := range books.All() {
		for i, a := range rb.Actions {
			if a.Templated() {
				continue
			}
			if _, err := drivers.Check(a); err != nil {
				where := rb.Source
				if i < len(rb.ActionSources) {
					where = rb.ActionSources[i]
				}
				errs = append(errs, fmt.Errorf("%s: runbook %s: actions[%d] (%s): %w", where, rb.Name, i, a.Type, err))
			}
		}
	}
	return errors.Join(errs...)
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
		case errors.Is(err, promcheck.ErrUnreachable):
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
