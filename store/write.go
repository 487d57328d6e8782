package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	bolt "go.etcd.io/bbolt"
)

// ErrNotAllowed is returned (wrapped) by Transition when the state machine has
// no such move, whatever the current state.
var ErrNotAllowed = errors.New("move not allowed")

// RateKeep is how long rate stamps are kept: the limit is hourly, the margin
// lets a late reader still count the whole window.
const RateKeep = 2 * time.Hour

// Accept writes an intake decision in one transaction: the event record, the
// execution (if a plan was made) with its audit records and outbox messages,
// the dedup entry, and a repeat count on the plan a duplicate event folds into.
//
// It returns recovery.ErrDuplicate, writing nothing, when the event id was
// accepted before or the execution id exists. Defaults: audit and outbox
// records get the execution's id (and audit records the event's id) when they
// have none, and a zero At becomes the event's ReceivedAt. A RepeatOf adds one
// to that execution's repeat counter (read back into Execution.Repeats), even
// when the execution is not written yet. Seqs are assigned here, so callers' Seq fields are
// ignored. ctx bounds only the handover to the writer: an Accept that returns
// ctx's error wrote nothing, and one handed over returns what its commit did.
func (db *DB) Accept(ctx context.Context, a recovery.Accepted) error {
	if err := CheckAccepted(a); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	eventID, execID := a.Event.Event.ID, ""
	if a.Execution != nil {
		execID = a.Execution.ID
	}

	// Encode in the caller's goroutine: the writer is one goroutine, and JSON
	// would otherwise be most of its work. Seqs are spliced in by the writer.
	eventJSON, err := json.Marshal(a.Event)
	if err != nil {
		return fmt.Errorf("store: accept %s: %w", eventID, err)
	}
	var execJSON []byte
	if a.Execution != nil {
		if execJSON, err = json.Marshal(a.Execution); err != nil {
			return fmt.Errorf("store: accept %s: execution %s: %w", eventID, execID, err)
		}
	}
	audits := make([]encoded, len(a.Audit))
	for i, r := range AcceptAudit(a) {
		audits[i].owner = r.ExecutionID
		if audits[i].json, err = json.Marshal(r); err != nil {
			return fmt.Errorf("store: accept %s: audit: %w", eventID, err)
		}
	}
	outbox, err := EncodeOutbox(a.Outbox, execID, a.Event.ReceivedAt)
	if err != nil {
		return fmt.Errorf("store: accept %s: %w", eventID, err)
	}
	var dedupJSON []byte
	if a.Dedup != nil && a.Dedup.PlanID != "" {
		if dedupJSON, err = json.Marshal(a.Dedup); err != nil {
			return fmt.Errorf("store: accept %s: dedup: %w", eventID, err)
		}
	}
	open := a.Execution != nil && a.Execution.Open()

	return db.submit(ctx, func(tx *bolt.Tx) error {
		// Preconditions: nothing is written unless all hold.
		events := tx.Bucket(bucketEvents)
		if events.Get([]byte(eventID)) != nil {
			return fmt.Errorf("store: event %s: %w", eventID, recovery.ErrDuplicate)
		}
		execs := tx.Bucket(bucketExecutions)
		if a.Execution != nil && execs.Get([]byte(execID)) != nil {
			return fmt.Errorf("store: execution %s: %w", execID, recovery.ErrDuplicate)
		}
		if err := events.Put([]byte(eventID), eventJSON); err != nil {
			return dirty(err)
		}
		if a.Execution != nil {
			if err := putExecution(tx, execID, execJSON, open); err != nil {
				return dirty(err)
			}
		}
		if a.RepeatOf != "" {
			// A counter of its own, not a rewrite of the execution: cheap during a
			// storm, and correct even when the duplicate commits before (or in
			// the same batch as) the plan it folds into.
			rb := tx.Bucket(bucketRepeats)
			n := uint64(0)
			if v := rb.Get([]byte(a.RepeatOf)); len(v) == 8 {
				n = binary.BigEndian.Uint64(v)
			}
			if err := rb.Put([]byte(a.RepeatOf), binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
				return dirty(err)
			}
		}
		for _, r := range audits {
			if _, err := appendAudit(tx, r); err != nil {
				return dirty(err)
			}
		}
		if err := appendOutbox(tx, outbox); err != nil {
			return dirty(err)
		}
		if a.Dedup != nil {
			if err := putDedup(tx, a.Dedup.Key, dedupJSON); err != nil {
				return dirty(err)
			}
		}
		return nil
	})
}

