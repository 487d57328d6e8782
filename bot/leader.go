package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/kube"
	"github.com/recoverbot/recoverbot/store/etcdstore"
)

// Leadership is who may act. Every replica serves HTTP; only the leader
// runs the engine (timers, verification, drivers), the Slack listener, the
// outbox and retention. bbolt's file lock is permanent leadership (Permanent),
// so one replica runs the same code; with etcd it is an election
// (etcdstore.Election).
type Leadership interface {
	// Campaign blocks until this replica leads or ctx ends.
	Campaign(ctx context.Context) error
	// Lost is closed when leadership is lost (never for Permanent); Err says why.
	Lost() <-chan struct{}
	Err() error
	// Leader is the identity of the replica that leads now ("": none).
	Leader(ctx context.Context) (string, error)
	// Close gives leadership up (another replica takes over at once).
	Close(ctx context.Context) error
}

// leaseHolder is a Leadership with a lease: driver calls are bounded by its
// local deadline (recovery.Config.LeaseDeadline). Permanent has none.
type leaseHolder interface {
	Deadline() time.Time
}

// Permanent is the leadership of the only replica: bbolt's file lock, taken
// when the store opened, holds until the process ends.
type Permanent struct{ Identity string }

var _ Leadership = Permanent{}

// Campaign implements Leadership: the file lock is already held.
func (Permanent) Campaign(context.Context) error { return nil }

// Lost implements Leadership: never.
func (Permanent) Lost() <-chan struct{} { return nil }

// Err implements Leadership.
func (Permanent) Err() error { return nil }

// Leader implements Leadership.
func (p Permanent) Leader(context.Context) (string, error) { return p.Identity, nil }

// Close implements Leadership.
func (Permanent) Close(context.Context) error { return nil }

