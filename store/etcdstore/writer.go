package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Group commit.
//
// An etcd commit is a raft round trip to a quorum, each member fsyncing, so one
// transaction per write would cap the intake at one write per round trip. One
// writer goroutine takes whatever is queued the moment it is free, runs each
// write against an overlay of the writes before it in the batch, and commits
// the batch as one transaction:
//
//	If:   fence key CreateRevision = the leader's (SetFence)
//	      seq key ModRevision = the one this writer last committed or read
//	      each key a write read: ModRevision as read (CreateRevision 0 if absent)
//	Then: every put and delete, and seq ← "<audit> <outbox> <batch id>"
//	Else: a Get of each compared key, to tell why
//
// Seqs are taken from the seq key inside the batch, so Seq order is commit
// order. When the fence compare fails every write in the batch gets
// recovery.ErrFenced. When a write's own precondition fails (an event id that
// exists) that write gets its error and the batch is redone without it; any
// other mismatch (nothing but a writer this one does not know of changes keys)
// redoes the batch on fresh reads. Nothing is answered before its batch's
// outcome is known, so no answer rests on a write that did not commit.

// etcd's limits on one request: --max-txn-ops (128 by default) and
// --max-request-bytes (1.5 MiB); a batch stays below both, with a margin for
// the request's own encoding.
const (
	maxTxnOps   = 128
	maxTxnBytes = 1 << 20
)

// writeTimeout bounds one batch: its reads and its commit, resent while etcd
// gives no definite answer (a leader election, a lost connection).
const writeTimeout = 30 * time.Second

// resendDelay spaces the resends of a commit etcd gave no definite answer to.
const resendDelay = 100 * time.Millisecond

// maxRedo bounds how often a batch is redone after compares other than the
// fence failed.
const maxRedo = 8

type request struct {
	op   op
	done chan error // buffered: the writer never blocks on a submitter that left
}

// op is one write. It may run more than once (when its batch is redone), so it
// derives everything from the view and the values it captured, and leaves its
// result only in variables its submitter reads after the answer.
type op func(v *view) error

// submit hands o to the writer and returns what its commit did; ctx bounds only
// the handover (see store.DB.submit for why).
func (s *Store) submit(ctx context.Context, o op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{op: o, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.reqs <- r:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	return <-r.done
}

// seqState is the seq key as this writer last committed or read it.
type seqState struct {
	audit, outbox uint64
	modRev        int64
	valid         bool
}

// writer is the state of the writer goroutine.
type writer struct {
	s       *Store
	seq     seqState
	batchID uint64
	epoch   string // tells this process's batch ids from another's
}

func (s *Store) run() {
	defer close(s.done)
	w := &writer{s: s, epoch: strconv.FormatInt(time.Now().UnixNano(), 36)}
	var queue []*request
	for {
		if len(queue) == 0 {
			r, ok := <-s.reqs
			if !ok {
				return
			}
			queue = append(queue, r)
		}
	drain:
		for len(queue) < 4*maxTxnOps {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain // closed: answer these; the next receive ends the loop
				}
				queue = append(queue, r)
			default:
				break drain
			}
		}
		n := w.commit(queue)
		clear(queue[:n])
		queue = queue[n:]
	}
}

// kv is one key as a write read it.
type kv struct {
	value  []byte
	found  bool
	modRev int64
}

// cmp is a precondition: key unchanged since read (modRev), or absent
// (modRev 0). err, when set, is the owner's answer if it fails.
type cmp struct {
	key    string
	modRev int64
	err    error
	owner  int
}

type write struct {
	value []byte
	del   bool
}

// batch is what the writes run so far will commit.
type batch struct {
	ctx    context.Context
	cli    *clientv3.Client
	reads  map[string]kv
	exists map[string]bool // keys a failed commit of this queue found present
	writes map[string]write
	order  []string
	cmps   []cmp
	bytes  int
	audit  uint64 // the last Seq taken
	outbox uint64
}

