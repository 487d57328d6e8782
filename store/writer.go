package store

import (
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Group commit.
//
// A durable bbolt commit costs about two fsyncs (~0.4 ms each here), so one
// transaction per write caps the intake near 2,500 writes/s. bbolt's DB.Batch
// groups writers but waits up to MaxBatchDelay (10 ms) to gather them, which
// bounds throughput at (concurrent writers / 10 ms) and adds that delay to every
// write. Instead one writer goroutine takes whatever is queued the moment it is
// free, applies it all in one transaction, commits once and answers everyone:
// a lone write commits at once, and under load each fsync carries as many writes
// as arrived during the previous one.
//
// Each op checks all its preconditions (compare-and-set state, duplicate ids,
// existence) before it writes anything, so an op that fails writes nothing and
// the rest of its transaction commits. An op that fails after it started writing
// returns a dirtyError; the transaction is then rolled back and redone without
// it. If the commit itself fails, every op in it gets that error.

// maxBatch caps the ops in one transaction, bounding its size and the time the
// first op waits for the last.
const maxBatch = 2000

// op is one write. It runs inside the writer's transaction and may run more than
// once (when its batch is redone), so it must derive everything from tx and the
// values it captured, and leave its result only in variables its submitter reads
// after the answer.
type op func(tx *bolt.Tx) error

type request struct {
	op   op
	done chan error // buffered: the writer never blocks on a submitter that left
}

// dirtyError marks a failure after an op had written: the transaction must be
// rolled back for the other ops' sake.
type dirtyError struct{ err error }

func (e *dirtyError) Error() string { return e.err.Error() }
func (e *dirtyError) Unwrap() error { return e.err }

// dirty wraps err (if not nil) as a failure after writing.
func dirty(err error) error {
	if err == nil {
		return nil
	}
	return &dirtyError{err}
}

// errRedo rolls back a transaction to redo it without a dirty op.
var errRedo = errors.New("store: redo batch")

// submit hands op to the writer and returns what the commit did. ctx bounds
// only the wait to hand it over: once the writer has the op it may commit, and
// a caller told "cancelled" about a write that committed would act on a state
// the store does not have (an approval committed but never run, a plan
// committed while its reservations were undone). So after the handover submit
// waits for the answer, whatever happens to ctx; the writer answers every op
// it received, Close included, and one batch is bounded (maxBatch).
func (db *DB) submit(ctx context.Context, o op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{op: o, done: make(chan error, 1)}
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return ErrClosed
	}
	select {
	case db.reqs <- r:
		db.mu.RUnlock()
	case <-ctx.Done():
		db.mu.RUnlock()
		return ctx.Err() // never handed over: nothing was written
	}
	return <-r.done
}

// run is the writer: it commits what is queued, as soon as it is queued, until
// Close closes reqs and everything sent before is answered.
func (db *DB) run() {
	defer close(db.done)
	batch := make([]*request, 0, maxBatch)
	for {
		r, ok := <-db.reqs
		if !ok {
			return
		}
		batch = append(batch[:0], r)
	drain:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-db.reqs:
				if !ok {
					break drain // closed: commit these; the next receive ends the loop
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		db.commit(batch)
		clear(batch) // let answered requests be collected
	}
}

// commit applies batch in one transaction and answers every request.
func (db *DB) commit(batch []*request) {
	errs := make([]error, len(batch))
	excluded := make([]bool, len(batch)) // dirty ops, answered with their error
	for {
		err := db.update(func(tx *bolt.Tx) error {
			for i, r := range batch {
				if excluded[i] {
					continue
				}
				errs[i] = r.op(tx)
				var d *dirtyError
				if errors.As(errs[i], &d) {
					excluded[i] = true
					errs[i] = d.err
					return errRedo
				}
			}
			return nil
		})
		if errors.Is(err, errRedo) {
			continue // each redo drops one op, so this ends
		}
		if err != nil {
			err = fmt.Errorf("store: commit: %w", err)
			for i := range batch {
				if !excluded[i] {
					errs[i] = err
				}
			}
		}
		break
	}
	for i, r := range batch {
		r.done <- errs[i]
	}
}
