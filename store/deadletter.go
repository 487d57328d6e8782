package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	bolt "go.etcd.io/bbolt"
)

// DeadLetter is an outbox notification the courier gave up on.
type DeadLetter struct {
	Notification recovery.Notification `json:"notification"`
	Reason       string                `json:"reason"`
	At           time.Time             `json:"at"` // when it was given up
}

// DeadLetter moves outbox notification seq to the dead letters with reason, in
// one transaction, so the notifications behind it are delivered. A seq no
// longer in the outbox (acked meanwhile) is not an error.
func (db *DB) DeadLetter(ctx context.Context, seq uint64, reason string) error {
	at := db.now()
	return db.submit(ctx, func(tx *bolt.Tx) error {
		out := tx.Bucket(bucketOutbox)
		key := seqKey(seq)
		v := out.Get(key)
		if v == nil {
			return nil
		}
		j, err := json.Marshal(struct {
			Notification json.RawMessage `json:"notification"`
			Reason       string          `json:"reason"`
			At           time.Time       `json:"at"`
		}{json.RawMessage(v), reason, at})
		if err != nil {
			// Not valid JSON: the outbox read quarantines it instead.
			return fmt.Errorf("store: dead letter %d: %w", seq, err)
		}
		if err := tx.Bucket(bucketDeadLetters).Put(key, j); err != nil {
			return dirty(err)
		}
		return dirty(out.Delete(key))
	})
}

// DeadLetters returns the notifications given up on, oldest first.
func (db *DB) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	var out []DeadLetter
	var bads badList
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDeadLetters).ForEach(func(k, v []byte) error {
			var d DeadLetter
			if err := json.Unmarshal(v, &d); err != nil {
				bads.add(bucketDeadLetters, k, v, err)
				return nil
			}
			if len(k) == 8 {
				d.Notification.Seq = binary.BigEndian.Uint64(k)
			}
			out = append(out, d)
			return nil
		})
	})
	db.setAside(ctx, bads)
	return out, err
}
