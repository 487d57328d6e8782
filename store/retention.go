package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	bolt "go.etcd.io/bbolt"
)

// Retention.
//
// Storage would only grow: every event, execution and audit record is kept.
// Retention deletes what is finished and older than the kept period, in the
// background, in small steps: each Sweep finds candidates in a read-only
// transaction (which never holds up the writer) and deletes at most
// SweepBatch of them in one short write transaction, checking again there
// that each is still finished and old. bbolt reuses the freed pages, so a
// steady load keeps the file at a steady size.
//
// Deleted: executions no longer open (terminal, no scheduled rollback) last
// updated before the cutoff, with their audit trail, event, repeat counter
// and the settings keyed by their id (Retention.SettingsOf); events that made
// no plan, received before the cutoff; audit records before the cutoff that
// belong to no execution still stored. Kept: open executions however old,
// dedup entries (one per target), rate stamps (pruned as they are written),
// quarantined records and dead letters (an operator's to read).

// SweepBatch is the most records one Sweep deletes: one short transaction.
const SweepBatch = 256

// Retention says what the background sweep keeps.
type Retention struct {
	// Keep is how long finished records are kept; 0 keeps everything.
	Keep time.Duration
	// Every is how often the sweep runs (default an hour).
	Every time.Duration
	// SettingsOf are the prefixes of settings keyed by an execution id (the
	// Slack delivery record), deleted with the execution.
	SettingsOf []string
}

// sweepCursor is where the event scan resumes: event ids need not sort by
// time, so each Sweep reads a bounded slice of them and goes on from there.
type sweepCursor struct{ events []byte }

// Sweep deletes every finished record older than cutoff (see Retention), in
// write transactions of at most SweepBatch records each, and returns how many
// it deleted. settingsOf are Retention.SettingsOf.
func (db *DB) Sweep(ctx context.Context, cutoff time.Time, settingsOf []string) (int, error) {
	var cur sweepCursor
	total := 0
	for {
		n, found, err := db.sweep(ctx, cutoff, settingsOf, &cur)
		total += n
		// Done when the scan is through, or when a round found candidates
		// and deleted none of them: the next round would find the same ones
		// (the #12 review: 256 of them looped forever). A round that found
		// nothing but has events left to scan goes on: its cursor moved.
		if err != nil || n == 0 && (cur.events == nil || found > 0) {
			return total, err
		}
	}
}

