package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	bolt "go.etcd.io/bbolt"
)

// Limits of list reads.
const (
	DefaultExecutionLimit = 50
	MaxExecutionLimit     = 1000
	DefaultOutboxLimit    = 100
	MaxOutboxLimit        = 1000
)

// Execution returns one execution, or recovery.ErrNotFound (also for one that
// cannot be decoded: it is quarantined).
func (db *DB) Execution(ctx context.Context, id string) (recovery.Execution, error) {
	var e recovery.Execution
	var bads badList
	err := db.view(ctx, func(tx *bolt.Tx) error {
		if err := getJSON(tx.Bucket(bucketExecutions), bucketExecutions, "execution", id, &e, &bads); err != nil {
			return err
		}
		addRepeats(tx, &e)
		return nil
	})
	db.setAside(ctx, bads)
	return e, err
}

// addRepeats adds the execution's repeat counter (kept apart, see Accept).
func addRepeats(tx *bolt.Tx, e *recovery.Execution) {
	if v := tx.Bucket(bucketRepeats).Get([]byte(e.ID)); len(v) == 8 {
		e.Repeats += int(binary.BigEndian.Uint64(v))
	}
}

// Executions returns executions newest first (ids sort by creation time),
// keeping those matching every set field of f: State, Runbook, CreatedAt at or
// after Since. Limit defaults to DefaultExecutionLimit and is capped at
// MaxExecutionLimit.
func (db *DB) Executions(ctx context.Context, f recovery.ExecutionFilter) ([]recovery.Execution, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultExecutionLimit
	}
	limit = min(limit, MaxExecutionLimit)
	var out []recovery.Execution
	var bads badList
	defer func() { db.setAside(ctx, bads) }()
	err := db.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketExecutions).Cursor()
		n := 0
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			if n++; n%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			var e recovery.Execution
			if err := json.Unmarshal(v, &e); err != nil {
				bads.add(bucketExecutions, k, v, err)
				continue
			}
			if f.State != "" && e.State != f.State ||
				f.Runbook != "" && e.Runbook != f.Runbook ||
				e.CreatedAt.Before(f.Since) {
				continue
			}
			addRepeats(tx, &e)
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// EventRecord returns an accepted event by its id, or recovery.ErrNotFound.
func (db *DB) EventRecord(ctx context.Context, id string) (recovery.EventRecord, error) {
	var r recovery.EventRecord
	var bads badList
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketEvents), bucketEvents, "event", id, &r, &bads)
	})
	db.setAside(ctx, bads)
	return r, err
}

// Audit returns an execution's audit trail in the order it was written; empty,
// not an error, for an unknown execution.
func (db *DB) Audit(ctx context.Context, executionID string) ([]recovery.AuditRecord, error) {
	var out []recovery.AuditRecord
	var bads badList
	err := db.view(ctx, func(tx *bolt.Tx) error {
		audit := tx.Bucket(bucketAudit)
		prefix := []byte(executionID)
		c := tx.Bucket(bucketAuditIdx).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+8 {
				continue // another execution whose id starts with this one
			}
			seq := k[len(prefix):]
			v := audit.Get(seq)
			if v == nil {
				continue // quarantined, or deleted by retention
			}
			r, err := decodeAudit(seq, v)
			if err != nil {
				bads.add(bucketAudit, seq, v, err)
				continue
			}
			out = append(out, r)
		}
		return nil
	})
	db.setAside(ctx, bads)
	return out, err
}

// AuditSince returns every audit record with At at or after since, in the order
// written: AuditPage, page after page, so there is one scan of the audit.
func (db *DB) AuditSince(ctx context.Context, since time.Time) ([]recovery.AuditRecord, error) {
	var out []recovery.AuditRecord
	var after uint64
	for {
		page, err := db.AuditPage(ctx, since, after, MaxAuditPage)
		if err != nil || len(page) == 0 {
			return out, err
		}
		out = append(out, page...)
		after = page[len(page)-1].Seq
	}
}

// Limits of an audit page.
const (
	DefaultAuditPage = 500
	MaxAuditPage     = 5000
)

