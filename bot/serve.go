package bot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/amsilence"
	"github.com/recoverbot/recoverbot/recovery/promcheck"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
	"github.com/recoverbot/recoverbot/store/etcdstore"
)

// Options are what Serve needs besides the config; tests set them.
type Options struct {
	Getenv func(string) string
	Log    *slog.Logger
	Clock  recovery.Clock
	// Drivers overrides the driver set (tests); nil: built from the config.
	Drivers recovery.Drivers
	// Ready, when set, receives the bound address once the server accepts requests.
	Ready func(addr string)
	// Leadership replaces bbolt's permanent leadership (tests of a follower);
	// with store: etcd the election is built from the config.
	Leadership Leadership
}

// GCPercent is the garbage collector's target the bot runs with unless GOGC is
// set: the intake allocates many small short-lived objects while the live heap
// stays a few MB, so collecting 4x less often costs little memory and a good
// share of the CPU per event. The benchmarks run with the same setting.
const GCPercent = 400

// TuneGC applies GCPercent unless the operator set GOGC.
func TuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}

// NewLogger builds the process logger.
func NewLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// LoadRunbooks loads the configured directory, or the embedded defaults.
func LoadRunbooks(dir string) (*runbooks.Set, error) {
	if dir == "" {
		return runbooks.LoadDefaults()
	}
	return runbooks.Load(dir)
}

