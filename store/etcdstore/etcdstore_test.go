package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/recoverbot/recoverbot/internal/etcdtest"
	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store/etcdstore"
	"github.com/recoverbot/recoverbot/store/storetest"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var bg = context.Background()

// prefixes gives every store of a test its own key space on a shared server.
var prefixes atomic.Int64

// leader stands in for the election: it creates key and fences s with its
// create revision, as the leader wiring does with Election.Key and Rev.
func leader(t testing.TB, cli *clientv3.Client, s *etcdstore.Store, key string) int64 {
	t.Helper()
	if _, err := cli.Put(bg, key, "me"); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	resp, err := cli.Get(bg, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v", key, err)
	}
	rev := resp.Kvs[0].CreateRevision
	s.SetFence(key, rev)
	return rev
}

// newStore opens a store under a fresh prefix and makes it the leader.
func newStore(t testing.TB, cli *clientv3.Client) (*etcdstore.Store, string) {
	t.Helper()
	n := prefixes.Add(1)
	s, err := etcdstore.New(cli, fmt.Sprintf("/t%d/recoverbot/", n))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	key := fmt.Sprintf("/t%d/election/leader", n)
	leader(t, cli, s, key)
	return s, key
}

// TestConformance runs the recovery.Store suite against a real etcd.
func TestConformance(t *testing.T) {
	cli := etcdtest.Start(t, 1).Client(t)
	storetest.Run(t, func(t *testing.T) recovery.Store {
		s, _ := newStore(t, cli)
		return s
	})
}

// TestFencedWrites: a write needs the fence; once the election key is deleted
// or recreated, every write fails with ErrFenced and writes nothing, until the
// store is fenced with the new leadership.
func TestFencedWrites(t *testing.T) {
	cli := etcdtest.Start(t, 1).Client(t)
	unfenced, err := etcdstore.New(cli, "/unfenced/")
	if err != nil {
		t.Fatal(err)
	}
	defer unfenced.Close()
	if err := unfenced.Accept(bg, storetest.Accepted("ev-0", nil)); !errors.Is(err, recovery.ErrFenced) {
		t.Errorf("before SetFence: got %v, want ErrFenced", err)
	}

	s, key := newStore(t, cli)
	storeOK := func(id string) {
		t.Helper()
		if err := s.Accept(bg, storetest.Accepted(id, storetest.Execution("01"+id, recovery.PendingApproval, storetest.T0))); err != nil {
			t.Fatalf("Accept %s as leader: %v", id, err)
		}
	}
	fenced := func(id string) {
		t.Helper()
		if err := s.Accept(bg, storetest.Accepted(id, storetest.Execution("01"+id, recovery.PendingApproval, storetest.T0))); !errors.Is(err, recovery.ErrFenced) {
			t.Errorf("Accept %s: got %v, want ErrFenced", id, err)
		}
		if err := s.PutSetting(bg, "k-"+id, []byte("v")); !errors.Is(err, recovery.ErrFenced) {
			t.Errorf("PutSetting: got %v, want ErrFenced", err)
		}
		if _, err := s.EventRecord(bg, id); !errors.Is(err, recovery.ErrNotFound) {
			t.Errorf("fenced event %s: got %v, want ErrNotFound (nothing written)", id, err)
		}
	}
	storeOK("A")

	// Leadership lost: the key is gone.
	if _, err := cli.Delete(bg, key); err != nil {
		t.Fatal(err)
	}
	fenced("B")
	// Another replica won: the key exists again with a newer create revision.
	if _, err := cli.Put(bg, key, "other"); err != nil {
		t.Fatal(err)
	}
	fenced("C")
	if _, err := s.Transition(bg, recovery.Transition{ID: "01A", From: []recovery.State{recovery.PendingApproval},
		To: recovery.Approved, At: storetest.T0}); !errors.Is(err, recovery.ErrFenced) {
		t.Errorf("Transition: got %v, want ErrFenced", err)
	}
	if x, err := s.Execution(bg, "01A"); err != nil || x.State != recovery.PendingApproval {
		t.Errorf("fenced Transition: %s, %v; want PENDING_APPROVAL", x.State, err)
	}

	// Leading again, under the new revision.
	if _, err := cli.Delete(bg, key); err != nil {
		t.Fatal(err)
	}
	leader(t, cli, s, key)
	storeOK("D")
}