// Record appends audit records and outbox notifications in one transaction;
// nothing else is written. Zero At fields become now.
func (db *DB) Record(ctx context.Context, audit []recovery.AuditRecord, outbox []recovery.Notification) error {
	now := time.Now()
	audits := make([]encoded, len(audit))
	for i, r := range audit {
		r.Seq = 0
		if r.At.IsZero() {
			r.At = now
		}
		audits[i].owner = r.ExecutionID
		var err error
		if audits[i].json, err = json.Marshal(r); err != nil {
			return fmt.Errorf("store: record: audit: %w", err)
		}
	}
	msgs, err := EncodeOutbox(outbox, "", now)
	if err != nil {
		return fmt.Errorf("store: record: %w", err)
	}
	return db.submit(ctx, func(tx *bolt.Tx) error {
		for _, r := range audits {
			if _, err := appendAudit(tx, r); err != nil {
				return dirty(err)
			}
		}
		if err := appendOutbox(tx, msgs); err != nil {
			return dirty(err)
		}
		return nil
	})
}

// Transition moves one execution from one of t.From to t.To, compare-and-set,
// in one transaction with its audit record, outbox messages, rate stamp and
// dedup entry, and returns the execution as saved.
//
// Errors, each writing nothing: recovery.ErrNotFound (no such execution, or
// one that cannot be decoded: it is quarantined);
// *recovery.MoveError (the current state is not in t.From); ErrNotAllowed (the
// state machine has no current → t.To move); the error of t.Mutate. Mutate runs
// on a private copy after the checks, on the store's writer goroutine, and may
// run more than once (if its batch is redone) or after Transition returned on a
// cancelled ctx; it must only edit the execution it is given, and its changes
// to ID, State, Version and UpdatedAt are overwritten.
//
// ctx bounds only the handover to the writer: a Transition that returns ctx's
// error wrote nothing, and one handed over returns what its commit did.
//
// Defaults: outbox messages get t.ID and t.At when they have none; the rate
// stamp gets the execution's runbook, t.ID and t.At. A dedup entry with an
// empty PlanID deletes its key. Writing a rate stamp prunes that runbook's
// stamps older than two hours before it.
func (db *DB) Transition(ctx context.Context, t recovery.Transition) (recovery.Execution, error) {
	if err := CheckTransition(t); err != nil {
		return recovery.Execution{}, fmt.Errorf("store: %w", err)
	}
	outbox, err := EncodeOutbox(t.Outbox, t.ID, t.At)
	if err != nil {
		return recovery.Execution{}, fmt.Errorf("store: transition %s: %w", t.ID, err)
	}
	var dedupJSON []byte
	if t.Dedup != nil && t.Dedup.PlanID != "" {
		if dedupJSON, err = json.Marshal(t.Dedup); err != nil {
			return recovery.Execution{}, fmt.Errorf("store: transition %s: dedup: %w", t.ID, err)
		}
	}

	var result recovery.Execution // read only after submit answers
	var bads badList              // likewise
	err = db.submit(ctx, func(tx *bolt.Tx) error {
		bads = bads[:0]
		// Preconditions: nothing is written unless all hold.
		v := tx.Bucket(bucketExecutions).Get([]byte(t.ID))
		if v == nil {
			return fmt.Errorf("store: execution %s: %w", t.ID, recovery.ErrNotFound)
		}
		// Decoding gives a private copy: Mutate cannot touch the stored value.
		var e recovery.Execution
		if err := json.Unmarshal(v, &e); err != nil {
			// Set aside after this batch, as a read would (see setAside).
			bads.add(bucketExecutions, []byte(t.ID), v, err)
			return fmt.Errorf("store: execution %s cannot be decoded and is quarantined (%v): %w", t.ID, err, recovery.ErrNotFound)
		}
		from := e.State
		if !contains(t.From, from) {
			return &recovery.MoveError{ID: t.ID, From: t.From[0], To: t.To, Actual: from}
		}
		if !recovery.CanMove(from, t.To) {
			return fmt.Errorf("store: execution %s: %s → %s: %w", t.ID, from, t.To, ErrNotAllowed)
		}
		version := e.Version
		if t.Mutate != nil {
			if err := Mutate(t.Mutate, &e); err != nil {
				return fmt.Errorf("store: transition %s: %w", t.ID, err)
			}
		}
		// Identity, state and version are the store's, whatever Mutate did.
		e.ID = t.ID
		e.State = t.To
		e.Version = version + 1
		e.UpdatedAt = t.At
		execJSON, err := json.Marshal(&e)
		if err != nil {
			return fmt.Errorf("store: execution %s: %w", t.ID, err)
		}
		audit, err := json.Marshal(recovery.AuditRecord{
			At: t.At, ExecutionID: t.ID, Actor: t.Actor,
			From: from, To: t.To, Reason: t.Reason, Plan: &e,
		})
		if err != nil {
			return fmt.Errorf("store: execution %s: audit: %w", t.ID, err)
		}
		var rate recovery.RateStamp
		var rateJSON []byte
		if t.Rate != nil {
			rate = *t.Rate
			if rate.Runbook == "" {
				rate.Runbook = e.Runbook
			}
			if rate.ExecutionID == "" {
				rate.ExecutionID = t.ID
			}
			if rate.At.IsZero() {
				rate.At = t.At
			}
			if rate.At.IsZero() {
				return fmt.Errorf("store: transition %s: rate stamp has no time", t.ID)
			}
			if rateJSON, err = json.Marshal(rate); err != nil {
				return fmt.Errorf("store: execution %s: rate: %w", t.ID, err)
			}
		}

		if err := putExecution(tx, t.ID, execJSON, e.Open()); err != nil {
			return dirty(err)
		}
		if _, err := appendAudit(tx, encoded{owner: t.ID, json: audit}); err != nil {
			return dirty(err)
		}
		if err := appendOutbox(tx, outbox); err != nil {
			return dirty(err)
		}
		if t.Rate != nil {
			if err := putRate(tx, rate, rateJSON); err != nil {
				return dirty(err)
			}
		}
		if t.Dedup != nil {
			if err := putDedup(tx, t.Dedup.Key, dedupJSON); err != nil {
				return dirty(err)
			}
		}
		result = e
		return nil
	})
	if len(bads) > 0 {
		db.setAside(ctx, bads)
	}
	if err != nil {
		return recovery.Execution{}, err
	}
	return result, nil
}

