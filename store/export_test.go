package store

import bolt "go.etcd.io/bbolt"

// WithoutFsync skips fsync: for tests that measure space, not durability.
func WithoutFsync() Option { return func(db *DB) { db.bolt.NoSync = true } }

// HighWater is the size of the file's used pages: bbolt's high-water mark,
// which grows only when no freed page can be reused.
func (db *DB) HighWater() int64 {
	var n int64
	_ = db.bolt.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}
