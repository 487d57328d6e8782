package store_test

import (
	"path/filepath"
	"testing"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
	"github.com/recoverbot/recoverbot/store/storetest"
)

// TestConformance runs the recovery.Store suite against bbolt.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) recovery.Store {
		db, err := store.Open(filepath.Join(t.TempDir(), "recoverbot.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

// TestRetentionConformance runs the retention suite against bbolt.
func TestRetentionConformance(t *testing.T) {
	storetest.RunRetention(t, func(t *testing.T) storetest.Sweeper {
		db, err := store.Open(filepath.Join(t.TempDir(), "recoverbot.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}
