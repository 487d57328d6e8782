// Package etcdstore is the etcd v3 implementation of recovery.Store, for
// running replicas of the bot (HA): the same records as the bbolt store, as
// keys under one prefix, written only by the replica that leads.
//
// Every write goes through one writer goroutine that commits whatever is
// queued as one etcd transaction (group commit, see writer.go). Each
// transaction compares the election key's create revision (the fence, see
// SetFence), so a replica that lost leadership writes nothing and gets
// recovery.ErrFenced; and the sequence key's mod revision, so audit and outbox
// Seqs are assigned in commit order. A write returns once etcd has committed it
// (on a quorum, fsynced), or with the reason it did not.
//
// Key layout under the prefix:
//
//	seq                      "<audit seq> <outbox seq> <batch id>", written by every batch
//	x/<execution id>         JSON Execution
//	open/<execution id>      empty: start-up resumes it (Execution.Open)
//	rep/<execution id>/<event id>  empty: a duplicate event folded into the execution
//	ev/<event id>            JSON EventRecord
//	a/<seq hex16>            JSON AuditRecord
//	ai/<execution id>/<seq hex16>  empty: the execution's audit index
//	o/<seq hex16>            JSON Notification (the outbox)
//	dl/<seq hex16>           JSON store.DeadLetter
//	r/<runbook>\x00<unixnano hex16><execution id>  JSON RateStamp
//	d/<key>                  JSON DedupEntry
//	s/<key>                  a setting
package etcdstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

var _ recovery.Store = (*Store)(nil)

// DefaultPrefix is where the keys live unless Config.Prefix says otherwise.
const DefaultPrefix = "/recoverbot/"

// Errors of this package.
var (
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("etcdstore: closed")
	// ErrTooLarge: one write needs more than one etcd transaction may hold
	// (maxTxnOps keys or maxTxnBytes); nothing of it was written.
	ErrTooLarge = errors.New("write too large for one etcd transaction")
	// ErrOutcomeUnknown: etcd did not answer a commit within writeTimeout, so
	// whether it was applied is unknown (recovery.Undecided: the wiring treats
	// it like recovery.ErrFenced, the process restarts and resumes from the
	// store).
	ErrOutcomeUnknown = recovery.ErrOutcomeUnknown
)

// Config says how to reach etcd.
type Config struct {
	Endpoints []string
	Prefix    string // default DefaultPrefix; must end in "/"
	// TLS files; all empty for plain HTTP. CA, when set, is what etcd's
	// certificate is checked against (else the system's roots); Cert and Key
	// together authenticate the bot.
	CA, Cert, Key string
	DialTimeout   time.Duration // default 5s
}

// Store is a recovery.Store in etcd. It is safe for concurrent use.
type Store struct {
	cli       *clientv3.Client
	ownClient bool
	prefix    string

	fenceMu  sync.Mutex
	fenceKey string
	fenceRev int64

	// mu guards closed and the send side of reqs (as in store.DB).
	mu     sync.RWMutex
	closed bool
	reqs   chan *request
	done   chan struct{}

	closeOnce sync.Once
	closeErr  error

	now func() time.Time
	log *slog.Logger
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets where the store takes the time it stamps on dead letters
// (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// SettingError is one bad setting of a Config: Setting is endpoints, prefix,
// ca, cert or key, so a caller can name its own key for it.
type SettingError struct{ Setting, Msg string }

func (e *SettingError) Error() string { return e.Setting + ": " + e.Msg }

// Validate checks cfg without reading the TLS files; every error is a
// *SettingError (joined): the config loader calls it to refuse a bad
// configuration early, and Open calls it too. It is the one check of these
// settings.
func (c Config) Validate() error {
	var errs []error
	bad := func(setting, format string, args ...any) {
		errs = append(errs, &SettingError{setting, fmt.Sprintf(format, args...)})
	}
	if len(c.Endpoints) == 0 {
		bad("endpoints", "none given (comma-separated URLs like https://etcd-0:2379)")
	}
	for _, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
			bad("endpoints", "%q is not an etcd client URL like https://etcd-0.etcd:2379", ep)
		}
	}
	if c.Prefix != "" && (!strings.HasPrefix(c.Prefix, "/") || !strings.HasSuffix(c.Prefix, "/") || len(c.Prefix) < 2) {
		bad("prefix", "%q must start and end with / and name something between (like /recoverbot/)", c.Prefix)
	}
	if (c.Cert == "") != (c.Key == "") {
		bad("cert", "the client certificate and its key go together: set both or neither")
	}
	return errors.Join(errs...)
}

// WithLog sets the logger of the retention sweep.
func WithLog(log *slog.Logger) Option { return func(s *Store) { s.log = log } }

