package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/recoverbot/recoverbot/recovery"
	bolt "go.etcd.io/bbolt"
)

// These tests call commit directly with a batch they build, so the ops are
// certain to share one transaction (the writer goroutine only ever commits
// other batches; bbolt serialises the two).

func openInternal(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "recoverbot.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// put is an op writing key=key in settings, or failing as told.
func put(key string, fail error, dirtyFail bool) op {
	return func(tx *bolt.Tx) error {
		if fail != nil && !dirtyFail {
			return fail // before writing: a clean failure
		}
		if err := tx.Bucket(bucketSettings).Put([]byte(key), []byte(key)); err != nil {
			return dirty(err)
		}
		if fail != nil {
			return dirty(fail) // after writing: the batch must be redone without it
		}
		return nil
	}
}

func newRequest(o op) *request { return &request{op: o, done: make(chan error, 1)} }

func settingKeys(t *testing.T, db *DB) []string {
	t.Helper()
	var keys []string
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSettings).ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestCommitIsolation(t *testing.T) {
	db := openInternal(t)
	errClean, errDirty := errors.New("precondition"), errors.New("after write")
	batch := []*request{
		newRequest(put("a", nil, false)),
		newRequest(put("b", errClean, false)),
		newRequest(put("c", nil, false)),
		newRequest(put("d", errDirty, true)),
		newRequest(put("e", nil, false)),
		newRequest(put("f", errDirty, true)),
	}
	db.commit(batch)
	want := []error{nil, errClean, nil, errDirty, nil, errDirty}
	for i, r := range batch {
		if got := <-r.done; !errors.Is(got, want[i]) || (want[i] == nil) != (got == nil) {
			t.Errorf("op %d: got %v, want %v", i, got, want[i])
		}
	}
	got := settingKeys(t, db)
	if len(got) != 3 || got[0] != "a" || got[1] != "c" || got[2] != "e" {
		t.Errorf("written: got %v, want [a c e] (failed ops, dirty or not, leave nothing)", got)
	}
}

func TestCommitFailureFailsEveryOp(t *testing.T) {
	db := openInternal(t)
	errDisk := errors.New("fsync: input/output error")
	// Run the transaction, then fail as a commit would: bbolt rolls it back.
	db.update = func(fn func(*bolt.Tx) error) error {
		tx, err := db.bolt.Begin(true)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := fn(tx); err != nil {
			return err
		}
		return errDisk
	}
	batch := []*request{newRequest(put("a", nil, false)), newRequest(put("b", nil, false))}
	db.commit(batch)
	for i, r := range batch {
		if err := <-r.done; !errors.Is(err, errDisk) {
			t.Errorf("op %d: got %v, want the commit error", i, err)
		}
	}
	if got := settingKeys(t, db); len(got) != 0 {
		t.Errorf("written: got %v, want nothing", got)
	}
}

func TestWithSeq(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"seq":0,"at":"x"}`, `{"seq":42,"at":"x"}`},
		{`{"at":"x","seq":0}`, `{"at":"x","seq":0}`}, // unknown layout: stored as is, key is the authority
	}
	for _, tt := range tests {
		if got := string(WithSeq([]byte(tt.in), 42)); got != tt.want {
			t.Errorf("WithSeq(%s): got %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestCloseDrainsQueuedWrites holds the writer inside a commit, queues writes
// behind it, starts Close, then lets the writer go: Close must commit and answer
// every queued write before it closes the file.
func TestCloseDrainsQueuedWrites(t *testing.T) {
	ctx := context.Background()
	db := openInternal(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var hold sync.Once
	db.update = func(fn func(*bolt.Tx) error) error {
		hold.Do(func() { close(entered); <-release })
		return db.bolt.Update(fn)
	}
	first := make(chan error, 1)
	go func() { first <- db.PutSetting(ctx, "first", []byte("v")) }()
	<-entered

	const n = 50
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- db.PutSetting(ctx, fmt.Sprint("queued-", i), []byte("v")) }()
	}
	for len(db.reqs) < n { // wait until all are queued behind the held commit
		runtime.Gosched()
	}
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	for !db.isClosed() { // Close has stopped intake and waits for the writer
		runtime.Gosched()
	}
	if err := db.PutSetting(ctx, "late", []byte("v")); !errors.Is(err, ErrClosed) {
		t.Errorf("write after Close began: got %v, want ErrClosed", err)
	}
	close(release)

	if err := <-first; err != nil {
		t.Errorf("held write: %v", err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("queued write: got %v, want committed", err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	db2, err := Open(db.path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if got := len(settingKeys(t, db2)); got != n+1 {
		t.Errorf("settings on disk: got %d, want %d", got, n+1)
	}
}

func (db *DB) isClosed() bool {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.closed
}

// TestCancelAfterHandoverGetsTheCommit: a caller whose ctx ends after its
// write was handed to the writer gets what the commit did, not ctx's error
// (issue #11 item 5: a caller told "cancelled" about a committed approval
// never ran it); a caller cancelled before the handover wrote nothing.
func TestCancelAfterHandoverGetsTheCommit(t *testing.T) {
	db := openInternal(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var hold sync.Once
	db.update = func(fn func(*bolt.Tx) error) error {
		hold.Do(func() { close(entered); <-release })
		return db.bolt.Update(fn)
	}
	first := make(chan error, 1)
	go func() { first <- db.PutSetting(context.Background(), "first", []byte("v")) }()
	<-entered

	ctx, cancel := context.WithCancel(context.Background())
	queued := make(chan error, 1)
	go func() { queued <- db.PutSetting(ctx, "queued", []byte("v")) }()
	for len(db.reqs) < 1 {
		runtime.Gosched()
	}
	cancel()
	if err := db.PutSetting(ctx, "never", []byte("v")); !errors.Is(err, context.Canceled) {
		t.Fatalf("write cancelled before the handover: got %v, want context.Canceled", err)
	}
	select {
	case err := <-queued:
		t.Fatalf("the queued write answered %v before its batch committed", err)
	default:
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-queued; err != nil {
		t.Fatalf("queued write: got %v, want nil: it committed", err)
	}
	if v, err := db.Setting(context.Background(), "queued"); err != nil || string(v) != "v" {
		t.Errorf("queued write: got %q, %v; want it committed", v, err)
	}
	if _, err := db.Setting(context.Background(), "never"); !errors.Is(err, recovery.ErrNotFound) {
		t.Errorf("write cancelled before the handover: got %v, want not found", err)
	}
}
