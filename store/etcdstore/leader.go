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
	leading  bool                    // the campaign won: a session's end is leadership lost
	lapsed   bool                    // the session ended before the campaign won
	lapse    context.CancelCauseFunc // ends the running campaign
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
// revoked) or a keep-alive could not renew it before Deadline. A candidate
// whose session ends before it wins (etcd lost its own leader for longer
// than the TTL, say) has lost nothing: it opens a new session and campaigns
// again.
func (e *Election) Campaign(ctx context.Context) error {
	for {
		err := e.campaign(ctx)
		if !errors.Is(err, errCandidacyLapsed) {
			return err
		}
		e.log.Warn("the etcd session ended while this replica waited to lead: campaigning again with a new one", "err", err)
	}
}

// errCandidacyLapsed is why a campaign restarts: its session ended before it won.
var errCandidacyLapsed = errors.New("the etcd session of this candidacy ended before it won")

// campaign is one candidacy: a new lease and session, its keep-alives, and
// the wait to win.
func (e *Election) campaign(ctx context.Context) error {
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
	cctx, lapse := context.WithCancelCause(ctx)
	defer lapse(nil)
	// The lease must stay alive while this replica waits its turn, or its
	// candidacy would lapse: keep-alives run from now on.
	kctx, stop := context.WithCancel(context.Background())
	e.mu.Lock()
	e.session, e.election = s, el
	e.lapse, e.lapsed, e.leading = lapse, false, false
	e.stop, e.done = stop, make(chan struct{})
	e.mu.Unlock()
	go e.keepAlive(kctx, grant.ID, ttl, s)
	err = el.Campaign(cctx, e.identity)
	e.mu.Lock()
	lapsed := e.lapsed
	e.leading = err == nil && !lapsed
	e.mu.Unlock()
	switch {
	case lapsed:
		// Won or not, this candidacy's lease is gone or going: drop it (its
		// key goes with the lease) and let Campaign start another.
		e.drop(s, ttl)
		if ctx.Err() != nil {
			return fmt.Errorf("etcd campaign: %w", ctx.Err())
		}
		return fmt.Errorf("%w: %w", errCandidacyLapsed, context.Cause(cctx))
	case err != nil:
		e.Close(context.Background())
		return fmt.Errorf("etcd campaign: %w", err)
	}
	e.fence.SetFence(el.Key(), el.Rev())
	e.log.Info("this replica leads", "identity", e.identity, "key", el.Key(), "rev", el.Rev(), "ttl", ttl)
	return nil
}

// drop stops a lapsed candidacy's keep-alives (its own and the session's)
// and revokes its lease, waiting at most ttl for etcd (a lease etcd cannot be
// reached to revoke expires).
func (e *Election) drop(s *concurrency.Session, ttl time.Duration) {
	e.mu.Lock()
	stop, done := e.stop, e.done
	e.mu.Unlock()
	stop()
	<-done
	s.Orphan()
	ctx, cancel := context.WithTimeout(context.Background(), ttl)
	defer cancel()
	if _, err := e.cli.Revoke(ctx, s.Lease()); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		e.log.Warn("revoke a lapsed candidacy's lease (it expires on its own)", "err", err)
	}
}

// keepAlive renews the lease every third of its TTL, recording when each
// successful renewal was sent (the lease deadline), and, when the session
// ends or the deadline passes without a renewal, ends the session's use:
// leadership is lost, or a candidacy lapses (ended).
func (e *Election) keepAlive(ctx context.Context, id clientv3.LeaseID, ttl time.Duration, s *concurrency.Session) {
	defer close(e.done)
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.Done():
			e.ended(errors.New("the etcd session ended (lease expired or revoked)"))
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
			e.ended(errors.New("the etcd lease is gone"))
			return
		case !e.now().Before(e.Deadline()):
			e.ended(fmt.Errorf("the etcd lease could not be renewed before its deadline: %w", err))
			return
		default:
			e.log.Warn("etcd keep-alive failed; retrying before the lease deadline", "err", err, "deadline", e.Deadline())
		}
	}
}

// ended is the end of the session: a leader has lost leadership; a
// candidate's campaign lapses and starts again (Campaign).
func (e *Election) ended(why error) {
	e.mu.Lock()
	leading, lapse := e.leading, e.lapse
	e.lapsed = !leading
	e.mu.Unlock()
	if leading {
		e.lose(why)
		return
	}
	lapse(why)
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