// Identity is this replica's name in an election, /readyz and /metrics: the
// pod's name (POD_NAME, from the downward API), else the host name.
func Identity(getenv func(string) string) string {
	if n := getenv("POD_NAME"); n != "" {
		return n
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "recoverbot"
}

// fencedStore is the store as the leader writes it: a write refused because
// this replica no longer leads (recovery.ErrFenced, from wherever in the
// engine it happened), or one whose outcome is unknown (recovery.Undecided),
// is fatal, reported once on fenced so Serve exits and the replica restarts
// from the store, as a follower until it wins an election. From then on,
// every write is refused with ErrFenced without reaching the store: after an
// unanswered write this replica's memory may no longer match the store, and
// after a lost lease another replica may lead, so nothing more is decided
// here on the way out. Reads pass through.
type fencedStore struct {
	recovery.Store
	once    sync.Once
	fenced  chan error
	stopped atomic.Pointer[error] // set by end: why writes are refused
}

func newFencedStore(s recovery.Store) *fencedStore {
	return &fencedStore{Store: s, fenced: make(chan error, 1)}
}

// write runs one write unless this replica is stopping.
func (f *fencedStore) write(do func() error) error {
	if why := f.stopped.Load(); why != nil {
		return fmt.Errorf("%w: this replica is stopping (%v); nothing is written", recovery.ErrFenced, *why)
	}
	err := do()
	if recovery.Undecided(err) {
		f.end(err)
	}
	return err
}

// end reports, once, that this replica must stop leading: a fenced or
// unanswered write, or a driver call the engine refused because the lease
// ran out (recovery.Config.LeaseLost). Writes are refused from now on.
func (f *fencedStore) end(err error) {
	f.once.Do(func() {
		f.stopped.Store(&err)
		f.fenced <- err
	})
}

func (f *fencedStore) Accept(ctx context.Context, a recovery.Accepted) error {
	return f.write(func() error { return f.Store.Accept(ctx, a) })
}

func (f *fencedStore) Transition(ctx context.Context, t recovery.Transition) (x recovery.Execution, err error) {
	err = f.write(func() error {
		x, err = f.Store.Transition(ctx, t)
		return err
	})
	return x, err
}

func (f *fencedStore) Record(ctx context.Context, audit []recovery.AuditRecord, outbox []recovery.Notification) error {
	return f.write(func() error { return f.Store.Record(ctx, audit, outbox) })
}

func (f *fencedStore) AckOutbox(ctx context.Context, seqs ...uint64) error {
	return f.write(func() error { return f.Store.AckOutbox(ctx, seqs...) })
}

func (f *fencedStore) DeadLetter(ctx context.Context, seq uint64, reason string) error {
	return f.write(func() error { return f.Store.DeadLetter(ctx, seq, reason) })
}

func (f *fencedStore) PutSetting(ctx context.Context, key string, value []byte) error {
	return f.write(func() error { return f.Store.PutSetting(ctx, key, value) })
}

// LeaderLabel is the pod label the leader sets on itself: a Service that
// selects it reaches the leader (deploy/ha).
const LeaderLabel = "recoverbot.io/leader"

// podLabeler sets or removes LeaderLabel on this replica's own pod. Every
// replica removes it at start (a deposed leader restarts in the same pod
// object, still labelled); the leader sets it once it leads.
type podLabeler struct {
	client    kubernetes.Interface
	namespace string
	name      string
}

// newPodLabeler returns the labeler of the pod named by POD_NAME and
// POD_NAMESPACE (the downward API), through the in-cluster config; nil
// outside a pod (nothing to label).
func newPodLabeler(cfg Config, getenv func(string) string) (*podLabeler, error) {
	name, ns := getenv("POD_NAME"), getenv("POD_NAMESPACE")
	if name == "" || ns == "" || getenv("KUBERNETES_SERVICE_HOST") == "" {
		return nil, nil
	}
	rc, _, err := kube.Config(cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("leader label: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("leader label: %w", err)
	}
	return &podLabeler{client: cs, namespace: ns, name: name}, nil
}

// set labels the pod (leading) or removes the label, with a bounded wait.
func (p *podLabeler) set(ctx context.Context, leading bool) error {
	patch := []byte(`{"metadata":{"labels":{"` + LeaderLabel + `":null}}}`)
	if leading {
		patch = []byte(`{"metadata":{"labels":{"` + LeaderLabel + `":"true"}}}`)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, 10*time.Second, errors.New("the Kubernetes API did not answer the pod label patch in time"))
	defer cancel()
	if _, err := p.client.CoreV1().Pods(p.namespace).Patch(ctx, p.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("label pod %s/%s %s=%t: %w", p.namespace, p.name, LeaderLabel, leading, err)
	}
	return nil
}

// leaderCollector exports who leads at scrape time: recoverbot_leader (1 on
// the replica that leads) and recoverbot_leader_info{leader="<identity>"}.
type leaderCollector struct {
	lead    Leadership
	leading func() bool
	log     *slog.Logger
	self    *prometheus.Desc
	info    *prometheus.Desc
}

func newLeaderCollector(lead Leadership, leading func() bool, log *slog.Logger) *leaderCollector {
	return &leaderCollector{lead: lead, leading: leading, log: log,
		self: prometheus.NewDesc("recoverbot_leader", "1 when this replica leads (runs the engine, Slack and the drivers), 0 when it follows.", nil, nil),
		info: prometheus.NewDesc("recoverbot_leader_info", "The replica that leads now, by identity (POD_NAME or host name); absent when none is known.", []string{"leader"}, nil)}
}

func (c *leaderCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.self; ch <- c.info }

func (c *leaderCollector) Collect(ch chan<- prometheus.Metric) {
	v := 0.0
	if c.leading() {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(c.self, prometheus.GaugeValue, v)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l, err := c.lead.Leader(ctx)
	if err != nil {
		c.log.Warn("who leads: unknown", "err", err)
		return
	}
	if l != "" {
		ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, l)
	}
}

// etcdConfig is the etcd store's configuration from the settings.
func (c *Config) etcdConfig() etcdstore.Config {
	var eps []string
	for _, e := range strings.Split(c.EtcdEndpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	return etcdstore.Config{Endpoints: eps, Prefix: c.EtcdPrefix, CA: c.EtcdCA, Cert: c.EtcdCert, Key: c.EtcdKey, DialTimeout: 10 * time.Second}
}
