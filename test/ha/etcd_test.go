package ha

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/internal/testutil"
	"github.com/recoverbot/recoverbot/test/harness"
)

// etcdBinary is test/k8s/bin/etcd (v3.7.0, built by test/k8s/build.sh), or
// the test is skipped (failed under RECOVERBOT_REQUIRE_INTEGRATION=1) with
// how to build it.
func etcdBinary(t testing.TB) string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "test", "k8s", "bin", "etcd")
	if _, err := os.Stat(p); err != nil {
		msg := "etcd is not built: run test/k8s/build.sh (make test-ha does) to run this test"
		if testutil.RequireIntegration() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// member is one etcd process of the cluster, restartable on its data dir.
type member struct {
	name, dataDir, clientURL, peerURL, logPath string
	args                                       []string

	cmd    *exec.Cmd
	exited chan struct{}
}

// cluster is a 3-member etcd cluster on 127.0.0.1 (random ports) under a
// t.TempDir(), with real fsyncs and no compaction (the history stays
// readable).
type cluster struct {
	t       testing.TB
	bin     string
	members []*member
	hc      *http.Client

	mu sync.Mutex // guards each member's cmd: the poller reads while faults kill
}

// running reports whether member i's process was started and not killed.
func (c *cluster) running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].cmd != nil
}

func startCluster(t testing.TB, n int) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: etcdBinary(t), hc: &http.Client{Timeout: 2 * time.Second}}
	dir := t.TempDir()
	var initial []string
	for i := range n {
		m := &member{name: fmt.Sprintf("m%d", i), dataDir: filepath.Join(dir, fmt.Sprintf("m%d", i)),
			clientURL: "http://" + harness.FreeAddr(t), peerURL: "http://" + harness.FreeAddr(t),
			logPath: filepath.Join(dir, fmt.Sprintf("m%d.log", i))}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	for _, m := range c.members {
		m.args = []string{"--name", m.name, "--data-dir", m.dataDir,
			"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "recoverbot-ha",
			"--initial-cluster-state", "new", "--auto-compaction-retention", "0",
			"--log-level", "warn", "--log-outputs", "stderr"}
		c.start(m)
	}
	t.Cleanup(c.stop)
	if _, err := c.waitLeader(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *cluster) start(m *member) {
	c.t.Helper()
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(c.bin, m.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	exited := make(chan struct{})
	c.mu.Lock()
	m.cmd, m.exited = cmd, exited
	c.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
}

// kill9 kills member i with SIGKILL and reaps it.
func (c *cluster) kill9(i int) {
	c.mu.Lock()
	m := c.members[i]
	cmd, exited := m.cmd, m.exited
	m.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// restart starts a killed member again on its own data dir (it rejoins the
// cluster it already belongs to).
func (c *cluster) restart(i int) { c.start(c.members[i]) }

func (c *cluster) stop() {
	for i := range c.members {
		c.kill9(i)
	}
}

// endpoints is every member's client URL, comma-separated
// (RECOVERBOT_ETCD_ENDPOINTS).
func (c *cluster) endpoints() string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.clientURL)
	}
	return strings.Join(out, ",")
}

