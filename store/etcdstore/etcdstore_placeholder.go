package etcdstore

import (
	"context"
	"errors"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
)

// This file stands in for the etcd recovery.Store written on branch etcd, so
// the election and Serve's wiring compile before it lands; it is deleted at
// integration. Only the API the leader side uses is here, with that branch's
// signatures.

// Store is the etcd recovery.Store.
type Store struct {
	recovery.Store
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the store's clock.
func WithClock(now func() time.Time) Option { return func(*Store) {} }

// WithLog sets the store's logger.
func WithLog(log *slog.Logger) Option { return func(*Store) {} }

// New returns the store kept under prefix, on cli.
func New(cli *clientv3.Client, prefix string, opts ...Option) (*Store, error) {
	return nil, errors.New("the etcd store is not in this build (branch etcd)")
}

// SetFence makes every later write compare key's create revision.
func (s *Store) SetFence(key string, createRevision int64) {}

// Close releases the store (not the client).
func (s *Store) Close() error { return nil }

// Retain deletes what retention allows, until ctx ends.
func (s *Store) Retain(ctx context.Context, r store.Retention) {}

// Counts reports the records set aside and the dead letters.
func (s *Store) Counts(ctx context.Context) (quarantined, deadLetters int, err error) {
	return 0, 0, nil
}
