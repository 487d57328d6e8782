// Package store is the bbolt implementation of recovery.Store: executions, the
// append-only audit log, accepted events, rate-limit stamps, dedup keys, the
// notification outbox and settings, in one file with a schema version.
//
// Every write goes through one writer goroutine that commits everything queued
// in one transaction (group commit, see writer.go). A write returns only after
// its transaction is fsynced, so the engine can persist, then act.
package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var _ recovery.Store = (*DB)(nil)

// SchemaVersion is the layout this build reads and writes, stored big-endian in
// bucket meta, key schema.
const SchemaVersion uint32 = 1

// lockTimeout bounds how long Open waits for another process's file lock.
const lockTimeout = time.Second

// Errors of this package. recovery.ErrNotFound and recovery.ErrDuplicate are
// returned (wrapped) for missing and repeated records.
var (
	// ErrNewerSchema: the file was written by a newer build; it is left untouched.
	ErrNewerSchema = errors.New("schema is newer than this build")
	// ErrLocked: another process (or another DB in this one) holds the file.
	ErrLocked = errors.New("locked by another process")
	// ErrClosed: the DB was closed.
	ErrClosed = errors.New("store: closed")
)

// Buckets.
var (
	bucketMeta       = []byte("meta")       // "schema" → uint32 BE
	bucketExecutions = []byte("executions") // execution id → JSON Execution
	bucketEvents     = []byte("events")     // event id → JSON EventRecord
	bucketAudit      = []byte("audit")      // seq BE → JSON AuditRecord
	bucketAuditIdx   = []byte("auditidx")   // execution id + seq BE → empty
	bucketOutbox     = []byte("outbox")     // seq BE → JSON Notification
	bucketRate       = []byte("rate")       // runbook 0x00 unixnano BE id → JSON RateStamp
	bucketDedup      = []byte("dedup")      // key → JSON DedupEntry
	bucketOpen       = []byte("open")       // execution id → empty, see IsOpen
	bucketSettings   = []byte("settings")   // key → value
	bucketRepeats    = []byte("repeats")    // execution id → uint64 BE duplicates folded in
	// Added within schema 1 (created at open, older files get them empty).
	bucketQuarantine  = []byte("quarantine")  // bucket 0x00 key → JSON Quarantined
	bucketDeadLetters = []byte("deadletters") // outbox seq BE → JSON DeadLetter

	allBuckets = [][]byte{bucketMeta, bucketExecutions, bucketEvents, bucketAudit,
		bucketAuditIdx, bucketOutbox, bucketRate, bucketDedup, bucketOpen, bucketSettings, bucketRepeats,
		bucketQuarantine, bucketDeadLetters}

	keySchema = []byte("schema")
)

// DB is a recovery.Store in one bbolt file. It is safe for concurrent use.
type DB struct {
	path string
	bolt *bolt.DB

	// update runs one write transaction; bolt.Update except in tests that make a
	// commit fail.
	update func(func(*bolt.Tx) error) error

	// mu guards closed and the send side of reqs: submitters hold it for reading
	// while they hand a request over, Close takes it for writing before closing
	// reqs, so no request is sent on a closed channel or left behind unanswered.
	mu     sync.RWMutex
	closed bool
	reqs   chan *request
	done   chan struct{} // closed when the writer has answered everything and exited

	closeOnce sync.Once
	closeErr  error

	now func() time.Time // the clock of quarantine and dead-letter stamps
	log *slog.Logger
}

// Option configures Open.
type Option func(*DB)

// WithClock sets where the store takes the time it stamps on quarantined
// records and dead letters (default time.Now).
func WithClock(now func() time.Time) Option { return func(db *DB) { db.now = now } }

// WithLog sets the logger of quarantined records and the retention sweep.
func WithLog(log *slog.Logger) Option { return func(db *DB) { db.log = log } }

// Open opens (creating it, its directory 0700 and the file 0600, if needed) the
// store at path and starts its writer. It fails with ErrLocked after about a
// second when another process has the file open, and with ErrNewerSchema when
// the file was written by a newer build.
func Open(path string, opts ...Option) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: lockTimeout,
		// The map freelist keeps allocation cheap as the file grows; the
		// writer's commit time is the intake's latency.
		FreelistType: bolt.FreelistMapType,
		// The freelist is rebuilt from the pages at open instead of written at
		// every commit: fewer pages per fsync, the same durability for the data.
		NoFreelistSync: true,
		// Room to grow before the first remap, which would stall every reader
		// and the writer.
		InitialMmapSize: 64 << 20,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s is %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := initSchema(b, path); err != nil {
		b.Close()
		return nil, err
	}
	db := &DB{
		path:   path,
		bolt:   b,
		update: b.Update,
		reqs:   make(chan *request, maxBatch),
		done:   make(chan struct{}),
		now:    time.Now,
		log:    slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(db)
	}
	go db.run()
	return db, nil
}

// initSchema checks the version before writing anything, so a newer file is
// refused untouched, then creates the buckets and stamps a new file.
func initSchema(b *bolt.DB, path string) error {
	var version uint32
	err := b.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		v := meta.Get(keySchema)
		if v == nil {
			return nil
		}
		if len(v) != 4 {
			return fmt.Errorf("store: %s: schema version is %d bytes, want 4", path, len(v))
		}
		version = binary.BigEndian.Uint32(v)
		return nil
	})
	if err != nil {
		return err
	}
	if version > SchemaVersion {
		return fmt.Errorf("store: %s has schema version %d, this build reads up to %d: %w",
			path, version, SchemaVersion, ErrNewerSchema)
	}
	// version < SchemaVersion and non-zero would be migrated here; 1 is the first.
	return b.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("store: %s: create bucket %s: %w", path, name, err)
			}
		}
		if version == 0 {
			return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion))
		}
		return nil
	})
}

// Path is the file the store lives in.
func (db *DB) Path() string { return db.path }

// Close waits for every write already handed to the writer to commit and be
// answered, stops the writer and closes the file. Writes submitted after Close
// began fail with ErrClosed. Calling Close again returns the first result.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.mu.Lock()
		db.closed = true
		close(db.reqs)
		db.mu.Unlock()
		<-db.done
		if err := db.bolt.Close(); err != nil {
			db.closeErr = fmt.Errorf("store: close %s: %w", db.path, err)
		}
	})
	return db.closeErr
}

// view runs a read-only transaction. Reads do not queue behind the writer: bbolt
// readers see the last committed state.
func (db *DB) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := db.bolt.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}