// Dial returns a client for cfg (validated; TLS files read), without waiting
// for etcd to answer.
func Dial(cfg Config) (*clientv3.Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("etcdstore: %w", err)
	}
	tlsCfg, err := cfg.tls()
	if err != nil {
		return nil, err
	}
	dial := cfg.DialTimeout
	if dial <= 0 {
		dial = 5 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, TLS: tlsCfg, DialTimeout: dial,
		DialKeepAliveTime: 10 * time.Second, DialKeepAliveTimeout: 5 * time.Second,
		// The client's own zap log is another format on stderr; what matters
		// reaches the caller as errors (election, store).
		Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return cli, nil
}

// Open connects to etcd as cfg says and checks it answers within ctx.
func Open(ctx context.Context, cfg Config, opts ...Option) (*Store, error) {
	cli, err := Dial(cfg)
	if err != nil {
		return nil, err
	}
	s, err := New(cli, cfg.Prefix, opts...)
	if err != nil {
		cli.Close()
		return nil, err
	}
	s.ownClient = true
	if _, err := cli.Get(ctx, s.prefix+"seq"); err != nil {
		s.Close()
		return nil, fmt.Errorf("etcdstore: %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return s, nil
}

// New returns a store on an existing client, which Close leaves open.
func New(cli *clientv3.Client, prefix string, opts ...Option) (*Store, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("etcdstore: prefix %q must end in /", prefix)
	}
	s := &Store{
		cli:    cli,
		prefix: prefix,
		reqs:   make(chan *request, 4*maxTxnOps),
		done:   make(chan struct{}),
		now:    time.Now,
		log:    slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(s)
	}
	go s.run()
	return s, nil
}

func (c Config) tls() (*tls.Config, error) {
	if c.CA == "" && c.Cert == "" && c.Key == "" {
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("etcdstore: CA: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcdstore: CA %s: no PEM certificate", c.CA)
		}
	}
	if c.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("etcdstore: client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}

// Client is the store's etcd client, for the leader election.
func (s *Store) Client() *clientv3.Client { return s.cli }

// SetFence makes every later write transaction require that key exists with
// this create revision: the election key (concurrency.Election Key and Rev) of
// the leadership this replica holds. Once it was deleted or recreated, writes
// fail with recovery.ErrFenced. Until SetFence is called every write fails
// with recovery.ErrFenced: only a leader writes.
func (s *Store) SetFence(key string, createRevision int64) {
	s.fenceMu.Lock()
	s.fenceKey, s.fenceRev = key, createRevision
	s.fenceMu.Unlock()
}

func (s *Store) fence() (string, int64) {
	s.fenceMu.Lock()
	defer s.fenceMu.Unlock()
	return s.fenceKey, s.fenceRev
}

// Close waits for every write already handed to the writer to be answered,
// stops the writer and closes the client if Open made it. Writes submitted
// after Close began fail with ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.reqs)
		s.mu.Unlock()
		<-s.done
		if s.ownClient {
			if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
				s.closeErr = fmt.Errorf("etcdstore: close: %w", err)
			}
		}
	})
	return s.closeErr
}

// Counts reports what needs a person's attention, as store.DB.Counts does:
// records set aside (none here: a record etcd holds that cannot be decoded is a
// read error naming its key) and dead letters.
func (s *Store) Counts(ctx context.Context) (quarantined, deadLetters int, err error) {
	resp, err := s.cli.Get(ctx, s.prefix+"dl/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, 0, fmt.Errorf("etcdstore: dead letters: %w", err)
	}
	return 0, int(resp.Count), nil
}

// Keys.

func (s *Store) seqKey() string                  { return s.prefix + "seq" }
func (s *Store) execKey(id string) string        { return s.prefix + "x/" + id }
func (s *Store) openKey(id string) string        { return s.prefix + "open/" + id }
func (s *Store) repeatPrefix(id string) string   { return s.prefix + "rep/" + id + "/" }
func (s *Store) eventKey(id string) string       { return s.prefix + "ev/" + id }
func (s *Store) auditKey(seq uint64) string      { return s.prefix + "a/" + hex16(seq) }
func (s *Store) auditIdxPrefix(id string) string { return s.prefix + "ai/" + id + "/" }
func (s *Store) outboxKey(seq uint64) string     { return s.prefix + "o/" + hex16(seq) }
func (s *Store) deadKey(seq uint64) string       { return s.prefix + "dl/" + hex16(seq) }
func (s *Store) dedupKey(k string) string        { return s.prefix + "d/" + k }
func (s *Store) settingKey(k string) string      { return s.prefix + "s/" + k }

func (s *Store) ratePrefix(runbook string) string { return s.prefix + "r/" + runbook + "\x00" }
func (s *Store) rateKey(runbook string, at time.Time, id string) string {
	return s.ratePrefix(runbook) + hex16(uint64(at.UnixNano())) + id
}

func hex16(n uint64) string { return fmt.Sprintf("%016x", n) }