// Serve runs the bot until ctx ends, then shuts down in reverse order of
// start-up: stop the intake, stop the Slack listener, let running executions
// settle (ShutdownGrace), stop delivery, give leadership up, close the drivers
// and the store. Each component registers its stop as soon as it has started
// (lifecycle), so an error part-way through start-up tears down exactly what
// was built.
//
// Every replica serves HTTP (reads; a follower answers writes with 503). The
// leader-only parts — the engine (whose Start rebuilds the indexes from the
// store), retention, the Slack listener and the outbox courier — start once
// this replica leads (Leadership). Losing leadership, or a write fenced
// because another replica leads, ends Serve with an error: the process exits
// non-zero and restarts as a follower.
//
// Such an exit wraps ErrDeposed.
func Serve(ctx context.Context, cfg Config, o Options) (err error) {
	log := o.Log
	if err := cfg.ValidateServe(); err != nil {
		return err
	}
	books, err := LoadRunbooks(cfg.Runbooks)
	if err != nil {
		return fmt.Errorf("runbooks: refusing to start:\n%w", err)
	}
	lc := &lifecycle{}
	defer func() {
		shutCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
		defer cancel()
		err = errors.Join(err, lc.stop(shutCtx))
	}()

	now := time.Now
	if o.Clock != nil {
		now = o.Clock.Now
	}
	identity := Identity(o.Getenv)
	be, err := openBackend(cfg, o, identity, now, lc)
	if err != nil {
		return err
	}
	lead := be.lead
	drivers := o.Drivers
	if drivers == nil {
		var term func() int64 // the log driver's journal names the leadership term
		if t, ok := lead.(interface{ Term() int64 }); ok {
			term = t.Term
		}
		d, closeDrivers, err := buildDrivers(cfg, books, o.Getenv, term, log)
		lc.onStop("drivers", func(context.Context) error { closeDrivers(); return nil })
		if err != nil {
			return err
		}
		drivers = d
	}
	metrics := NewMetrics(outboxDepth(be.store))
	ecfg, err := engineConfig(ctx, cfg, books, o, metrics)
	if err != nil {
		return err
	}
	metrics.WatchStore(be.counts)
	engStore := be.store
	var fenced <-chan error
	if lh, ok := lead.(leaseHolder); ok {
		// Under an election: driver calls end with the lease, and a fenced
		// write anywhere in the engine ends the process.
		ecfg.LeaseDeadline = lh.Deadline
		fs := newFencedStore(be.store)
		ecfg.LeaseLost = fs.end // a driver call refused on the lease ends it too
		engStore, fenced = fs, fs.fenced
	}
	eng := recovery.New(ecfg, engStore, books, drivers)
	var leading atomic.Bool
	metrics.Registry.MustRegister(newLeaderCollector(lead, leading.Load, log))

	tokens, hosts := cfg.API()
	// The admin API decides with Slack's approver policy (one cache of user
	// groups); offline, a policy of the global list, where the local operator
	// decides when there are no admin tokens (commands.Approvers.Permit).
	approvers := commands.NewApprovers(cfg.SlackOptions(o.Getenv, log).Approvers, nil, commands.GroupTTL, nil)
	api := &API{Engine: eng, IntakeToken: cfg.IntakeToken, AdminTokens: tokens, Approvers: approvers, AllowedHosts: hosts,
		AlertmanagerConfidence: cfg.AlertmanagerConfidence, Log: log.With("component", "http"), Metrics: metrics,
		Leading: leading.Load, Leader: lead.Leader}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	var stopHTTP sync.Once
	httpStop := func(ctx context.Context) error {
		stopHTTP.Do(func() {
			if e := srv.Shutdown(ctx); e != nil {
				log.Warn("http shutdown", "err", e)
			}
		})
		return nil
	}
	lc.onStop("http", httpStop)
	var announced sync.Once
	announce := func() {
		announced.Do(func() {
			api.SetReady(true)
			log.Info("recoverbot listening", "addr", ln.Addr().String(), "mode", cfg.Mode, "store", cfg.Store, "identity", identity)
			if o.Ready != nil {
				o.Ready(ln.Addr().String())
			}
		})
	}
	if _, only := lead.(Permanent); !only {
		// Readiness is not leadership: a rollout waits for every replica to
		// be ready, and only one leads. The only replica (bbolt) is ready
		// once its engine runs, below.
		announce()
	}

	labeler, err := newPodLabeler(cfg, o.Getenv)
	if err != nil {
		return err
	}
	if labeler != nil {
		// A deposed leader restarts in the same pod object, still labelled.
		if err := labeler.set(ctx, false); err != nil {
			return err
		}
	}
	campaignCtx, stopCampaign := context.WithCancel(ctx)
	won := make(chan error, 1)
	campaigned := make(chan struct{})
	go func() {
		defer close(campaigned)
		won <- lead.Campaign(campaignCtx)
	}()
	// Given up after the engine settled, before the store closes.
	lc.onStop("leadership", func(ctx context.Context) error {
		stopCampaign()
		<-campaigned
		return lead.Close(ctx)
	})
	if cfg.Store == StoreEtcd { // bbolt's file lock is leadership already
		log.Info("waiting to lead; until then writes are answered 503", "identity", identity)
	}
	select {
	case <-ctx.Done():
		return shutdown(log, api, nil)
	case err = <-serveErr:
		return shutdown(log, api, err)
	case <-lead.Lost():
		return fmt.Errorf("%w: leadership lost before it was won: %w", ErrDeposed, lead.Err())
	case err = <-won:
		if err != nil {
			if ctx.Err() != nil {
				return shutdown(log, api, nil)
			}
			return fmt.Errorf("leader election: %w", err)
		}
	}
	log.Info("this replica leads: starting the engine, Slack and delivery", "identity", identity)
	if labeler != nil {
		if err := labeler.set(ctx, true); err != nil {
			return err
		}
		lc.onStop("leader label", func(ctx context.Context) error { return labeler.set(ctx, false) })
	}

	// Retention runs beside everything else, in small transactions, and stops
	// before the store closes.
	var retention background
	retention.start(func(ctx context.Context) {
		be.retain(ctx, store.Retention{Keep: cfg.Retention, SettingsOf: []string{commands.SettingMessagePrefix}})
	})
	lc.onStop("retention", retention.stop)
	// Delivery stops after the engine, so the notifications of the executions
	// that settle during shutdown still go out: its stop is pushed before the
	// engine's, although it starts once the notifier exists.
	var delivery background
	lc.onStop("delivery", delivery.stop)
	if err := eng.Start(ctx); err != nil {
		return fmt.Errorf("engine start: %w", err)
	}
	lc.onStop("engine", func(ctx context.Context) error {
		if e := eng.Close(ctx); e != nil {
			log.Warn("executions still running at shutdown: they will be INTERRUPTED at the next start", "err", e)
		}
		return nil
	})

	notifier, sl, err := startNotifier(ctx, cfg, o, eng, metrics, lc)
	if err != nil {
		return err
	}
	delivery.start((&recovery.Courier{Store: engStore, Notifier: notifier, Wake: eng.Wake(), Log: log,
		OnDeadLetter: metrics.DeadLettered}).Run)
	slackErr := make(chan error, 1)
	if sl != nil {
		// The Slack listener runs on its own context (see startNotifier): it
		// stops after the intake, before the engine, so no click lands on a
		// closing engine.
		go func() { slackErr <- sl.run() }()
		api.Approvers = sl.sl.router.Handler.Approvers
	} else {
		approvers.LocalDecides = len(tokens) == 0
	}
	// Stopped first: nothing new is accepted while the rest settles (pushed
	// again now, above the leader's parts; it runs once).
	lc.onStop("http", httpStop)
	leading.Store(true)
	announce()

	select {
	case <-ctx.Done():
	case err = <-serveErr:
	case err = <-slackErr:
	case <-lead.Lost():
		err = fmt.Errorf("%w: leadership lost (%w): exiting so this replica restarts as a follower", ErrDeposed, lead.Err())
	case ferr := <-fenced:
		err = fmt.Errorf("%w: a write was fenced or went unanswered (%w): exiting so this replica restarts from the store", ErrDeposed, ferr)
	}
	leading.Store(false)
	return shutdown(log, api, err)
}

