package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Fencer is what an election fences once it wins: the store whose every
// write compares the election key's create revision (*Store.SetFence).
type Fencer interface {
	SetFence(key string, createRevision int64)
}

// Election is leadership by an etcd election: a session (a lease of TTL,
// kept alive) and concurrency.Election under prefix+"leader/". The winner
// fences the store with its election key, so a deposed leader's writes fail
// with recovery.ErrFenced even while it still runs (paused, partitioned).
//
// Deadline is the local lease deadline, conservative: the time the last
// successful keep-alive was sent plus the TTL the server granted. The server
// renewed the lease no earlier than that send, so until Deadline no other
// replica can have won; driver calls are bounded by it.
type Election struct {
	cli      *clientv3.Client
	fence    Fencer
	prefix   string
	identity string
	ttl      time.Duration
	log      *slog.Logger
	now      func() time.Time

	lost     chan struct{}
	lostOnce sync.Once
	why      error

	mu       sync.Mutex
	deadline time.Time
	session  *concurrency.Session
	election *concurrency.Election
	stop     context.CancelFunc
	done     chan struct{}
}

// NewElection prepares a campaign for identity (the replica's name, what
// Leader reports) with a lease of ttl (at least 1 s, whole seconds).
func NewElection(cli *clientv3.Client, fence Fencer, prefix, identity string, ttl time.Duration, log *slog.Logger) *Election {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Election{cli: cli, fence: fence, prefix: prefix, identity: identity, ttl: ttl,
		log: log.With("component", "election"), now: time.Now, lost: make(chan struct{})}
}

// LeaderPrefix is where the candidates' keys are, under the store prefix:
// <prefix>leader/<lease id>; the oldest one leads.
func LeaderPrefix(prefix string) string { return prefix + "leader/" }

// Campaign blocks until this replica leads or ctx ends. On winning it fences
// the store (before returning, so no write of this leader goes unfenced) and
// watches the lease: Lost closes when the session ends (lease expired or
// revoked) or a keep-alive could not renew it before Deadline.
func (e *Election) Campaign(ctx context.Context) error {
	secs := int64(e.ttl / time.Second)
	sent := e.now()
	grant, err := e.cli.Grant(ctx, max(secs, 1))
	if err != nil {
		return fmt.Errorf("etcd lease: %w", err)
	}
	ttl := time.Duration(grant.TTL) * time.Second
	e.setDeadline(sent.Add(ttl))
	s, err := concurrency.NewSession(e.cli, concurrency.WithLease(grant.ID))
	if err != nil {
		return fmt.Errorf("etcd session: %w", err)
	}
	// concurrency.Election adds the "/" before each candidate's lease id.
	el := concurrency.NewElection(s, strings.TrimSuffix(LeaderPrefix(e.prefix), "/"))
	e.mu.Lock()
	e.session, e.election = s, el
	e.mu.Unlock()
	// The lease must stay alive while this replica waits its turn, or its
	// candidacy would lapse: keep-alives run from now on.
	kctx, stop := context.WithCancel(context.Background())
	e.mu.Lock()
	e.stop, e.done = stop, make(chan struct{})
	e.mu.Unlock()
	go e.keepAlive(kctx, grant.ID, ttl, s)
	if err := el.Campaign(ctx, e.identity); err != nil {
		e.Close(context.Background())
		return fmt.Errorf("etcd campaign: %w", err)
	}
	e.fence.SetFence(el.Key(), el.Rev())
	e.log.Info("this replica leads", "identity", e.identity, "key", el.Key(), "rev", el.Rev(), "ttl", ttl)
	return nil
}

// keepAlive renews the lease every third of its TTL, recording when each
// successful renewal was sent (the lease deadline), and declares leadership
// lost when the session ends or the deadline passes without a renewal.
func (e *Election) keepAlive(ctx context.Context, id clientv3.LeaseID, ttl time.Duration, s *concurrency.Session) {
	defer close(e.done)
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.Done():
			e.lose(errors.New("the etcd session ended (lease expired or revoked)"))
			return
		case <-tick.C:
		}
		sent := e.now()
		dl := e.Deadline()
		rctx, cancel := context.WithDeadline(ctx, dl)
		resp, err := e.cli.KeepAliveOnce(rctx, id)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && resp.TTL > 0:
			e.setDeadline(sent.Add(time.Duration(resp.TTL) * time.Second))
		case errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL <= 0):
			e.lose(errors.New("the etcd lease is gone"))
			return
		case !e.now().Before(e.Deadline()):
			e.lose(fmt.Errorf("the etcd lease could not be renewed before its deadline: %w", err))
			return
		default:
			e.log.Warn("etcd keep-alive failed; retrying before the lease deadline", "err", err, "deadline", e.Deadline())
		}
	}
}

func (e *Election) setDeadline(t time.Time) {
	e.mu.Lock()
	e.deadline = t
	e.mu.Unlock()
}

func (e *Election) lose(why error) {
	e.lostOnce.Do(func() {
		e.why = why
		e.log.Error("leadership lost", "identity", e.identity, "err", why)
		close(e.lost)
	})
}

// Deadline is the local lease deadline: until then this replica surely
// leads (once Campaign returned).
func (e *Election) Deadline() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.deadline
}

// Term is this replica's leadership term: its election key's create
// revision (the fence), 0 before Campaign created the key.
func (e *Election) Term() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.election == nil {
		return 0
	}
	return e.election.Rev()
}

// Lost is closed when leadership is lost; Err then says why.
func (e *Election) Lost() <-chan struct{} { return e.lost }

// Err is why leadership was lost (nil while it holds).
func (e *Election) Err() error {
	select {
	case <-e.lost:
		return e.why
	default:
		return nil
	}
}

// Leader returns the identity of the replica that leads now ("" when none
// does): the value of the oldest key under the election prefix.
func (e *Election) Leader(ctx context.Context) (string, error) {
	resp, err := e.cli.Get(ctx, LeaderPrefix(e.prefix), clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("etcd leader: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// Close stops the keep-alives and revokes the lease (resigning at once, so
// another replica takes over without waiting for the TTL).
func (e *Election) Close(ctx context.Context) error {
	e.mu.Lock()
	stop, done, s := e.stop, e.done, e.session
	e.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	if s == nil {
		return nil
	}
	// A lease already gone (expired, revoked: how leadership was lost) is
	// given up already.
	if err := s.Close(); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcd resign: %w", err)
	}
	return nil
}
