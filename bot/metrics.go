package bot

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

var (
	_ recovery.Observer   = (*Metrics)(nil)
	_ recovery.AIObserver = (*Metrics)(nil)
)

// Metrics are the bot's Prometheus metrics, on its own registry (served at
// /metrics). They implement recovery.Observer.
type Metrics struct {
	Registry     *prometheus.Registry
	events       *prometheus.CounterVec
	decisions    *prometheus.CounterVec
	states       *prometheus.CounterVec
	actions      *prometheus.HistogramVec
	approvalWait prometheus.Histogram
	slackErrors  *prometheus.CounterVec
	aiDropped    *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
}

// NewMetrics registers every metric; outboxDepth is read at scrape time.
func NewMetrics(outboxDepth func() float64) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recoverbot_events_received_total",
			Help: "Events accepted by the intake, by event type and source."}, []string{"type", "source"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recoverbot_decisions_total",
			Help: "Guardrail decisions, by outcome."}, []string{"decision"}),
		states: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recoverbot_executions_total",
			Help: "Execution state transitions, by the state entered."}, []string{"state"}),
		actions: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "recoverbot_action_duration_seconds",
			Help:    "Driver call duration, by action type and result.",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 15, 30, 60, 180, 600}}, []string{"type", "result"}),
		approvalWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "recoverbot_approval_wait_seconds",
			Help: "Time from plan to approval.", Buckets: []float64{5, 15, 30, 60, 120, 180, 300, 600, 1800}}),
		slackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recoverbot_slack_api_errors_total",
			Help: "Slack Web API calls that failed, by method."}, []string{"method"}),
		aiDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recoverbot_ai_calls_dropped_total",
			Help: "AI calls not made, by reason: concurrency (the cap was reached), budget (the minute's calls were spent), folded (an identical unmatched event was sent recently)."},
			[]string{"reason"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recoverbot_notifications_dead_lettered_total",
			Help: "Notifications given up on (refused for good by Slack, or too many failed tries), by kind."}, []string{"kind"}),
	}
	m.Registry.MustRegister(m.events, m.decisions, m.states, m.actions, m.approvalWait, m.slackErrors, m.aiDropped, m.deadLettered,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "recoverbot_outbox_depth",
			Help: "Notifications waiting for delivery (read up to 1000: the store's page)."}, outboxDepth),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// EventReceived implements recovery.Observer.
func (m *Metrics) EventReceived(t runbooks.EventType, source string) {
	m.events.WithLabelValues(string(t), source).Inc()
}

// Decided implements recovery.Observer.
func (m *Metrics) Decided(d recovery.Decision) { m.decisions.WithLabelValues(string(d)).Inc() }

// Moved implements recovery.Observer.
func (m *Metrics) Moved(to recovery.State) { m.states.WithLabelValues(string(to)).Inc() }

// ActionDone implements recovery.Observer.
func (m *Metrics) ActionDone(t runbooks.ActionType, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.actions.WithLabelValues(string(t), result).Observe(d.Seconds())
}

// ApprovalWait implements recovery.Observer.
func (m *Metrics) ApprovalWait(d time.Duration) { m.approvalWait.Observe(d.Seconds()) }

// AIDropped implements recovery.AIObserver.
func (m *Metrics) AIDropped(why recovery.AIDrop) { m.aiDropped.WithLabelValues(string(why)).Inc() }

// SlackError counts a failed Slack Web API call.
func (m *Metrics) SlackError(method string) { m.slackErrors.WithLabelValues(method).Inc() }

// outboxDepth reads the outbox size from the store at scrape time.
func outboxDepth(s recovery.Store) func() float64 {
	return func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		page, err := s.Outbox(ctx, 0, 1000)
		if err != nil {
			return -1
		}
		return float64(len(page))
	}
}

// storeCounts is what the store says about records it set aside
// (*store.DB.Counts).
type storeCounts func(ctx context.Context) (quarantined, deadLetters int, err error)

// WatchStore registers the gauges of records set aside, read at scrape time:
// store records quarantined because they cannot be decoded, and notifications
// dead-lettered. Both live in the store, so they survive restarts.
func (m *Metrics) WatchStore(counts storeCounts) {
	read := func(pick func(q, d int) int) func() float64 {
		return func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			q, d, err := counts(ctx)
			if err != nil {
				return -1
			}
			return float64(pick(q, d))
		}
	}
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "recoverbot_store_quarantined_records",
			Help: "Store records set aside because they cannot be decoded (see `recoverbot quarantine`)."},
			read(func(q, _ int) int { return q })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "recoverbot_outbox_dead_letters",
			Help: "Notifications given up on and kept aside (see `recoverbot deadletters`)."},
			read(func(_, d int) int { return d })))
}

// DeadLettered counts a notification the courier gave up on, by kind.
func (m *Metrics) DeadLettered(n recovery.Notification, _ string) {
	m.deadLettered.WithLabelValues(string(n.Kind)).Inc()
}