// ErrDeposed is wrapped by Serve's error when this replica stops leading: its
// lease ended, another replica's election fenced one of its writes, or the
// store did not answer one (recovery.Undecided).
var ErrDeposed = errors.New("this replica no longer leads")

// shutdown marks the replica not ready before the teardown; a server closed
// by it is not an error.
func shutdown(log *slog.Logger, api *API, err error) error {
	log.Info("shutting down")
	api.SetReady(false)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// backend is the store and the leadership that goes with it.
type backend struct {
	store  recovery.Store
	lead   Leadership
	retain func(context.Context, store.Retention) // the leader's retention sweep
	counts storeCounts                            // the set-aside records, for /metrics
}

// openBackend opens the configured store: bbolt, whose file lock is
// permanent leadership, or etcd with an election under its prefix.
// Options.Leadership, when set, replaces bbolt's (tests).
func openBackend(cfg Config, o Options, identity string, now func() time.Time, lc *lifecycle) (backend, error) {
	if cfg.Store == StoreEtcd {
		cli, err := etcdstore.Dial(cfg.etcdConfig())
		if err != nil {
			return backend{}, err
		}
		lc.onStop("etcd client", func(context.Context) error { return cli.Close() })
		st, err := etcdstore.New(cli, cfg.EtcdPrefix, etcdstore.WithLog(o.Log), etcdstore.WithClock(now))
		if err != nil {
			return backend{}, fmt.Errorf("etcd store: %w", err)
		}
		lc.onStop("store", func(context.Context) error { return st.Close() })
		return backend{store: st, lead: etcdstore.NewElection(cli, st, cfg.EtcdPrefix, identity, cfg.LeaderTTL, o.Log),
			retain: st.Retain, counts: st.Counts}, nil
	}
	db, err := store.Open(cfg.Data, store.WithLog(o.Log), store.WithClock(now))
	if err != nil {
		return backend{}, err
	}
	lc.onStop("store", func(context.Context) error { return db.Close() })
	var lead Leadership = Permanent{Identity: identity}
	if o.Leadership != nil {
		lead = o.Leadership
	}
	return backend{store: db, lead: lead, retain: db.Retain, counts: db.Counts}, nil
}

// engineConfig is the engine's configuration: the config file's settings plus
// the clock, the verifier (checked against Prometheus before anything starts),
// the recovery webhook, the AI advisor and the metrics observer.
func engineConfig(ctx context.Context, cfg Config, books *runbooks.Set, o Options, metrics *Metrics) (recovery.Config, error) {
	log := o.Log
	if err := checkWindowRunbooks(cfg.FreezeWindows, books); err != nil {
		return recovery.Config{}, err
	}
	ecfg := cfg.Engine()
	ecfg.Log, ecfg.Clock, ecfg.Observer = log, o.Clock, metrics
	if cfg.PrometheusURL != "" {
		pc, err := promcheck.New(cfg.PrometheusURL, nil)
		if err != nil {
			return ecfg, err
		}
		if err := checkVerifyQueries(ctx, books, pc.Validate, log); err != nil {
			return ecfg, fmt.Errorf("runbooks: refusing to start:\n%w", err)
		}
		ecfg.Verifier = pc
	}
	if cfg.SignalWebhook != "" {
		ecfg.OnRecovery = signalWebhook(cfg.SignalWebhook, log)
	}
	if cfg.AlertmanagerURL != "" {
		sc, err := amsilence.New(cfg.AlertmanagerURL, nil)
		if err != nil {
			return ecfg, err
		}
		ecfg.Silencer = sc
		log.Info("silences while remediating on: an execution for an Alertmanager alert silences it until it ends", "max", cfg.SilenceMax)
	}
	advisor, endpoint, err := cfg.Advisor(o.Getenv)
	if err != nil {
		return ecfg, err
	}
	if advisor != nil {
		ecfg.Advisor = advisor
		log.Info("AI planning on: events no runbook matches and /recover ask get a Claude proposal, validated strictly; every AI plan waits for approval",
			"model", cfg.AIModel, "timeout", cfg.AITimeout, "endpoint", endpoint)
	} else {
		log.Info("AI planning off: ANTHROPIC_API_KEY is not set")
	}
	return ecfg, nil
}

// slackListener is the Slack connection and the context its listener runs on.
type slackListener struct {
	sl  *Slack
	ctx context.Context
}

// run listens until the listener's context ends; stopping before that is an error.
func (l *slackListener) run() error {
	err := l.sl.Run(l.ctx)
	if err == nil && l.ctx.Err() == nil {
		err = errors.New("slack listener stopped")
	}
	return err
}

// startNotifier returns where notifications go: this log (offline) or Slack,
// whose stop it registers (the listener's context is cancelled, then the
// commands and clicks being handled finish within the shutdown grace).
func startNotifier(ctx context.Context, cfg Config, o Options, eng *recovery.Engine, metrics *Metrics, lc *lifecycle) (recovery.Notifier, *slackListener, error) {
	log, getenv := o.Log, o.Getenv
	if getenv("SLACK_BOT_TOKEN") == "" || getenv("SLACK_APP_TOKEN") == "" {
		log.Info("offline mode: SLACK_BOT_TOKEN and SLACK_APP_TOKEN are not both set; notifications go to this log, drive the bot with the recoverbot CLI",
			"mode", cfg.Mode, "runbooks", len(eng.Runbooks().All()))
		return recovery.LogNotifier{Log: log}, nil, nil
	}
	so := cfg.SlackOptions(getenv, log)
	so.OnAPIError = metrics.SlackError
	sl, err := NewSlack(ctx, so, eng)
	if err != nil {
		return nil, nil, err
	}
	slackCtx, stopSlack := context.WithCancel(context.Background())
	lc.onStop("slack", func(ctx context.Context) error {
		stopSlack()
		if e := sl.Wait(ctx); e != nil {
			log.Warn("slack shutdown", "err", e)
		}
		return nil
	})
	log.Info("slack mode: socket mode, incident channel "+cfg.SlackChannel, "mode", cfg.Mode, "runbooks", len(eng.Runbooks().All()))
	return sl, &slackListener{sl: sl, ctx: slackCtx}, nil
}