// post calls etcd's JSON gateway (/v3/...) on member i.
func (c *cluster) post(ctx context.Context, i int, path string, req, resp any) error {
	body, _ := json.Marshal(req)
	r, err := http.NewRequestWithContext(ctx, "POST", c.members[i].clientURL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	res, err := c.hc.Do(r)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd %s %s: %d %s", c.members[i].name, path, res.StatusCode, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, resp)
}

// u64 is a uint64 as etcd's gateway writes it (a JSON string).
type u64 uint64

func (u *u64) UnmarshalJSON(b []byte) error {
	n, err := strconv.ParseUint(strings.Trim(string(b), `"`), 10, 64)
	*u = u64(n)
	return err
}

// status is member i's maintenance status: its id and the leader it knows.
func (c *cluster) status(ctx context.Context, i int) (id, leader uint64, err error) {
	var st struct {
		Header struct {
			MemberID u64 `json:"member_id"`
		} `json:"header"`
		Leader u64 `json:"leader"`
	}
	if err := c.post(ctx, i, "/v3/maintenance/status", struct{}{}, &st); err != nil {
		return 0, 0, err
	}
	return uint64(st.Header.MemberID), uint64(st.Leader), nil
}

// leader is the index of the member that is etcd's raft leader, as the
// running members agree; -1 with an error while there is none.
func (c *cluster) leader(ctx context.Context) (int, error) {
	ids := map[uint64]int{}
	leaders := map[uint64]bool{}
	for i := range c.members {
		if !c.running(i) {
			continue
		}
		id, l, err := c.status(ctx, i)
		if err != nil {
			continue
		}
		ids[id] = i
		if l != 0 {
			leaders[l] = true
		}
	}
	if len(leaders) != 1 {
		return -1, fmt.Errorf("etcd: members name %d leaders", len(leaders))
	}
	for l := range leaders {
		if i, ok := ids[l]; ok {
			return i, nil
		}
	}
	return -1, fmt.Errorf("etcd: the leader named is not a running member")
}

// waitLeader polls until the running members agree on a leader.
func (c *cluster) waitLeader(within time.Duration) (int, error) {
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		i, err := c.leader(ctx)
		cancel()
		if err == nil {
			return i, nil
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("etcd has no leader after %s: %w", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kv is one key as etcd's range returns it.
type kv struct {
	Key            string
	Value          []byte
	CreateRevision int64
	ModRevision    int64
	Lease          int64
}

// rangePrefix reads every key under prefix from any running member, with
// the store's revision at the time of the read.
func (c *cluster) rangePrefix(ctx context.Context, prefix string) ([]kv, int64, error) {
	end := []byte(prefix)
	end[len(end)-1]++
	req := map[string]any{"key": base64.StdEncoding.EncodeToString([]byte(prefix)),
		"range_end": base64.StdEncoding.EncodeToString(end)}
	var resp struct {
		Header struct {
			Revision u64 `json:"revision"`
		} `json:"header"`
		KVs []struct {
			Key            []byte `json:"key"`
			Value          []byte `json:"value"`
			CreateRevision u64    `json:"create_revision"`
			ModRevision    u64    `json:"mod_revision"`
			Lease          u64    `json:"lease"`
		} `json:"kvs"`
	}
	var err error
	for i := range c.members {
		if !c.running(i) {
			continue
		}
		if err = c.post(ctx, i, "/v3/kv/range", req, &resp); err == nil {
			break
		}
	}
	if err != nil {
		return nil, 0, err
	}
	out := make([]kv, 0, len(resp.KVs))
	for _, x := range resp.KVs {
		out = append(out, kv{Key: string(x.Key), Value: x.Value, CreateRevision: int64(x.CreateRevision),
			ModRevision: int64(x.ModRevision), Lease: int64(x.Lease)})
	}
	return out, int64(resp.Header.Revision), nil
}

// put writes key=value through member i (tests of the harness itself).
func (c *cluster) put(ctx context.Context, i int, key, value string) error {
	var resp struct{}
	return c.post(ctx, i, "/v3/kv/put", map[string]any{"key": base64.StdEncoding.EncodeToString([]byte(key)),
		"value": base64.StdEncoding.EncodeToString([]byte(value))}, &resp)
}

// event is one change in etcd's history.
type event struct {
	Delete bool
	KV     kv
}

// history reads every change etcd ever made (no compaction runs), oldest
// first, through a watch from revision 1 on any running member. It first
// writes a marker key outside every prefix the bots use and reads until the
// marker: everything committed before the call is in the answer.
func (c *cluster) history(ctx context.Context) ([]event, error) {
	marker := fmt.Sprintf("/ha-test-history-end/%d", time.Now().UnixNano())
	i := -1
	for j := range c.members {
		if c.running(j) && c.put(ctx, j, marker, "") == nil {
			i = j
			break
		}
	}
	if i < 0 {
		return nil, fmt.Errorf("etcd: no member takes the history marker")
	}
	req, _ := json.Marshal(map[string]any{"create_request": map[string]any{
		"key": base64.StdEncoding.EncodeToString([]byte{0}), "range_end": base64.StdEncoding.EncodeToString([]byte{0}),
		"start_revision": 1}})
	r, err := http.NewRequestWithContext(ctx, "POST", c.members[i].clientURL+"/v3/watch", bytes.NewReader(req))
	if err != nil {
		return nil, err
	}
	r.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(r) // a stream: no client timeout, ctx bounds it
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	var out []event
	for {
		var msg struct {
			Result struct {
				Canceled     bool   `json:"canceled"`
				CancelReason string `json:"cancel_reason"`
				Events       []struct {
					Type string `json:"type"`
					KV   struct {
						Key            []byte `json:"key"`
						Value          []byte `json:"value"`
						CreateRevision u64    `json:"create_revision"`
						ModRevision    u64    `json:"mod_revision"`
						Lease          u64    `json:"lease"`
					} `json:"kv"`
				} `json:"events"`
			} `json:"result"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			return nil, fmt.Errorf("etcd watch from revision 1: %w", err)
		}
		if msg.Error != nil || msg.Result.Canceled {
			return nil, fmt.Errorf("etcd watch from revision 1 ended: %+v %s", msg.Error, msg.Result.CancelReason)
		}
		for _, e := range msg.Result.Events {
			if string(e.KV.Key) == marker {
				return out, nil
			}
			out = append(out, event{Delete: e.Type == "DELETE", KV: kv{Key: string(e.KV.Key), Value: e.KV.Value,
				CreateRevision: int64(e.KV.CreateRevision), ModRevision: int64(e.KV.ModRevision), Lease: int64(e.KV.Lease)}})
		}
	}
}

// electionKeys are the candidates' keys under prefix in the history: each
// with its create revision (the term it would lead) and deletion revision.
func electionKeys(h []event, prefix string) []electionKey {
	byKey := map[string]*electionKey{}
	var order []string
	for _, e := range h {
		if !strings.HasPrefix(e.KV.Key, prefix) {
			continue
		}
		k, ok := byKey[e.KV.Key]
		switch {
		case !e.Delete && (!ok || k.Deleted != 0):
			byKey[e.KV.Key] = &electionKey{Term: e.KV.CreateRevision}
			order = append(order, e.KV.Key)
		case e.Delete && ok && k.Deleted == 0:
			k.Deleted = e.KV.ModRevision
		}
	}
	var out []electionKey
	for _, key := range order {
		out = append(out, *byKey[key])
	}
	return out
}

// storeWrites are the etcd store's write transactions in the history: each
// one puts the seq key "<audit> <outbox> <batch id>", the batch id being
// "<epoch>.<n>" with an epoch unique to the writing process.
func storeWrites(h []event, seqKey string) ([]write, error) {
	var out []write
	for _, e := range h {
		if e.KV.Key != seqKey || e.Delete {
			continue
		}
		f := strings.Fields(string(e.KV.Value))
		i := -1
		if len(f) >= 3 {
			i = strings.LastIndexByte(f[2], '.')
		}
		if i <= 0 {
			return nil, fmt.Errorf("seq key %s at revision %d is %q: want \"<audit> <outbox> <epoch>.<batch>\"", seqKey, e.KV.ModRevision, e.KV.Value)
		}
		out = append(out, write{Rev: e.KV.ModRevision, Writer: f[2][:i]})
	}
	return out, nil
}
