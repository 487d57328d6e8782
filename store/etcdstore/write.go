package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
)

// Accept writes an intake decision in one transaction, with store.DB.Accept's
// meaning and defaults (store.AcceptAudit, store.EncodeOutbox): the event
// record, the execution with its audit records and outbox messages, the dedup
// entry, and a repeat of RepeatOf. It returns recovery.ErrDuplicate, writing
// nothing, when the event id was accepted before or the execution id exists,
// and ErrTooLarge, writing nothing, when it needs more than one etcd
// transaction holds.
func (s *Store) Accept(ctx context.Context, a recovery.Accepted) error {
	if err := store.CheckAccepted(a); err != nil {
		return fmt.Errorf("etcdstore: %w", err)
	}
	eventID, execID := a.Event.Event.ID, ""
	if a.Execution != nil {
		execID = a.Execution.ID
	}
	eventJSON, err := json.Marshal(a.Event)
	if err != nil {
		return fmt.Errorf("etcdstore: accept %s: %w", eventID, err)
	}
	var execJSON []byte
	if a.Execution != nil {
		if execJSON, err = json.Marshal(a.Execution); err != nil {
			return fmt.Errorf("etcdstore: accept %s: execution %s: %w", eventID, execID, err)
		}
	}
	audits, err := encodeAudit(store.AcceptAudit(a))
	if err != nil {
		return fmt.Errorf("etcdstore: accept %s: %w", eventID, err)
	}
	outbox, err := store.EncodeOutbox(a.Outbox, execID, a.Event.ReceivedAt)
	if err != nil {
		return fmt.Errorf("etcdstore: accept %s: %w", eventID, err)
	}
	var dedupJSON []byte
	if a.Dedup != nil && a.Dedup.PlanID != "" {
		if dedupJSON, err = json.Marshal(a.Dedup); err != nil {
			return fmt.Errorf("etcdstore: accept %s: dedup: %w", eventID, err)
		}
	}
	open := a.Execution != nil && a.Execution.Open()

	return s.submit(ctx, func(v *view) error {
		// Preconditions first: an op that fails stages nothing.
		if err := v.absent(s.eventKey(eventID), fmt.Errorf("etcdstore: event %s: %w", eventID, recovery.ErrDuplicate)); err != nil {
			return err
		}
		if a.Execution != nil {
			if err := v.absent(s.execKey(execID), fmt.Errorf("etcdstore: execution %s: %w", execID, recovery.ErrDuplicate)); err != nil {
				return err
			}
		}
		v.put(s.eventKey(eventID), eventJSON)
		if a.Execution != nil {
			s.putExecution(v, execID, execJSON, open)
		}
		if a.RepeatOf != "" {
			// One key per duplicate event, counted on read: no read here, and
			// right even before the plan it folds into is written.
			v.put(s.repeatPrefix(a.RepeatOf)+eventID, nil)
		}
		s.appendAudit(v, audits)
		s.appendOutbox(v, outbox)
		if a.Dedup != nil {
			s.putDedup(v, a.Dedup.Key, dedupJSON)
		}
		return nil
	})
}

// Record appends audit records and outbox notifications in one transaction;
// nothing else is written. Zero At fields become now.
func (s *Store) Record(ctx context.Context, audit []recovery.AuditRecord, outbox []recovery.Notification) error {
	now := s.now()
	recs := slices.Clone(audit)
	for i := range recs {
		recs[i].Seq = 0
		if recs[i].At.IsZero() {
			recs[i].At = now
		}
	}
	audits, err := encodeAudit(recs)
	if err != nil {
		return fmt.Errorf("etcdstore: record: %w", err)
	}
	msgs, err := store.EncodeOutbox(outbox, "", now)
	if err != nil {
		return fmt.Errorf("etcdstore: record: %w", err)
	}
	return s.submit(ctx, func(v *view) error {
		s.appendAudit(v, audits)
		s.appendOutbox(v, msgs)
		return nil
	})
}

