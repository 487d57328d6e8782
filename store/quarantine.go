package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Quarantine.
//
// A record that cannot be decoded (garbage bytes, or JSON nested deeper than
// encoding/json reads back) must not stop the bot: a scan that meets one skips
// it, and then moves it, key and bytes, out of its bucket into bucketQuarantine
// in one write transaction, logged once, where an operator can read it
// (Quarantine, GET /v1/quarantine, `recoverbot quarantine`). Every later scan,
// the outbox and start-up run as if it were never written. An execution set
// aside leaves the open index too: start-up cannot resume what it cannot read.

// Quarantined is a record set aside because it could not be decoded.
type Quarantined struct {
	Bucket string    `json:"bucket"`
	Key    string    `json:"key"` // a seq in decimal for audit and outbox, else the key as is
	At     time.Time `json:"at"`  // when it was set aside
	Err    string    `json:"error"`
	Size   int       `json:"size"`            // bytes of the value
	Value  []byte    `json:"value,omitempty"` // the value as stored; Quarantine leaves it out
}

// bad is an undecodable record met by a read, to be set aside after it.
type bad struct {
	bucket   []byte
	key, val []byte
	err      error
}

// badList collects undecodable records during a read transaction; its values
// are copies, valid after the transaction.
type badList []bad

func (l *badList) add(bucket, k, v []byte, err error) {
	*l = append(*l, bad{bucket: bucket, key: bytes.Clone(k), val: bytes.Clone(v), err: err})
}

// quarantineKey is bucket name, 0x00, record key: sorted by bucket, unique.
func quarantineKey(bucket, key []byte) []byte {
	k := make([]byte, 0, len(bucket)+1+len(key))
	k = append(append(k, bucket...), 0)
	return append(k, key...)
}

// displayKey is a record key a person can read.
func displayKey(bucket, key []byte) string {
	switch {
	case (bytes.Equal(bucket, bucketAudit) || bytes.Equal(bucket, bucketOutbox) ||
		bytes.Equal(bucket, bucketDeadLetters)) && len(key) == 8:
		return strconv.FormatUint(binary.BigEndian.Uint64(key), 10)
	}
	q := strconv.Quote(string(key))
	return q[1 : len(q)-1]
}

// setAside moves bads into the quarantine bucket, each only if it still holds
// the bytes the reader saw (a concurrent write may have replaced or removed
// it). It is called after the read's transaction ended, and even when the
// reader's ctx is done: the next reader must not meet the record again. A
// failure is logged; the reader's answer does not depend on it.
func (db *DB) setAside(ctx context.Context, bads badList) {
	if len(bads) == 0 {
		return
	}
	now := db.now()
	var moved []Quarantined // read after submit answers
	err := db.submit(context.WithoutCancel(ctx), func(tx *bolt.Tx) error {
		moved = moved[:0]
		q := tx.Bucket(bucketQuarantine)
		for _, b := range bads {
			src := tx.Bucket(b.bucket)
			k, v := src.Cursor().Seek(b.key)
			if k == nil || !bytes.Equal(k, b.key) || !bytes.Equal(v, b.val) {
				continue // gone or rewritten since the read
			}
			rec := Quarantined{Bucket: string(b.bucket), Key: displayKey(b.bucket, b.key), At: now,
				Err: b.err.Error(), Size: len(b.val), Value: b.val}
			j, err := json.Marshal(rec)
			if err != nil {
				return fmt.Errorf("store: quarantine %s %s: %w", rec.Bucket, rec.Key, err)
			}
			if err := q.Put(quarantineKey(b.bucket, b.key), j); err != nil {
				return dirty(err)
			}
			if err := src.Delete(b.key); err != nil {
				return dirty(err)
			}
			if bytes.Equal(b.bucket, bucketExecutions) {
				if err := tx.Bucket(bucketOpen).Delete(b.key); err != nil {
					return dirty(err)
				}
			}
			rec.Value = nil
			moved = append(moved, rec)
		}
		return nil
	})
	if err != nil {
		db.log.Error("could not set aside undecodable records; reads skip them meanwhile", "component", "store", "records", len(bads), "err", err)
		return
	}
	for _, r := range moved {
		db.log.Error("store record cannot be decoded: quarantined, see `recoverbot quarantine`",
			"component", "store", "bucket", r.Bucket, "key", r.Key, "size", r.Size, "err", r.Err)
	}
}

// Quarantine lists the records set aside, by bucket then key, without their
// values.
func (db *DB) Quarantine(ctx context.Context) ([]Quarantined, error) {
	var out []Quarantined
	err := db.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQuarantine).ForEach(func(k, v []byte) error {
			var q Quarantined
			if err := json.Unmarshal(v, &q); err != nil {
				// Written by setAside, so decodable; never fail the listing.
				i := bytes.IndexByte(k, 0)
				q = Quarantined{Err: "quarantine record: " + err.Error(), Size: len(v)}
				if i >= 0 {
					q.Bucket, q.Key = string(k[:i]), displayKey(k[:i], k[i+1:])
				}
			}
			q.Value = nil
			out = append(out, q)
			return nil
		})
	})
	return out, err
}

// Counts says how many records are quarantined and how many notifications are
// dead-lettered, for the metrics.
func (db *DB) Counts(ctx context.Context) (quarantined, deadLetters int, err error) {
	err = db.view(ctx, func(tx *bolt.Tx) error {
		quarantined = tx.Bucket(bucketQuarantine).Stats().KeyN
		deadLetters = tx.Bucket(bucketDeadLetters).Stats().KeyN
		return nil
	})
	return quarantined, deadLetters, err
}
