package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Retention: store.DB's meaning (see store/retention.go) on etcd. Each Sweep
// round reads up to store.SweepBatch candidates at one revision, then deletes
// each through the writer (fenced, group-committed), checking again in the
// write that it is still finished and old. An execution's audit trail is
// deleted auditChunk records per write, the execution itself last, so no
// write exceeds etcd's limits. Compaction and defragmentation give the space
// back (README, HA).

// auditChunk is how many audit records (two keys each) one write deletes.
const auditChunk = 50

// sweptExecution is what retention reads of an execution.
type sweptExecution struct {
	State     recovery.State `json:"state"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	EventID   string         `json:"event_id"`
}

// Sweep deletes every finished record older than cutoff, as store.DB.Sweep
// does, and returns how many it deleted.
func (s *Store) Sweep(ctx context.Context, cutoff time.Time, settingsOf []string) (int, error) {
	total := 0
	for {
		n, found, err := s.sweep(ctx, cutoff, settingsOf)
		total += n
		if err != nil || found == 0 || n == 0 {
			return total, err
		}
	}
}

// sweep runs one round: deleted records and candidates found.
func (s *Store) sweep(ctx context.Context, cutoff time.Time, settingsOf []string) (int, int, error) {
	var execs, audit, events []string
	var rev int64
	full := func() bool { return len(execs)+len(audit)+len(events) >= store.SweepBatch }
	// Executions: ids sort by creation time.
	xp := s.prefix + "x/"
	err := s.scan(ctx, xp, clientv3.GetPrefixRangeEnd(xp), &rev, false, func(k, v []byte) (bool, error) {
		var e sweptExecution
		if json.Unmarshal(v, &e) != nil {
			return !full(), nil // a read names it; retention leaves it
		}
		if !e.CreatedAt.Before(cutoff) {
			return false, nil
		}
		id := strings.TrimPrefix(string(k), xp)
		if !e.State.Terminal() || !e.UpdatedAt.Before(cutoff) {
			return !full(), nil
		}
		resp, err := s.cli.Get(ctx, s.openKey(id), clientv3.WithRev(rev), clientv3.WithCountOnly())
		if err != nil {
			return false, fmt.Errorf("etcdstore: retention: %w", err)
		}
		if resp.Count == 0 { // a pending timer keeps it (Execution.Open)
			execs = append(execs, id)
		}
		return !full(), nil
	})
	if err != nil {
		return 0, 0, err
	}
	// gone says whether the execution id names none stored (at rev).
	gone := func(id string) (bool, error) {
		if id == "" {
			return true, nil
		}
		resp, err := s.cli.Get(ctx, s.execKey(id), clientv3.WithRev(rev), clientv3.WithCountOnly())
		if err != nil {
			return false, fmt.Errorf("etcdstore: retention: %w", err)
		}
		return resp.Count == 0, nil
	}
	// Audit records of no execution still stored: appended in time order.
	ap := s.prefix + "a/"
	err = s.scan(ctx, ap, clientv3.GetPrefixRangeEnd(ap), &rev, false, func(k, v []byte) (bool, error) {
		var r recovery.AuditRecord
		if json.Unmarshal(v, &r) != nil {
			return !full(), nil
		}
		if !r.At.Before(cutoff) {
			return false, nil
		}
		if ok, err := gone(r.ExecutionID); err != nil || !ok {
			return err == nil && !full(), err
		}
		audit = append(audit, string(k))
		return !full(), nil
	})
	if err != nil {
		return 0, 0, err
	}
	// Events whose plan (if any) is no longer stored.
	ep := s.prefix + "ev/"
	err = s.scan(ctx, ep, clientv3.GetPrefixRangeEnd(ep), &rev, false, func(k, v []byte) (bool, error) {
		var r recovery.EventRecord
		if json.Unmarshal(v, &r) != nil || !r.ReceivedAt.Before(cutoff) {
			return !full(), nil
		}
		if ok, err := gone(r.PlanID); err != nil || !ok {
			return err == nil && !full(), err
		}
		events = append(events, string(k))
		return !full(), nil
	})
	if err != nil {
		return 0, 0, err
	}
	found := len(execs) + len(audit) + len(events)
	if found == 0 {
		return 0, 0, nil
	}

	// Deleted concurrently, so the writer groups them.
	var mu sync.Mutex
	deleted := 0
	var errs []error
	var wg sync.WaitGroup
	count := func(n int, err error) {
		mu.Lock()
		defer mu.Unlock()
		deleted += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, id := range execs {
		wg.Go(func() { count(s.deleteExecution(ctx, id, cutoff, settingsOf)) })
	}
	for _, k := range audit {
		wg.Go(func() { count(s.deleteOrphan(ctx, k, "execution_id", func(r *orphan) string { return r.ExecutionID })) })
	}
	for _, k := range events {
		wg.Go(func() { count(s.deleteOrphan(ctx, k, "plan_id", func(r *orphan) string { return r.PlanID })) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return deleted, found, fmt.Errorf("etcdstore: retention sweep: %w", err)
	}
	return deleted, found, nil
}

// orphan is what retention reads of an audit record or an event.
type orphan struct {
	ExecutionID string `json:"execution_id"`
	PlanID      string `json:"plan_id"`
}

// deleteOrphan deletes the audit record or event under key if the execution
// it names (owner) is still not stored; an audit record's index key goes
// with it.
func (s *Store) deleteOrphan(ctx context.Context, key, field string, owner func(*orphan) string) (int, error) {
	n := 0
	err := s.submit(ctx, func(v *view) error {
		n = 0
		raw, found, err := v.get(key)
		if err != nil || !found {
			return err
		}
		var r orphan
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("etcdstore: %s cannot be decoded: %w", key, err)
		}
		if id := owner(&r); id != "" {
			if _, stored, err := v.get(s.execKey(id)); err != nil || stored {
				return err
			}
			if field == "execution_id" {
				v.del(s.auditIdxPrefix(id) + strings.TrimPrefix(key, s.prefix+"a/"))
			}
		}
		v.del(key)
		n = 1
		return nil
	})
	return n, err
}

// deleteExecution deletes a finished execution older than cutoff: its audit
// trail a chunk per write, then the execution with its event, repeats and
// settings. Each write first checks it is still finished and old.
func (s *Store) deleteExecution(ctx context.Context, id string, cutoff time.Time, settingsOf []string) (int, error) {
	// still says whether the execution may go: stored, not open, terminal, old.
	still := func(v *view) (sweptExecution, bool, error) {
		var e sweptExecution
		raw, found, err := v.get(s.execKey(id))
		if err != nil || !found {
			return e, false, err
		}
		if _, open, err := v.get(s.openKey(id)); err != nil || open {
			return e, false, err
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return e, false, fmt.Errorf("etcdstore: execution %s cannot be decoded: %w", id, err)
		}
		return e, e.State.Terminal() && e.UpdatedAt.Before(cutoff), nil
	}
	total := 0
	idx := s.auditIdxPrefix(id)
	for {
		n, more := 0, false
		err := s.submit(ctx, func(v *view) error {
			n, more = 0, false
			if _, ok, err := still(v); err != nil || !ok {
				return err
			}
			keys, err := v.keys(idx, clientv3.GetPrefixRangeEnd(idx))
			if err != nil {
				return err
			}
			if len(keys) > auditChunk {
				keys, more = keys[:auditChunk], true
			}
			for _, k := range keys {
				v.del(k)
				v.del(s.prefix + "a/" + strings.TrimPrefix(k, idx))
				n++
			}
			return nil
		})
		total += n
		if err != nil || !more {
			if err != nil {
				return total, err
			}
			break
		}
	}
	gone := false
	err := s.submit(ctx, func(v *view) error {
		gone = false
		e, ok, err := still(v)
		if err != nil || !ok {
			return err
		}
		reps, err := v.keys(s.repeatPrefix(id), clientv3.GetPrefixRangeEnd(s.repeatPrefix(id)))
		if err != nil {
			return err
		}
		for _, k := range reps {
			v.del(k)
		}
		if e.EventID != "" {
			v.del(s.eventKey(e.EventID))
		}
		for _, p := range settingsOf {
			v.del(s.settingKey(p + id))
		}
		v.del(s.execKey(id))
		gone = true
		return nil
	})
	if gone {
		total++
	}
	return total, err
}

// Retain runs the retention sweep every r.Every (default an hour) until ctx
// ends or the store closes, as store.DB.Retain does; the store's log (WithLog)
// gets its failures (a follower's sweep is fenced: it deletes nothing and
// says so).
func (s *Store) Retain(ctx context.Context, r store.Retention) {
	store.RetainLoop(ctx, r, s.log, s.now, s.Sweep, ErrClosed)
}
