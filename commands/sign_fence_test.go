package commands_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/recovery"
)

// keyStore has no signing key yet, and fences writes: another replica leads.
type keyStore struct {
	recovery.Store
	puts int
}

func (s *keyStore) Setting(context.Context, string) ([]byte, error) { return nil, recovery.ErrNotFound }

func (s *keyStore) PutSetting(context.Context, string, []byte) error {
	s.puts++
	return fmt.Errorf("put setting: %w", recovery.ErrFenced)
}

// A replica whose write of a new signing key is fenced does not sign with the
// key it made: only the key the leader stored signs buttons.
func TestLoadSignerRefusesAKeyItCouldNotStore(t *testing.T) {
	st := &keyStore{}
	s, err := commands.LoadSigner(context.Background(), st, "")
	if s != nil || !errors.Is(err, recovery.ErrFenced) {
		t.Fatalf("signer %v, err %v; want none and the fenced error", s, err)
	}
	if st.puts != 1 {
		t.Errorf("puts %d, want 1", st.puts)
	}
}
