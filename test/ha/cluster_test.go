package ha

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEtcdCluster checks the cluster harness the HA test stands on: three
// members agree on a leader; after a kill -9 of that leader the other two
// elect another and keep what was written; the killed member restarts on its
// data dir, rejoins, and serves the write made while it was down.
func TestEtcdCluster(t *testing.T) {
	requireHA(t)
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	old, err := c.waitLeader(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.put(ctx, old, "/ha-test/a", "1"); err != nil {
		t.Fatal(err)
	}
	c.kill9(old)
	now, err := c.waitLeader(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if now == old {
		t.Fatalf("leader is still the killed member %d", old)
	}
	if err := c.put(ctx, now, "/ha-test/b", "2"); err != nil {
		t.Fatal(err)
	}
	c.restart(old)
	// Only the restarted member is asked: it must have caught up.
	deadline := time.Now().Add(time.Minute)
	for {
		var resp struct {
			KVs []struct {
				Value []byte `json:"value"`
			} `json:"kvs"`
		}
		err := c.post(ctx, old, "/v3/kv/range", map[string]any{"key": "L2hhLXRlc3QvYg=="}, &resp) // /ha-test/b
		if err == nil && len(resp.KVs) == 1 && string(resp.KVs[0].Value) == "2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted member %d does not serve /ha-test/b after a minute: %v %+v", old, err, resp)
		}
		time.Sleep(50 * time.Millisecond)
	}
	kvs, rev, err := c.rangePrefix(ctx, "/ha-test/")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 2 || kvs[0].Key != "/ha-test/a" || kvs[1].Key != "/ha-test/b" || kvs[1].ModRevision > rev {
		t.Errorf("range /ha-test/ = %+v at revision %d, want a and b", kvs, rev)
	}
	// The history, read from revision 1 after the member's restart, holds
	// both writes in commit order.
	h, err := c.history(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range h {
		if strings.HasPrefix(e.KV.Key, "/ha-test/") {
			keys = append(keys, e.KV.Key)
		}
	}
	if !slices.Equal(keys, []string{"/ha-test/a", "/ha-test/b"}) {
		t.Errorf("history under /ha-test/ = %q, want a then b", keys)
	}
}

// TestHistoryExtraction reads candidates' keys and store writes out of a
// synthetic etcd history.
func TestHistoryExtraction(t *testing.T) {
	h := []event{
		{KV: kv{Key: "/p/leader/a", CreateRevision: 3, ModRevision: 3, Lease: 1}},
		{KV: kv{Key: "/p/seq", Value: []byte("1 1 e1.1"), ModRevision: 4}},
		{KV: kv{Key: "/p/leader/b", CreateRevision: 5, ModRevision: 5, Lease: 2}},
		{KV: kv{Key: "/p/x/1", ModRevision: 6}},
		{KV: kv{Key: "/p/seq", Value: []byte("2 1 e1.2"), ModRevision: 6}},
		{Delete: true, KV: kv{Key: "/p/leader/a", ModRevision: 9}},
		{KV: kv{Key: "/p/seq", Value: []byte("3 2 e2.1"), ModRevision: 10}},
	}
	if got, want := electionKeys(h, "/p/leader/"), []electionKey{{3, 9}, {5, 0}}; !slices.Equal(got, want) {
		t.Errorf("electionKeys = %v, want %v", got, want)
	}
	got, err := storeWrites(h, "/p/seq")
	if want := []write{{4, "e1"}, {6, "e1"}, {10, "e2"}}; err != nil || !slices.Equal(got, want) {
		t.Errorf("storeWrites = %v, %v; want %v", got, err, want)
	}
	if _, err := storeWrites([]event{{KV: kv{Key: "/p/seq", Value: []byte("1 1")}}}, "/p/seq"); err == nil {
		t.Error("storeWrites of a seq value without a batch id: no error")
	}
}