// view is one write's window: its own staged writes over the batch's.
type view struct {
	b      *batch
	owner  int
	writes map[string]write
	order  []string
	cmps   []cmp
	bytes  int
	audit  uint64
	outbox uint64
}

// get reads key: this write's and the batch's writes first, then etcd (and
// the commit then requires the key unchanged).
func (v *view) get(key string) ([]byte, bool, error) {
	if w, ok := v.writes[key]; ok {
		return w.value, !w.del, nil
	}
	if w, ok := v.b.writes[key]; ok {
		return w.value, !w.del, nil
	}
	r, ok := v.b.reads[key]
	if !ok {
		resp, err := v.b.cli.Get(v.b.ctx, key)
		if err != nil {
			return nil, false, fmt.Errorf("etcdstore: read %s: %w", key, err)
		}
		if len(resp.Kvs) > 0 {
			r = kv{value: resp.Kvs[0].Value, found: true, modRev: resp.Kvs[0].ModRevision}
		}
		v.b.reads[key] = r
	}
	v.cmps = append(v.cmps, cmp{key: key, modRev: r.modRev, owner: v.owner})
	return r.value, r.found, nil
}

// absent requires key not to exist when the batch commits, or the write
// fails with err.
func (v *view) absent(key string, err error) error {
	if w, ok := v.writes[key]; ok && !w.del {
		return err
	}
	if w, ok := v.b.writes[key]; ok && !w.del {
		return err
	}
	if v.b.exists[key] {
		return err
	}
	v.cmps = append(v.cmps, cmp{key: key, err: err, owner: v.owner})
	return nil
}