// AuditPage returns up to limit audit records with Seq above after and At at
// or after since, in the order written: the audit export reads page by page,
// passing the last Seq, instead of loading a whole range. An empty page is the
// end. Limit defaults to DefaultAuditPage and is capped at MaxAuditPage.
func (db *DB) AuditPage(ctx context.Context, since time.Time, after uint64, limit int) ([]recovery.AuditRecord, error) {
	if limit <= 0 {
		limit = DefaultAuditPage
	}
	limit = min(limit, MaxAuditPage)
	var out []recovery.AuditRecord
	var bads badList
	defer func() { db.setAside(ctx, bads) }()
	err := db.view(ctx, func(tx *bolt.Tx) error {
		if after == ^uint64(0) {
			return nil
		}
		c := tx.Bucket(bucketAudit).Cursor()
		n := 0
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			if n++; n%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			r, err := decodeAudit(k, v)
			if err != nil {
				bads.add(bucketAudit, k, v, err)
				continue
			}
			if !r.At.Before(since) {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// Open returns the executions start-up must resume: those in a non-terminal
// state, and succeeded or verified ones with a scheduled rollback. Ordered by
// id, oldest first.
func (db *DB) Open(ctx context.Context) ([]recovery.Execution, error) {
	var out []recovery.Execution
	var bads badList
	defer func() { db.setAside(ctx, bads) }()
	err := db.view(ctx, func(tx *bolt.Tx) error {
		execs := tx.Bucket(bucketExecutions)
		return tx.Bucket(bucketOpen).ForEach(func(k, _ []byte) error {
			var e recovery.Execution
			if err := getJSON(execs, bucketExecutions, "execution", string(k), &e, &bads); err != nil {
				if errors.Is(err, recovery.ErrNotFound) {
					return nil // set aside (now or before): start-up cannot resume it
				}
				return err
			}
			addRepeats(tx, &e)
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// RateStamps returns the stamps at or after since, by runbook then time. Stamps
// older than two hours before a runbook's latest may be gone.
func (db *DB) RateStamps(ctx context.Context, since time.Time) ([]recovery.RateStamp, error) {
	var out []recovery.RateStamp
	var bads badList
	defer func() { db.setAside(ctx, bads) }()
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRate).ForEach(func(k, v []byte) error {
			var r recovery.RateStamp
			if err := json.Unmarshal(v, &r); err != nil {
				bads.add(bucketRate, k, v, err)
				return nil
			}
			if !r.At.Before(since) {
				out = append(out, r)
			}
			return nil
		})
	})
	return out, err
}

// DedupEntries returns every dedup entry, by key. Expired cooldowns are the
// reader's to ignore: they are deleted only when a transition replaces them.
func (db *DB) DedupEntries(ctx context.Context) ([]recovery.DedupEntry, error) {
	var out []recovery.DedupEntry
	var bads badList
	defer func() { db.setAside(ctx, bads) }()
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDedup).ForEach(func(k, v []byte) error {
			var d recovery.DedupEntry
			if err := json.Unmarshal(v, &d); err != nil {
				bads.add(bucketDedup, k, v, err)
				return nil
			}
			out = append(out, d)
			return nil
		})
	})
	return out, err
}

// Outbox returns up to limit undelivered notifications with Seq above after,
// ascending. Limit defaults to DefaultOutboxLimit and is capped at
// MaxOutboxLimit.
func (db *DB) Outbox(ctx context.Context, after uint64, limit int) ([]recovery.Notification, error) {
	if limit <= 0 {
		limit = DefaultOutboxLimit
	}
	limit = min(limit, MaxOutboxLimit)
	var out []recovery.Notification
	var bads badList
	defer func() { db.setAside(ctx, bads) }()
	err := db.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			var n recovery.Notification
			if err := json.Unmarshal(v, &n); err != nil {
				bads.add(bucketOutbox, k, v, err)
				continue
			}
			n.Seq = binary.BigEndian.Uint64(k)
			if n.Seq <= after { // after+1 wrapped around
				break
			}
			out = append(out, n)
		}
		return nil
	})
	return out, err
}

// Setting returns the value stored under key, or recovery.ErrNotFound.
func (db *DB) Setting(ctx context.Context, key string) ([]byte, error) {
	var out []byte
	err := db.view(ctx, func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketSettings).Cursor().Seek([]byte(key))
		if k == nil || string(k) != key {
			return fmt.Errorf("store: setting %s: %w", key, recovery.ErrNotFound)
		}
		out = append([]byte{}, v...) // bbolt's memory is valid only inside the transaction
		return nil
	})
	return out, err
}

// getJSON decodes the value under id, or returns recovery.ErrNotFound; a value
// that cannot be decoded is added to bads and is recovery.ErrNotFound too.
func getJSON(b *bolt.Bucket, bucket []byte, what, id string, into any, bads *badList) error {
	v := b.Get([]byte(id))
	if v == nil {
		return fmt.Errorf("store: %s %s: %w", what, id, recovery.ErrNotFound)
	}
	if err := json.Unmarshal(v, into); err != nil {
		bads.add(bucket, []byte(id), v, err)
		return fmt.Errorf("store: %s %s cannot be decoded and is quarantined (%v): %w", what, id, err, recovery.ErrNotFound)
	}
	return nil
}

// decodeAudit decodes one record; its key is the authority for Seq.
func decodeAudit(key, v []byte) (recovery.AuditRecord, error) {
	var r recovery.AuditRecord
	seq := binary.BigEndian.Uint64(key)
	if v == nil {
		return r, fmt.Errorf("store: audit %d: indexed but missing", seq)
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, fmt.Errorf("store: audit %d: %w", seq, err)
	}
	r.Seq = seq
	return r, nil
}