// AckOutbox deletes delivered notifications; seqs that are gone already are
// fine (a retry after a lost answer acks twice).
func (db *DB) AckOutbox(ctx context.Context, seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	return db.submit(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		for _, s := range seqs {
			if err := b.Delete(seqKey(s)); err != nil {
				return dirty(err)
			}
		}
		return nil
	})
}

// PutSetting stores value under key, durably.
func (db *DB) PutSetting(ctx context.Context, key string, value []byte) error {
	if key == "" {
		return errors.New("store: setting has no key")
	}
	value = bytes.Clone(value) // the caller may reuse it before the writer runs
	if value == nil {
		value = []byte{}
	}
	return db.submit(ctx, func(tx *bolt.Tx) error {
		return dirty(tx.Bucket(bucketSettings).Put([]byte(key), value))
	})
}

// CheckTransition is what every Store's Transition requires of t before
// looking at the execution: an id, some From states, a known To state, a
// dedup entry (when there is one) with a key.
func CheckTransition(t recovery.Transition) error {
	switch {
	case t.ID == "":
		return errors.New("transition: no execution id")
	case len(t.From) == 0:
		return fmt.Errorf("transition %s: no From states", t.ID)
	case !t.To.Valid():
		return fmt.Errorf("transition %s: unknown state %q", t.ID, t.To)
	case t.Dedup != nil && t.Dedup.Key == "":
		return fmt.Errorf("transition %s: dedup entry has no key", t.ID)
	}
	return nil
}

// CheckAccepted is what every Store's Accept requires of a before writing
// anything: an event id, an execution (when there is one) with an id and a
// known state, a dedup entry (when there is one) with a key.
func CheckAccepted(a recovery.Accepted) error {
	eventID := a.Event.Event.ID
	if eventID == "" {
		return errors.New("accept: event has no id")
	}
	if x := a.Execution; x != nil {
		if x.ID == "" {
			return fmt.Errorf("accept %s: execution has no id", eventID)
		}
		if !x.State.Valid() {
			return fmt.Errorf("accept %s: execution %s has unknown state %q", eventID, x.ID, x.State)
		}
	}
	if a.Dedup != nil && a.Dedup.Key == "" {
		return fmt.Errorf("accept %s: dedup entry has no key", eventID)
	}
	return nil
}

// AcceptAudit returns a's audit records with Accept's defaults: Seq 0 (the
// store assigns it), the execution's id and the event's id when they have none,
// and the event's ReceivedAt for a zero At. Every Store implementation calls it.
func AcceptAudit(a recovery.Accepted) []recovery.AuditRecord {
	out := make([]recovery.AuditRecord, len(a.Audit))
	for i, r := range a.Audit {
		r.Seq = 0
		if r.ExecutionID == "" && a.Execution != nil {
			r.ExecutionID = a.Execution.ID
		}
		if r.EventID == "" {
			r.EventID = a.Event.Event.ID
		}
		if r.At.IsZero() {
			r.At = a.Event.ReceivedAt
		}
		out[i] = r
	}
	return out
}

