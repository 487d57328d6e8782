package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// scanPage is how many keys one range request of a scan returns.
const scanPage = 500

// Reads are linearizable: they see every write that returned before them.
// Limits and orders are store.DB's.

// Execution returns one execution, or recovery.ErrNotFound.
func (s *Store) Execution(ctx context.Context, id string) (recovery.Execution, error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.execKey(id)),
		clientv3.OpGet(s.repeatPrefix(id), clientv3.WithPrefix(), clientv3.WithCountOnly()),
	).Commit()
	if err != nil {
		return recovery.Execution{}, fmt.Errorf("etcdstore: execution %s: %w", id, err)
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return recovery.Execution{}, fmt.Errorf("etcdstore: execution %s: %w", id, recovery.ErrNotFound)
	}
	var e recovery.Execution
	if err := decode(kvs[0].Key, kvs[0].Value, &e); err != nil {
		return recovery.Execution{}, err
	}
	e.Repeats += int(resp.Responses[1].GetResponseRange().Count)
	return e, nil
}

// addRepeats adds each execution's count of folded-in duplicates, read at rev.
func (s *Store) addRepeats(ctx context.Context, xs []recovery.Execution, rev int64) error {
	for i := range xs {
		resp, err := s.cli.Get(ctx, s.repeatPrefix(xs[i].ID), clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(rev))
		if err != nil {
			return fmt.Errorf("etcdstore: repeats of %s: %w", xs[i].ID, err)
		}
		xs[i].Repeats += int(resp.Count)
	}
	return nil
}

