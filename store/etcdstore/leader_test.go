package etcdstore

import (
	"context"
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