// encoded is a record marshalled with Seq 0, and the execution it belongs to.
type encoded struct {
	owner string
	json  []byte
}

// EncodeOutbox marshals ns with Seq 0 (see WithSeq) and the outbox defaults:
// execID for a message with none (except a channel-wide "notice"), at for a
// zero At. Every Store implementation calls it.
func EncodeOutbox(ns []recovery.Notification, execID string, at time.Time) ([][]byte, error) {
	out := make([][]byte, len(ns))
	for i, n := range ns {
		n.Seq = 0
		// A "notice" is a channel-wide message (a summary, the breaker) even
		// when written with a plan: it is never filed under that plan.
		if n.ExecutionID == "" && n.Kind != "notice" {
			n.ExecutionID = execID
		}
		if n.At.IsZero() {
			n.At = at
		}
		b, err := json.Marshal(n)
		if err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
		out[i] = b
	}
	return out, nil
}

func putExecution(tx *bolt.Tx, id string, v []byte, open bool) error {
	if err := tx.Bucket(bucketExecutions).Put([]byte(id), v); err != nil {
		return err
	}
	if open {
		return tx.Bucket(bucketOpen).Put([]byte(id), nil)
	}
	return tx.Bucket(bucketOpen).Delete([]byte(id))
}

// appendAudit appends one record, indexed under its execution if it has one.
func appendAudit(tx *bolt.Tx, r encoded) (uint64, error) {
	b := tx.Bucket(bucketAudit)
	b.FillPercent = 1 // append-only: fill pages instead of splitting them in half
	seq, err := b.NextSequence()
	if err != nil {
		return 0, err
	}
	key := seqKey(seq)
	if err := b.Put(key, WithSeq(r.json, seq)); err != nil {
		return 0, err
	}
	if r.owner == "" {
		return seq, nil
	}
	return seq, tx.Bucket(bucketAuditIdx).Put(append([]byte(r.owner), key...), nil)
}

func appendOutbox(tx *bolt.Tx, msgs [][]byte) error {
	if len(msgs) == 0 {
		return nil
	}
	b := tx.Bucket(bucketOutbox)
	b.FillPercent = 1
	for _, m := range msgs {
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		if err := b.Put(seqKey(seq), WithSeq(m, seq)); err != nil {
			return err
		}
	}
	return nil
}

// putRate records a stamp and prunes the same runbook's stamps older than
// RateKeep before it. Keys sort by runbook, then time.
func putRate(tx *bolt.Tx, r recovery.RateStamp, v []byte) error {
	b := tx.Bucket(bucketRate)
	prefix := append([]byte(r.Runbook), 0)
	cutoff := rateKey(r.Runbook, r.At.Add(-RateKeep), "")
	var stale [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && bytes.Compare(k, cutoff) < 0; k, _ = c.Next() {
		stale = append(stale, bytes.Clone(k))
	}
	// Deleting after the scan: deleting under a moving bbolt cursor skips keys.
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return b.Put(rateKey(r.Runbook, r.At, r.ExecutionID), v)
}

func rateKey(runbook string, at time.Time, id string) []byte {
	k := make([]byte, 0, len(runbook)+1+8+len(id))
	k = append(k, runbook...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, uint64(at.UnixNano()))
	return append(k, id...)
}

// putDedup writes an entry, or deletes the key when v is nil (empty PlanID).
func putDedup(tx *bolt.Tx, key string, v []byte) error {
	b := tx.Bucket(bucketDedup)
	if v == nil {
		return b.Delete([]byte(key))
	}
	return b.Put([]byte(key), v)
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// WithSeq puts seq into JSON marshalled with Seq 0. Seq is the first field of
// AuditRecord and Notification, so the JSON starts with {"seq":0,. The key
// stays the authority: readers take Seq from it, so a layout this does not
// recognise is stored as is and still read right.
func WithSeq(b []byte, seq uint64) []byte {
	const zero = `{"seq":0,`
	if !bytes.HasPrefix(b, []byte(zero)) {
		return b
	}
	out := make([]byte, 0, len(b)+20)
	out = append(out, `{"seq":`...)
	out = strconv.AppendUint(out, seq, 10)
	out = append(out, ',')
	return append(out, b[len(zero):]...)
}

// Mutate runs the caller's edit; a panic in it fails this transition only
// instead of killing the writer and every other write with it.
func Mutate(fn func(*recovery.Execution) error, e *recovery.Execution) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("mutate panicked: %v", p)
		}
	}()
	return fn(e)
}

func contains(states []recovery.State, s recovery.State) bool {
	for _, x := range states {
		if x == s {
			return true
		}
	}
	return false
}