// sweptExecution and sweptAudit are what retention reads of a record, the
// same in the read and in the write transaction: a record the read took for a
// candidate is decoded alike in the write, so a part the sweep does not need
// (one that no longer decodes in full, say) never keeps it from being deleted.
type sweptExecution struct {
	State     recovery.State `json:"state"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	EventID   string         `json:"event_id"`
}

type sweptAudit struct {
	At          time.Time `json:"at"`
	ExecutionID string    `json:"execution_id"`
}

type sweepPlan struct {
	execs  [][]byte // execution ids
	events [][]byte // event ids without a plan
	audit  [][]byte // seq keys of records without an execution
}

func (p *sweepPlan) n() int { return len(p.execs) + len(p.events) + len(p.audit) }

// sweep runs one round: it returns how many records it deleted and how many
// candidates it found for deletion.
func (db *DB) sweep(ctx context.Context, cutoff time.Time, settingsOf []string, cur *sweepCursor) (int, int, error) {
	var p sweepPlan
	var bads badList
	err := db.view(ctx, func(tx *bolt.Tx) error {
		open := tx.Bucket(bucketOpen)
		// Executions: ids sort by creation, and one created after the
		// cutoff was updated after it too.
		c := tx.Bucket(bucketExecutions).Cursor()
		for k, v := c.First(); k != nil && p.n() < SweepBatch; k, v = c.Next() {
			var e sweptExecution
			if err := json.Unmarshal(v, &e); err != nil {
				bads.add(bucketExecutions, k, v, err)
				continue
			}
			if !e.CreatedAt.Before(cutoff) {
				break
			}
			if open.Get(k) == nil && e.State.Terminal() && e.UpdatedAt.Before(cutoff) {
				p.execs = append(p.execs, bytes.Clone(k))
			}
		}
		// Audit records: appended in time order; stop at the cutoff.
		execs := tx.Bucket(bucketExecutions)
		c = tx.Bucket(bucketAudit).Cursor()
		for k, v := c.First(); k != nil && p.n() < SweepBatch; k, v = c.Next() {
			var r sweptAudit
			if err := json.Unmarshal(v, &r); err != nil {
				bads.add(bucketAudit, k, v, err)
				continue
			}
			if !r.At.Before(cutoff) {
				break
			}
			if r.ExecutionID == "" || execs.Get([]byte(r.ExecutionID)) == nil {
				p.audit = append(p.audit, bytes.Clone(k))
			}
		}
		// Events without a plan: a bounded slice per sweep, resumed.
		c = tx.Bucket(bucketEvents).Cursor()
		k, v := c.First()
		if cur.events != nil {
			k, v = c.Seek(cur.events)
		}
		for scanned := 0; k != nil && p.n() < SweepBatch && scanned < 8*SweepBatch; k, v = c.Next() {
			scanned++
			var r struct {
				ReceivedAt time.Time `json:"received_at"`
				PlanID     string    `json:"plan_id"`
			}
			if err := json.Unmarshal(v, &r); err != nil {
				bads.add(bucketEvents, k, v, err)
				continue
			}
			if r.ReceivedAt.Before(cutoff) && (r.PlanID == "" || execs.Get([]byte(r.PlanID)) == nil) {
				p.events = append(p.events, bytes.Clone(k))
			}
		}
		cur.events = nil
		if k != nil {
			cur.events = bytes.Clone(k)
		}
		return nil
	})
	db.setAside(ctx, bads)
	if err != nil || p.n() == 0 {
		return 0, 0, err
	}

	var deleted int   // read after submit answers
	var wbads badList // changed since the read, and no longer decodable
	err = db.submit(ctx, func(tx *bolt.Tx) error {
		deleted, wbads = 0, wbads[:0]
		execs, open := tx.Bucket(bucketExecutions), tx.Bucket(bucketOpen)
		events, audit, idx := tx.Bucket(bucketEvents), tx.Bucket(bucketAudit), tx.Bucket(bucketAuditIdx)
		for _, id := range p.execs {
			v := execs.Get(id)
			if v == nil || open.Get(id) != nil {
				continue // gone, or reopened (a rollback) since the read
			}
			var e sweptExecution
			if err := json.Unmarshal(v, &e); err != nil {
				wbads.add(bucketExecutions, id, bytes.Clone(v), err)
				continue
			}
			if !e.State.Terminal() || !e.UpdatedAt.Before(cutoff) {
				continue
			}
			// Its audit trail, through the index (deleting after the scan:
			// deleting under a moving cursor skips keys).
			var keys [][]byte
			ic := idx.Cursor()
			for k, _ := ic.Seek(id); k != nil && bytes.HasPrefix(k, id); k, _ = ic.Next() {
				if len(k) == len(id)+8 {
					keys = append(keys, bytes.Clone(k))
				}
			}
			for _, k := range keys {
				if err := audit.Delete(k[len(id):]); err != nil {
					return dirty(err)
				}
				if err := idx.Delete(k); err != nil {
					return dirty(err)
				}
				deleted++
			}
			if e.EventID != "" {
				if err := events.Delete([]byte(e.EventID)); err != nil {
					return dirty(err)
				}
			}
			if err := tx.Bucket(bucketRepeats).Delete(id); err != nil {
				return dirty(err)
			}
			for _, prefix := range settingsOf {
				if err := tx.Bucket(bucketSettings).Delete(append([]byte(prefix), id...)); err != nil {
					return dirty(err)
				}
			}
			if err := execs.Delete(id); err != nil {
				return dirty(err)
			}
			deleted++
		}
		for _, k := range p.audit {
			v := audit.Get(k)
			if v == nil {
				continue
			}
			var r sweptAudit
			if err := json.Unmarshal(v, &r); err != nil {
				wbads.add(bucketAudit, k, bytes.Clone(v), err)
				continue
			}
			if r.ExecutionID != "" && execs.Get([]byte(r.ExecutionID)) != nil {
				continue
			}
			if err := audit.Delete(k); err != nil {
				return dirty(err)
			}
			if r.ExecutionID != "" {
				if err := idx.Delete(append([]byte(r.ExecutionID), k...)); err != nil {
					return dirty(err)
				}
			}
			deleted++
		}
		for _, k := range p.events {
			if events.Get(k) == nil {
				continue
			}
			if err := events.Delete(k); err != nil {
				return dirty(err)
			}
			deleted++
		}
		return nil
	})
	if err != nil {
		return 0, p.n(), fmt.Errorf("store: retention sweep: %w", err)
	}
	db.setAside(ctx, wbads)
	return deleted, p.n(), nil
}

// Retain runs the retention sweep every r.Every until ctx ends or the store
// closes: batches of Sweep until one deletes nothing more. It does nothing
// when r.Keep is 0. The cutoff is the store's clock (WithClock) minus r.Keep.
func (db *DB) Retain(ctx context.Context, r Retention) {
	RetainLoop(ctx, r, db.log, db.now, db.Sweep, ErrClosed)
}

// RetainLoop is every store's Retain: a first sweep at once, then one every
// r.Every (default 1h), each deleting what finished before now() - r.Keep
// (nothing when r.Keep is 0), until ctx ends or sweep returns closed.
func RetainLoop(ctx context.Context, r Retention, log *slog.Logger, now func() time.Time,
	sweep func(ctx context.Context, cutoff time.Time, settingsOf []string) (int, error), closed error) {
	if r.Keep <= 0 {
		return
	}
	every := r.Every
	if every <= 0 {
		every = time.Hour
	}
	log = log.With("component", "retention")
	t := time.NewTimer(0) // a first sweep at start
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		total, err := sweep(ctx, now().Add(-r.Keep), r.SettingsOf)
		if errors.Is(err, closed) || ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Warn("retention sweep failed; retrying at the next round", "err", err)
		}
		if total > 0 {
			log.Info("retention: deleted finished records", "records", total, "older_than", r.Keep)
		}
		t.Reset(every)
	}
}
