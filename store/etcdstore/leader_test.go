package etcdstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/recoverbot/recoverbot/internal/etcdtest"
)

type fenceRecord struct {
	mu  sync.Mutex
	key string
	rev int64
}

func (f *fenceRecord) SetFence(key string, rev int64) {
	f.mu.Lock()
	f.key, f.rev = key, rev
	f.mu.Unlock()
}

func (f *fenceRecord) get() (string, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.key, f.rev
}

func newClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func within(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s: not within %s", what, d)
	}
}

// Two replicas on one etcd: exactly one leads and fences with its election
// key; when its lease goes (revoked here, as an expiry would), it learns it
// lost, and the other wins with a newer fence.
func TestElectionOneLeadsThenTheOtherTakesOver(t *testing.T) {
	endpoint := etcdtest.Start(t, 1).Endpoints[0]
	ctx := context.Background()
	var fa, fb fenceRecord
	a := NewElection(newClient(t, endpoint), &fa, "/rb/", "pod-a", 2*time.Second, nil)
	b := NewElection(newClient(t, endpoint), &fb, "/rb/", "pod-b", 2*time.Second, nil)
	t.Cleanup(func() { _ = a.Close(ctx); _ = b.Close(ctx) })

	before := time.Now()
	if err := a.Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	if dl := a.Deadline(); !dl.After(before) || dl.After(time.Now().Add(2*time.Second)) {
		t.Errorf("lease deadline %v: want after the grant was sent (%v) and at most a TTL from now", dl, before)
	}
	bWon := make(chan struct{})
	bErr := make(chan error, 1)
	go func() {
		err := b.Campaign(ctx)
		bErr <- err
		close(bWon)
	}()
	key, rev := fa.get()
	cli := newClient(t, endpoint)
	got, err := cli.Get(ctx, key)
	if err != nil || len(got.Kvs) != 1 || got.Kvs[0].CreateRevision != rev {
		t.Fatalf("fence (%q, %d) is not the election key's create revision: %+v, %v", key, rev, got, err)
	}
	if l, err := b.Leader(ctx); err != nil || l != "pod-a" {
		t.Fatalf("leader seen by b: %q, %v; want pod-a", l, err)
	}
	select {
	case <-bWon:
		t.Fatal("b won while a leads")
	case <-a.Lost():
		t.Fatal("a lost leadership it holds")
	default:
	}

	// a's lease goes: it must know, and b must take over.
	if _, err := cli.Revoke(ctx, a.session.Lease()); err != nil {
		t.Fatal(err)
	}
	within(t, a.Lost(), 10*time.Second, "a told it lost leadership")
	if a.Err() == nil {
		t.Error("a lost leadership without a reason")
	}
	within(t, bWon, 10*time.Second, "b takes over")
	if err := <-bErr; err != nil {
		t.Fatal(err)
	}
	if l, err := a.Leader(ctx); err != nil || l != "pod-b" {
		t.Fatalf("leader after takeover: %q, %v; want pod-b", l, err)
	}
	if _, brev := fb.get(); brev <= rev {
		t.Errorf("b's fence revision %d is not newer than a's %d", brev, rev)
	}
}

// A leader that stops (Close) resigns at once: the next one does not wait for
// the lease to expire.
func TestElectionCloseHandsOver(t *testing.T) {
	endpoint := etcdtest.Start(t, 1).Endpoints[0]
	ctx := context.Background()
	var fa, fb fenceRecord
	a := NewElection(newClient(t, endpoint), &fa, "/rb/", "pod-a", 60*time.Second, nil)
	b := NewElection(newClient(t, endpoint), &fb, "/rb/", "pod-b", 60*time.Second, nil)
	t.Cleanup(func() { _ = b.Close(ctx) })
	if err := a.Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	bWon := make(chan struct{})
	go func() {
		if err := b.Campaign(ctx); err != nil {
			t.Error(err)
		}
		close(bWon)
	}()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	within(t, bWon, 10*time.Second, "b takes over after a closed (the TTL is 60s)")
}

// Issue #13 (HA): a candidate whose session ended while it waited (etcd lost
// its own leader for longer than the TTL) exited as if it had lost
// leadership. It lost nothing: it campaigns again with a new session, and
// wins when the leader goes.
func TestElectionCandidateWhoseSessionEndsCampaignsAgain(t *testing.T) {
	endpoint := etcdtest.Start(t, 1).Endpoints[0]
	ctx := context.Background()
	var fa, fb fenceRecord
	a := NewElection(newClient(t, endpoint), &fa, "/rb/", "pod-a", 2*time.Second, nil)
	b := NewElection(newClient(t, endpoint), &fb, "/rb/", "pod-b", 2*time.Second, nil)
	t.Cleanup(func() { _ = a.Close(ctx); _ = b.Close(ctx) })
	if err := a.Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	bWon := make(chan error, 1)
	go func() { bWon <- b.Campaign(ctx) }()
	cli := newClient(t, endpoint)
	first := candidateLease(t, cli, "pod-b", 0)
	if _, err := cli.Revoke(ctx, first); err != nil { // as an expiry would
		t.Fatal(err)
	}
	second := candidateLease(t, cli, "pod-b", first)
	select {
	case <-b.Lost():
		t.Fatalf("b, a candidate, was told it lost leadership: %v", b.Err())
	case err := <-bWon:
		t.Fatalf("b's campaign ended while a leads: %v", err)
	default:
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-bWon:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b did not take over within 10s of a resigning")
	}
	if key, _ := fb.get(); key != LeaderPrefix("/rb/")+fmt.Sprintf("%x", int64(second)) {
		t.Errorf("b's fence key %q, want its second candidacy's (lease %x)", key, int64(second))
	}
	select {
	case <-b.Lost():
		t.Fatalf("b lost the leadership it just won: %v", b.Err())
	default:
	}
}

// candidateLease waits (10 s at most) for identity's candidate key under the
// election prefix with a lease other than not, and returns that lease.
func candidateLease(t *testing.T, cli *clientv3.Client, identity string, not clientv3.LeaseID) clientv3.LeaseID {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := cli.Watch(ctx, LeaderPrefix("/rb/"), clientv3.WithPrefix(), clientv3.WithRev(1))
	timeout := time.After(10 * time.Second)
	for {
		select {
		case resp := <-w:
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypePut && string(ev.Kv.Value) == identity && clientv3.LeaseID(ev.Kv.Lease) != not {
					return clientv3.LeaseID(ev.Kv.Lease)
				}
			}
		case <-timeout:
			t.Fatalf("no candidacy of %s (other than lease %x) within 10s", identity, int64(not))
		}
	}
}