// TestTooLargeRefused: a write that does not fit one etcd transaction is
// refused whole.
func TestTooLargeRefused(t *testing.T) {
	cli := etcdtest.Start(t, 1).Client(t)
	s, _ := newStore(t, cli)
	a := storetest.Accepted("ev-big", storetest.Execution("01BIG", recovery.PendingApproval, storetest.T0))
	for i := range 200 {
		a.Outbox = append(a.Outbox, recovery.Notification{Kind: "notice", Text: fmt.Sprint(i)})
	}
	if err := s.Accept(bg, a); !errors.Is(err, etcdstore.ErrTooLarge) {
		t.Fatalf("Accept of 200 messages: got %v, want ErrTooLarge", err)
	}
	if _, err := s.EventRecord(bg, "ev-big"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("refused event: got %v, want ErrNotFound", err)
	}
	if out, err := s.Outbox(bg, 0, 1000); err != nil || len(out) != 0 {
		t.Errorf("Outbox: %d, %v; want none", len(out), err)
	}
}

// TestNoSpace: when etcd refuses writes (its space quota is exhausted: the
// NOSPACE alarm), Accept fails with etcd's error, everything accepted before
// is still there, and what was refused is not.
func TestNoSpace(t *testing.T) {
	cluster := etcdtest.Start(t, 1, "--quota-backend-bytes", fmt.Sprint(1<<20))
	cli := cluster.Client(t)
	s, _ := newStore(t, cli)
	var accepted []string
	var err error
	var refused string
	for i := 0; i < 10000; i++ {
		id := fmt.Sprintf("ev-%05d", i)
		refused = id
		a := storetest.Accepted(id, storetest.Execution(fmt.Sprintf("01%05d", i), recovery.PendingApproval, storetest.T0))
		a.Execution.Reasons = []string{strings.Repeat("x", 4096)}
		if err = s.Accept(bg, a); err != nil {
			break
		}
		accepted = append(accepted, id)
	}
	if !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("after %d accepts: got %v, want etcd's %v", len(accepted), err, rpctypes.ErrNoSpace)
	}
	if !strings.Contains(err.Error(), "refused by etcd") {
		t.Errorf("error %q does not say etcd refused the write", err)
	}
	// etcd applies the transaction that crosses the quota and answers
	// NOSPACE all the same: each answer must still be the truth.
	if _, err := s.EventRecord(bg, refused); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("refused %s: got %v, want ErrNotFound (an error means not written)", refused, err)
	}
	for _, id := range accepted {
		if _, err := s.EventRecord(bg, id); err != nil {
			t.Fatalf("accepted %s: %v", id, err)
		}
	}
	if open, err := s.Open(bg); err != nil || len(open) != len(accepted) {
		t.Errorf("Open: %d executions, %v; want %d", len(open), err, len(accepted))
	}
	if err := s.PutSetting(bg, "k", []byte("v")); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Errorf("PutSetting under NOSPACE: got %v, want %v", err, rpctypes.ErrNoSpace)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  etcdstore.Config
		want string // "" valid, else a part of the error
	}{
		{"plain", etcdstore.Config{Endpoints: []string{"http://127.0.0.1:2379"}}, ""},
		{"tls", etcdstore.Config{Endpoints: []string{"https://etcd-0:2379"}, CA: "ca.pem", Cert: "c.pem", Key: "k.pem", Prefix: "/rb/"}, ""},
		{"no endpoints", etcdstore.Config{}, "endpoints: none given"},
		{"not a URL", etcdstore.Config{Endpoints: []string{"etcd-0:2379"}}, `endpoints: "etcd-0:2379" is not`},
		{"https with the system roots", etcdstore.Config{Endpoints: []string{"https://etcd-0:2379"}}, ""},
		{"URL with a path", etcdstore.Config{Endpoints: []string{"http://e:2379/x"}}, `endpoints: "http://e:2379/x" is not`},
		{"cert without key", etcdstore.Config{Endpoints: []string{"http://e:2379"}, Cert: "c.pem"}, "cert: the client certificate and its key go together"},
		{"prefix without slash", etcdstore.Config{Endpoints: []string{"http://e:2379"}, Prefix: "recoverbot"}, `prefix: "recoverbot" must`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate: got %v, want %q", err, tt.want)
			}
		})
	}
}

// TestRetentionConformance runs the retention suite against a real etcd.
func TestRetentionConformance(t *testing.T) {
	cli := etcdtest.Start(t, 1).Client(t)
	storetest.RunRetention(t, func(t *testing.T) storetest.Sweeper {
		s, _ := newStore(t, cli)
		return s
	})
}