// Transition moves one execution from one of t.From to t.To, compare-and-set,
// in one transaction with its audit record, outbox messages, rate stamp and
// dedup entry, and returns the execution as saved: store.DB.Transition's
// meaning, errors and defaults. Errors, each writing nothing:
// recovery.ErrNotFound, *recovery.MoveError, store.ErrNotAllowed, t.Mutate's
// error, recovery.ErrFenced, ErrTooLarge.
func (s *Store) Transition(ctx context.Context, t recovery.Transition) (recovery.Execution, error) {
	if err := store.CheckTransition(t); err != nil {
		return recovery.Execution{}, fmt.Errorf("etcdstore: %w", err)
	}
	outbox, err := store.EncodeOutbox(t.Outbox, t.ID, t.At)
	if err != nil {
		return recovery.Execution{}, fmt.Errorf("etcdstore: transition %s: %w", t.ID, err)
	}
	var dedupJSON []byte
	if t.Dedup != nil && t.Dedup.PlanID != "" {
		if dedupJSON, err = json.Marshal(t.Dedup); err != nil {
			return recovery.Execution{}, fmt.Errorf("etcdstore: transition %s: dedup: %w", t.ID, err)
		}
	}

	var result recovery.Execution // read only after submit answers
	err = s.submit(ctx, func(v *view) error {
		raw, found, err := v.get(s.execKey(t.ID))
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("etcdstore: execution %s: %w", t.ID, recovery.ErrNotFound)
		}
		var e recovery.Execution
		if err := json.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("etcdstore: execution %s cannot be decoded (%v): %w", t.ID, err, recovery.ErrNotFound)
		}
		from := e.State
		if !slices.Contains(t.From, from) {
			return &recovery.MoveError{ID: t.ID, From: t.From[0], To: t.To, Actual: from}
		}
		if !recovery.CanMove(from, t.To) {
			return fmt.Errorf("etcdstore: execution %s: %s → %s: %w", t.ID, from, t.To, store.ErrNotAllowed)
		}
		version := e.Version
		if t.Mutate != nil {
			if err := store.Mutate(t.Mutate, &e); err != nil {
				return fmt.Errorf("etcdstore: transition %s: %w", t.ID, err)
			}
		}
		e.ID = t.ID
		e.State = t.To
		e.Version = version + 1
		e.UpdatedAt = t.At
		execJSON, err := json.Marshal(&e)
		if err != nil {
			return fmt.Errorf("etcdstore: execution %s: %w", t.ID, err)
		}
		audit, err := encodeAudit([]recovery.AuditRecord{{
			At: t.At, ExecutionID: t.ID, Actor: t.Actor,
			From: from, To: t.To, Reason: t.Reason, Plan: &e,
		}})
		if err != nil {
			return fmt.Errorf("etcdstore: execution %s: %w", t.ID, err)
		}
		if t.Rate != nil {
			rate := *t.Rate
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
				return fmt.Errorf("etcdstore: transition %s: rate stamp has no time", t.ID)
			}
			rateJSON, err := json.Marshal(rate)
			if err != nil {
				return fmt.Errorf("etcdstore: execution %s: rate: %w", t.ID, err)
			}
			if err := s.putRate(v, rate, rateJSON); err != nil {
				return err
			}
		}
		s.putExecution(v, t.ID, execJSON, e.Open())
		s.appendAudit(v, audit)
		s.appendOutbox(v, outbox)
		if t.Dedup != nil {
			s.putDedup(v, t.Dedup.Key, dedupJSON)
		}
		result = e
		return nil
	})
	if err != nil {
		return recovery.Execution{}, err
	}
	return result, nil
}

// AckOutbox deletes delivered notifications; seqs that are gone already are
// fine.
func (s *Store) AckOutbox(ctx context.Context, seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	return s.submit(ctx, func(v *view) error {
		for _, q := range seqs {
			v.del(s.outboxKey(q))
		}
		return nil
	})
}

// DeadLetter moves outbox notification seq to the dead letters with reason,
// in one transaction. A seq no longer in the outbox is not an error.
func (s *Store) DeadLetter(ctx context.Context, seq uint64, reason string) error {
	at := s.now()
	return s.submit(ctx, func(v *view) error {
		raw, found, err := v.get(s.outboxKey(seq))
		if err != nil || !found {
			return err
		}
		j, err := json.Marshal(struct {
			Notification json.RawMessage `json:"notification"`
			Reason       string          `json:"reason"`
			At           time.Time       `json:"at"`
		}{json.RawMessage(raw), reason, at})
		if err != nil {
			return fmt.Errorf("etcdstore: dead letter %d: %w", seq, err)
		}
		v.put(s.deadKey(seq), j)
		v.del(s.outboxKey(seq))
		return nil
	})
}

// PutSetting stores value under key.
func (s *Store) PutSetting(ctx context.Context, key string, value []byte) error {
	if key == "" {
		return errors.New("etcdstore: setting has no key")
	}
	value = slices.Clone(value)
	return s.submit(ctx, func(v *view) error {
		v.put(s.settingKey(key), value)
		return nil
	})
}

// encoded is an audit record marshalled with Seq 0, and its execution.
type encoded struct {
	owner string
	json  []byte
}

func encodeAudit(recs []recovery.AuditRecord) ([]encoded, error) {
	out := make([]encoded, len(recs))
	for i, r := range recs {
		r.Seq = 0
		b, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		out[i] = encoded{owner: r.ExecutionID, json: b}
	}
	return out, nil
}

func (s *Store) putExecution(v *view, id string, j []byte, open bool) {
	v.put(s.execKey(id), j)
	if open {
		v.put(s.openKey(id), nil)
	} else {
		v.del(s.openKey(id))
	}
}

func (s *Store) appendAudit(v *view, recs []encoded) {
	for _, r := range recs {
		seq := v.nextAudit()
		v.put(s.auditKey(seq), store.WithSeq(r.json, seq))
		if r.owner != "" {
			v.put(s.auditIdxPrefix(r.owner)+hex16(seq), nil)
		}
	}
}

func (s *Store) appendOutbox(v *view, msgs [][]byte) {
	for _, m := range msgs {
		seq := v.nextOutbox()
		v.put(s.outboxKey(seq), store.WithSeq(m, seq))
	}
}

// putRate records a stamp and prunes the same runbook's stamps older than
// store.RateKeep before it.
func (s *Store) putRate(v *view, r recovery.RateStamp, j []byte) error {
	stale, err := v.keys(s.ratePrefix(r.Runbook), s.rateKey(r.Runbook, r.At.Add(-store.RateKeep), ""))
	if err != nil {
		return err
	}
	for _, k := range stale {
		v.del(k)
	}
	v.put(s.rateKey(r.Runbook, r.At, r.ExecutionID), j)
	return nil
}

// putDedup writes an entry, or deletes the key when j is nil (empty PlanID).
func (s *Store) putDedup(v *view, key string, j []byte) {
	if j == nil {
		v.del(s.dedupKey(key))
		return
	}
	v.put(s.dedupKey(key), j)
}