// Executions returns executions newest first, keeping those matching every
// set field of f, as store.DB.Executions does.
func (s *Store) Executions(ctx context.Context, f recovery.ExecutionFilter) ([]recovery.Execution, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = store.DefaultExecutionLimit
	}
	limit = min(limit, store.MaxExecutionLimit)
	from, end := s.prefix+"x/", clientv3.GetPrefixRangeEnd(s.prefix+"x/")
	var out []recovery.Execution
	var rev int64
	for len(out) < limit {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(scanPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, fmt.Errorf("etcdstore: executions: %w", err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			var e recovery.Execution
			if err := decode(kv.Key, kv.Value, &e); err != nil {
				return nil, err
			}
			if f.State != "" && e.State != f.State ||
				f.Runbook != "" && e.Runbook != f.Runbook ||
				e.CreatedAt.Before(f.Since) {
				continue
			}
			if out = append(out, e); len(out) == limit {
				break
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		end = string(resp.Kvs[len(resp.Kvs)-1].Key) // exclusive: the next page is below it
	}
	return out, s.addRepeats(ctx, out, rev)
}

// EventRecord returns an accepted event by its id, or recovery.ErrNotFound.
func (s *Store) EventRecord(ctx context.Context, id string) (recovery.EventRecord, error) {
	resp, err := s.cli.Get(ctx, s.eventKey(id))
	if err != nil {
		return recovery.EventRecord{}, fmt.Errorf("etcdstore: event %s: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return recovery.EventRecord{}, fmt.Errorf("etcdstore: event %s: %w", id, recovery.ErrNotFound)
	}
	var r recovery.EventRecord
	return r, decode(resp.Kvs[0].Key, resp.Kvs[0].Value, &r)
}

// Audit returns an execution's audit trail in the order it was written;
// empty, not an error, for an unknown execution.
func (s *Store) Audit(ctx context.Context, executionID string) ([]recovery.AuditRecord, error) {
	prefix := s.auditIdxPrefix(executionID)
	var out []recovery.AuditRecord
	var rev int64
	err := s.scan(ctx, prefix, clientv3.GetPrefixRangeEnd(prefix), &rev, true, func(k, _ []byte) (bool, error) {
		seq, err := strconv.ParseUint(strings.TrimPrefix(string(k), prefix), 16, 64)
		if err != nil || len(k) != len(prefix)+16 {
			return true, nil // another execution whose id starts with this one
		}
		resp, err := s.cli.Get(ctx, s.auditKey(seq), clientv3.WithRev(rev))
		if err != nil {
			return false, fmt.Errorf("etcdstore: audit %d: %w", seq, err)
		}
		if len(resp.Kvs) == 0 {
			return true, nil
		}
		r, err := decodeAudit(resp.Kvs[0].Key, resp.Kvs[0].Value, seq)
		if err != nil {
			return false, err
		}
		out = append(out, r)
		return true, nil
	})
	return out, err
}

// AuditSince returns every audit record with At at or after since, in the
// order written, page by page.
func (s *Store) AuditSince(ctx context.Context, since time.Time) ([]recovery.AuditRecord, error) {
	var out []recovery.AuditRecord
	var after uint64
	for {
		page, err := s.AuditPage(ctx, since, after, store.MaxAuditPage)
		if err != nil || len(page) == 0 {
			return out, err
		}
		out = append(out, page...)
		after = page[len(page)-1].Seq
	}
}

// AuditPage returns up to limit audit records with Seq above after and At at
// or after since, in order; an empty page is the end.
func (s *Store) AuditPage(ctx context.Context, since time.Time, after uint64, limit int) ([]recovery.AuditRecord, error) {
	if limit <= 0 {
		limit = store.DefaultAuditPage
	}
	limit = min(limit, store.MaxAuditPage)
	if after == ^uint64(0) {
		return nil, nil
	}
	var out []recovery.AuditRecord
	var rev int64
	from := s.auditKey(after + 1)
	err := s.scan(ctx, from, clientv3.GetPrefixRangeEnd(s.prefix+"a/"), &rev, false, func(k, v []byte) (bool, error) {
		seq, err := strconv.ParseUint(strings.TrimPrefix(string(k), s.prefix+"a/"), 16, 64)
		if err != nil {
			return false, fmt.Errorf("etcdstore: key %q is not an audit seq", k)
		}
		r, err := decodeAudit(k, v, seq)
		if err != nil {
			return false, err
		}
		if !r.At.Before(since) {
			out = append(out, r)
		}
		return len(out) < limit, nil
	})
	return out, err
}

// Open returns the executions start-up must resume (Execution.Open), ordered
// by id, oldest first.
func (s *Store) Open(ctx context.Context) ([]recovery.Execution, error) {
	prefix := s.prefix + "open/"
	var out []recovery.Execution
	var rev int64
	err := s.scan(ctx, prefix, clientv3.GetPrefixRangeEnd(prefix), &rev, true, func(k, _ []byte) (bool, error) {
		id := strings.TrimPrefix(string(k), prefix)
		resp, err := s.cli.Get(ctx, s.execKey(id), clientv3.WithRev(rev))
		if err != nil {
			return false, fmt.Errorf("etcdstore: open execution %s: %w", id, err)
		}
		if len(resp.Kvs) == 0 {
			return true, nil
		}
		var e recovery.Execution
		if err := decode(resp.Kvs[0].Key, resp.Kvs[0].Value, &e); err != nil {
			return false, err
		}
		out = append(out, e)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return out, s.addRepeats(ctx, out, rev)
}

// RateStamps returns the stamps at or after since, by runbook then time.
func (s *Store) RateStamps(ctx context.Context, since time.Time) ([]recovery.RateStamp, error) {
	var out []recovery.RateStamp
	var rev int64
	prefix := s.prefix + "r/"
	err := s.scan(ctx, prefix, clientv3.GetPrefixRangeEnd(prefix), &rev, false, func(k, v []byte) (bool, error) {
		var r recovery.RateStamp
		if err := decode(k, v, &r); err != nil {
			return false, err
		}
		if !r.At.Before(since) {
			out = append(out, r)
		}
		return true, nil
	})
	return out, err
}

// DedupEntries returns every dedup entry, by key.
func (s *Store) DedupEntries(ctx context.Context) ([]recovery.DedupEntry, error) {
	var out []recovery.DedupEntry
	var rev int64
	prefix := s.prefix + "d/"
	err := s.scan(ctx, prefix, clientv3.GetPrefixRangeEnd(prefix), &rev, false, func(k, v []byte) (bool, error) {
		var d recovery.DedupEntry
		if err := decode(k, v, &d); err != nil {
			return false, err
		}
		out = append(out, d)
		return true, nil
	})
	return out, err
}

// Outbox returns up to limit undelivered notifications with Seq above after,
// ascending.
func (s *Store) Outbox(ctx context.Context, after uint64, limit int) ([]recovery.Notification, error) {
	if limit <= 0 {
		limit = store.DefaultOutboxLimit
	}
	limit = min(limit, store.MaxOutboxLimit)
	if after == ^uint64(0) {
		return nil, nil
	}
	resp, err := s.cli.Get(ctx, s.outboxKey(after+1), clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.prefix+"o/")), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("etcdstore: outbox: %w", err)
	}
	out := make([]recovery.Notification, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var n recovery.Notification
		if err := decode(kv.Key, kv.Value, &n); err != nil {
			return nil, err
		}
		seq, err := strconv.ParseUint(strings.TrimPrefix(string(kv.Key), s.prefix+"o/"), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("etcdstore: key %q is not an outbox seq", kv.Key)
		}
		n.Seq = seq
		out = append(out, n)
	}
	return out, nil
}

// DeadLetters returns the notifications given up on, oldest first.
func (s *Store) DeadLetters(ctx context.Context) ([]store.DeadLetter, error) {
	var out []store.DeadLetter
	var rev int64
	prefix := s.prefix + "dl/"
	err := s.scan(ctx, prefix, clientv3.GetPrefixRangeEnd(prefix), &rev, false, func(k, v []byte) (bool, error) {
		var d store.DeadLetter
		if err := decode(k, v, &d); err != nil {
			return false, err
		}
		seq, err := strconv.ParseUint(strings.TrimPrefix(string(k), prefix), 16, 64)
		if err != nil {
			return false, fmt.Errorf("etcdstore: key %q is not a dead letter seq", k)
		}
		d.Notification.Seq = seq
		out = append(out, d)
		return true, nil
	})
	return out, err
}

// Setting returns the value stored under key, or recovery.ErrNotFound.
func (s *Store) Setting(ctx context.Context, key string) ([]byte, error) {
	resp, err := s.cli.Get(ctx, s.settingKey(key))
	if err != nil {
		return nil, fmt.Errorf("etcdstore: setting %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("etcdstore: setting %s: %w", key, recovery.ErrNotFound)
	}
	return append([]byte{}, resp.Kvs[0].Value...), nil
}

// scan calls fn on the keys in [from, end) in order, a page at a time, all at
// one revision (set in *rev on the first page) so the scan is one snapshot,
// until fn returns false or an error.
func (s *Store) scan(ctx context.Context, from, end string, rev *int64, keysOnly bool, fn func(k, v []byte) (bool, error)) error {
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(scanPage)}
		if *rev != 0 {
			opts = append(opts, clientv3.WithRev(*rev))
		}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return fmt.Errorf("etcdstore: read %s: %w", from, err)
		}
		*rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			more, err := fn(kv.Key, kv.Value)
			if err != nil || !more {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// decode reads a JSON record; one that cannot be decoded is an error naming
// its key (nothing is set aside: etcd holds it for an operator to inspect).
func decode(key, v []byte, into any) error {
	if err := json.Unmarshal(v, into); err != nil {
		return fmt.Errorf("etcdstore: key %q cannot be decoded: %w", key, err)
	}
	return nil
}

func decodeAudit(key, v []byte, seq uint64) (recovery.AuditRecord, error) {
	var r recovery.AuditRecord
	if err := decode(key, v, &r); err != nil {
		return r, err
	}
	r.Seq = seq
	return r, nil
}
