package ha

import (
	"context"
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
}