// keys lists the keys in [from, to) as the batch would leave them.
func (v *view) keys(from, to string) ([]string, error) {
	resp, err := v.b.cli.Get(v.b.ctx, from, clientv3.WithRange(to), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("etcdstore: read %s: %w", from, err)
	}
	set := map[string]bool{}
	for _, k := range resp.Kvs {
		set[string(k.Key)] = true
	}
	for _, ws := range []map[string]write{v.b.writes, v.writes} {
		for k, w := range ws {
			if k >= from && k < to {
				set[k] = !w.del
			}
		}
	}
	var out []string
	for k, ok := range set {
		if ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (v *view) put(key string, value []byte) {
	if _, ok := v.writes[key]; !ok {
		v.order = append(v.order, key)
	}
	v.writes[key] = write{value: value}
	v.bytes += len(key) + len(value)
}

func (v *view) del(key string) {
	if _, ok := v.writes[key]; !ok {
		v.order = append(v.order, key)
	}
	v.writes[key] = write{del: true}
	v.bytes += len(key)
}

func (v *view) nextAudit() uint64  { v.audit++; return v.audit }
func (v *view) nextOutbox() uint64 { v.outbox++; return v.outbox }

// fits says whether the batch can take v's writes within etcd's limits.
func (b *batch) fits(v *view) bool {
	ops := len(b.writes) + 1 // + the seq key
	for _, k := range v.order {
		if _, ok := b.writes[k]; !ok {
			ops++
		}
	}
	return ops <= maxTxnOps &&
		2+len(b.cmps)+len(v.cmps) <= maxTxnOps &&
		b.bytes+v.bytes+64 <= maxTxnBytes
}

func (b *batch) merge(v *view) {
	for _, k := range v.order {
		if _, ok := b.writes[k]; !ok {
			b.order = append(b.order, k)
		}
		b.writes[k] = v.writes[k]
	}
	b.cmps = append(b.cmps, v.cmps...)
	b.bytes += v.bytes
	b.audit, b.outbox = v.audit, v.outbox
}

// commit commits a prefix of queue as one transaction, answers those
// requests, and returns how many it took.
func (w *writer) commit(queue []*request) int {
	ctx, cancel := context.WithTimeoutCause(context.Background(), writeTimeout,
		errors.New("etcdstore: etcd did not answer within "+writeTimeout.String()))
	defer cancel()
	errs := make([]error, len(queue))
	settled := make([]bool, len(queue)) // answered by a failed precondition
	exists := map[string]bool{}
	fenceKey, fenceRev := w.s.fence()
	answer := func(n int) int {
		for i, r := range queue[:n] {
			r.done <- errs[i]
		}
		return n
	}
	if fenceKey == "" {
		for i := range queue {
			errs[i] = fmt.Errorf("etcdstore: no leadership fence set: %w", recovery.ErrFenced)
		}
		return answer(len(queue))
	}
	for range maxRedo {
		if !w.seq.valid {
			if err := w.readSeq(ctx); err != nil {
				return w.fail(queue, errs, settled, err, answer)
			}
		}
		b := &batch{ctx: ctx, cli: w.s.cli, reads: map[string]kv{}, exists: exists, writes: map[string]write{},
			audit: w.seq.audit, outbox: w.seq.outbox}
		n := len(queue)
		for i, r := range queue {
			if settled[i] {
				continue
			}
			v := &view{b: b, owner: i, writes: map[string]write{}, audit: b.audit, outbox: b.outbox}
			errs[i] = r.op(v)
			if errs[i] != nil {
				continue // an op that fails stages nothing
			}
			if !b.fits(v) {
				if len(b.writes) == 0 && len(b.cmps) == 0 {
					errs[i] = fmt.Errorf("etcdstore: %d keys, %d bytes: %w", len(v.order), v.bytes, ErrTooLarge)
					continue
				}
				n = i // the rest wait for the next batch
				break
			}
			b.merge(v)
		}
		if len(b.writes) == 0 {
			return answer(n)
		}
		retry, err := w.txn(ctx, b, fenceKey, fenceRev, errs, settled)
		if err != nil {
			return w.fail(queue[:n], errs, settled, err, answer)
		}
		if !retry {
			return answer(n)
		}
	}
	return w.fail(queue, errs, settled, errors.New("etcdstore: commit: keys kept changing under this writer"), answer)
}

// fail answers every unsettled request in queue with err.
func (w *writer) fail(queue []*request, errs []error, settled []bool, err error, answer func(int) int) int {
	w.seq.valid = false
	for i := range queue {
		if !settled[i] {
			errs[i] = err
		}
	}
	return answer(len(queue))
}

func (w *writer) readSeq(ctx context.Context) error {
	resp, err := w.s.cli.Get(ctx, w.s.seqKey())
	if err != nil {
		return fmt.Errorf("etcdstore: read seq: %w", err)
	}
	var kv *mvccpb.KeyValue
	if len(resp.Kvs) > 0 {
		kv = resp.Kvs[0]
	}
	return w.setSeq(kv)
}

func (w *writer) setSeq(kv *mvccpb.KeyValue) error {
	w.seq = seqState{valid: true}
	if kv == nil {
		return nil
	}
	f := strings.Fields(string(kv.Value))
	var err1, err2 error
	if len(f) >= 2 {
		w.seq.audit, err1 = strconv.ParseUint(f[0], 10, 64)
		w.seq.outbox, err2 = strconv.ParseUint(f[1], 10, 64)
	}
	if len(f) < 2 || err1 != nil || err2 != nil {
		w.seq.valid = false
		return fmt.Errorf("etcdstore: key %s holds %q, not \"<audit> <outbox> <batch>\"", kv.Key, kv.Value)
	}
	w.seq.modRev = kv.ModRevision
	return nil
}

// txn commits b, resending it while etcd's answer is not definite. It returns
// retry when a compare other than the fence failed (the failed preconditions
// are settled in errs), and an error when the batch did not commit.
func (w *writer) txn(ctx context.Context, b *batch, fenceKey string, fenceRev int64, errs []error, settled []bool) (retry bool, err error) {
	w.batchID++
	id := w.epoch + "." + strconv.FormatUint(w.batchID, 10)
	seqVal := strconv.FormatUint(b.audit, 10) + " " + strconv.FormatUint(b.outbox, 10) + " " + id

	conds := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(fenceKey), "=", fenceRev),
		clientv3.Compare(clientv3.ModRevision(w.s.seqKey()), "=", w.seq.modRev),
	}
	orElse := []clientv3.Op{clientv3.OpGet(fenceKey), clientv3.OpGet(w.s.seqKey())}
	for _, c := range b.cmps {
		if c.modRev == 0 {
			conds = append(conds, clientv3.Compare(clientv3.CreateRevision(c.key), "=", 0))
		} else {
			conds = append(conds, clientv3.Compare(clientv3.ModRevision(c.key), "=", c.modRev))
		}
		orElse = append(orElse, clientv3.OpGet(c.key, clientv3.WithKeysOnly()))
	}
	then := make([]clientv3.Op, 0, len(b.order)+1)
	for _, k := range b.order {
		if wr := b.writes[k]; wr.del {
			then = append(then, clientv3.OpDelete(k))
		} else {
			then = append(then, clientv3.OpPut(k, string(wr.value)))
		}
	}
	then = append(then, clientv3.OpPut(w.s.seqKey(), seqVal))

	var resp *clientv3.TxnResponse
	for {
		resp, err = w.s.cli.Txn(ctx).If(conds...).Then(then...).Else(orElse...).Commit()
		if err == nil {
			break
		}
		if !ambiguous(err) {
			// etcd applies a transaction that takes it over its space quota
			// and then answers NOSPACE: the seq key says whether this one was.
			resp, rerr := w.s.cli.Get(ctx, w.s.seqKey())
			w.seq.valid = false
			switch {
			case rerr != nil:
				return false, fmt.Errorf("etcdstore: %w: %w (and reading it back: %w)", ErrOutcomeUnknown, err, rerr)
			case len(resp.Kvs) > 0 && string(resp.Kvs[0].Value) == seqVal:
				w.seq = seqState{audit: b.audit, outbox: b.outbox, modRev: resp.Kvs[0].ModRevision, valid: true}
				return false, nil
			}
			return false, fmt.Errorf("etcdstore: commit refused by etcd: %w", err)
		}
		if ctx.Err() != nil {
			w.seq.valid = false
			return false, fmt.Errorf("etcdstore: %w: %w", ErrOutcomeUnknown, err)
		}
		// Resent as is: if the lost attempt was applied, this one fails its
		// seq compare and the Else read shows this batch's id.
		select {
		case <-ctx.Done():
		case <-time.After(resendDelay):
		}
	}
	if resp.Succeeded {
		w.seq = seqState{audit: b.audit, outbox: b.outbox, modRev: resp.Header.Revision, valid: true}
		return false, nil
	}
	got := func(i int) *mvccpb.KeyValue {
		if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
			return kvs[0]
		}
		return nil
	}
	if f := got(0); f == nil || f.CreateRevision != fenceRev {
		w.seq.valid = false
		return false, fmt.Errorf("etcdstore: election key %s is gone or recreated: %w", fenceKey, recovery.ErrFenced)
	}
	if s := got(1); s != nil && string(s.Value) == seqVal {
		// An earlier send of this very transaction was applied.
		w.seq = seqState{audit: b.audit, outbox: b.outbox, modRev: s.ModRevision, valid: true}
		return false, nil
	}
	if err := w.setSeq(got(1)); err != nil {
		return false, err
	}
	// A failed precondition settles its write; any other mismatch (a key
	// changed under the writer) just redoes the batch on fresh reads.
	for i, c := range b.cmps {
		if c.err != nil && got(2+i) != nil {
			errs[c.owner] = c.err
			settled[c.owner] = true
			b.exists[c.key] = true // the redo answers later writes of it at once
		}
	}
	return true, nil
}

// ambiguous says whether a failed request may still have been applied: a
// timeout, a lost connection, a leader change. etcd refusing it (no space,
// too many operations, too large, not permitted) is definite.
func ambiguous(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		switch ee {
		case rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost,
			rpctypes.ErrTimeoutWaitAppliedIndex, rpctypes.ErrNoLeader, rpctypes.ErrLeaderChanged,
			rpctypes.ErrStopped, rpctypes.ErrNotCapable, rpctypes.ErrUnhealthy:
			return true
		}
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.Internal, codes.Aborted:
		return true
	}
	return false
}
