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
	"time"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/promcheck"
	"github.com/recoverbot/recoverbot/runbooks"
	"github.com/recoverbot/recoverbot/store"
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

// Serve runs the bot until ctx ends, then shuts down in reverse order: stop the
// intake, let running executions settle (ShutdownGrace), stop delivery, close
// bbolt.
func Serve(ctx context.Context, cfg Config, o Options) error {
	log := o.Log
	books, err := LoadRunbooks(cfg.Runbooks)
	if err != nil {
		return fmt.Errorf("runbooks: refusing to start:\n%w", err)
	}
	now := time.Now
	if o.Clock != nil {
		now = o.Clock.Now
	}
	db, err := store.Open(cfg.Data, store.WithLog(log), store.WithClock(now))
	if err != nil {
		return err
	}
	defer db.Close()
	// Retention runs beside everything else, in small transactions, and stops
	// before the store closes (defers run in reverse).
	retainCtx, stopRetain := context.WithCancel(context.Background())
	retainDone := make(chan struct{})
	go func() {
		defer close(retainDone)
		db.Retain(retainCtx, store.Retention{Keep: cfg.Retention, SettingsOf: []string{commands.SettingMessagePrefix}})
	}()
	defer func() { stopRetain(); <-retainDone }()

	drivers := o.Drivers
	if drivers == nil {
		d, closeDrivers, err := buildDrivers(cfg, books, o.Getenv, log)
		defer closeDrivers()
		if err != nil {
			return err
		}
		drivers = d
	}
	ecfg := cfg.Engine()
	ecfg.Log, ecfg.Clock = log, o.Clock
	if cfg.PrometheusURL != "" {
		pc, err := promcheck.New(cfg.PrometheusURL, nil)
		if err != nil {
			return err
		}
		if err := checkVerifyQueries(ctx, books, pc.Validate, log); err != nil {
			return fmt.Errorf("runbooks: refusing to start:\n%w", err)
		}
		ecfg.Verifier = pc
	}
	if cfg.SignalWebhook != "" {
		ecfg.OnRecovery = signalWebhook(cfg.SignalWebhook, log)
	}
	advisor, endpoint, err := cfg.Advisor(o.Getenv)
	if err != nil {
		return err
	}
	if advisor != nil {
		ecfg.Advisor = advisor
		log.Info("AI planning on: events no runbook matches and /recover ask get a Claude proposal, validated strictly; every AI plan waits for approval",
			"model", cfg.AIModel, "timeout", cfg.AITimeout, "endpoint", endpoint)
	} else {
		log.Info("AI planning off: ANTHROPIC_API_KEY is not set")
	}
	metrics := NewMetrics(outboxDepth(db))
	metrics.WatchStore(db.Counts)
	ecfg.Observer = metrics
	eng := recovery.New(ecfg, db, books, drivers)
	if err := eng.Start(ctx); err != nil {
		return fmt.Errorf("engine start: %w", err)
	}

	getenv := o.Getenv
	var notifier recovery.Notifier = recovery.LogNotifier{Log: log}
	var sl *Slack
	if getenv("SLACK_BOT_TOKEN") == "" || getenv("SLACK_APP_TOKEN") == "" {
		log.Info("offline mode: SLACK_BOT_TOKEN and SLACK_APP_TOKEN are not both set; notifications go to this log, drive the bot with the recoverbot CLI",
			"mode", cfg.Mode, "runbooks", len(books.All()))
	} else {
		so := cfg.SlackOptions(getenv, log)
		so.OnAPIError = metrics.SlackError
		if sl, err = NewSlack(ctx, so, eng); err != nil {
			_ = eng.Close(ctx)
			return err
		}
		notifier = sl
		log.Info("slack mode: socket mode, incident channel "+cfg.SlackChannel, "mode", cfg.Mode, "runbooks", len(books.All()))
	}
	courierCtx, stopCourier := context.WithCancel(context.Background())
	courierDone := make(chan struct{})
	go func() {
		defer close(courierDone)
		(&recovery.Courier{Store: db, Notifier: notifier, Wake: eng.Wake(), Log: log,
			OnDeadLetter: metrics.DeadLettered}).Run(courierCtx)
	}()
	// The Slack listener runs on its own context: it stops after the intake,
	// before the engine, so no click lands on a closing engine.
	slackCtx, stopSlack := context.WithCancel(context.Background())
	defer stopSlack()
	slackErr := make(chan error, 1)
	if sl != nil {
		go func() {
			err := sl.Run(slackCtx)
			if err == nil && slackCtx.Err() == nil {
				err = errors.New("slack listener stopped")
			}
			slackErr <- err
		}()
	}

	api := &API{Engine: eng, IntakeToken: cfg.IntakeToken, AdminToken: cfg.AdminToken,
		AlertmanagerConfidence: cfg.AlertmanagerConfidence, Log: log.With("component", "http"), Metrics: metrics}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		stopCourier()
		<-courierDone
		_ = eng.Close(ctx)
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	api.SetReady(true)
	log.Info("recoverbot listening", "addr", ln.Addr().String(), "mode", cfg.Mode, "data", cfg.Data)
	if o.Ready != nil {
		o.Ready(ln.Addr().String())
	}

	select {
	case <-ctx.Done():
	case err = <-serveErr:
	case err = <-slackErr:
	}
	log.Info("shutting down")
	api.SetReady(false)
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	// Stop the intake first: nothing new is accepted while work settles.
	if e := srv.Shutdown(shutCtx); e != nil {
		log.Warn("http shutdown", "err", e)
	}
	if sl != nil {
		stopSlack()
		if e := sl.Wait(shutCtx); e != nil {
			log.Warn("slack shutdown", "err", e)
		}
	}
	if e := eng.Close(shutCtx); e != nil {
		log.Warn("executions still running at shutdown: they will be INTERRUPTED at the next start", "err", e)
	}
	stopCourier()
	<-courierDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
