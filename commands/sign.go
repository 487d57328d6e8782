package commands

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/recoverbot/recoverbot/recovery"
)

// Signer signs and checks button values. A value is "<plan id>.<mac>" where
// mac is HMAC-SHA256(key, action id, plan id) in unpadded base64url: a value
// copied from one button onto another, or with its plan id changed, fails.
// Slack itself authenticates socket-mode payloads; the MAC makes sure the bot
// acts only on values it produced, whatever path a payload took.
type Signer struct{ key []byte }

// MinKeyLen is the shortest RECOVERBOT_SIGNING_KEY accepted.
const MinKeyLen = 32

// ErrBadSignature is returned by Verify for a value the bot did not sign.
var ErrBadSignature = errors.New("button value signature does not match")

// NewSigner returns a signer with key (at least MinKeyLen bytes).
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("signing key must be at least %d bytes, got %d", MinKeyLen, len(key))
	}
	return &Signer{key: append([]byte(nil), key...)}, nil
}

// LoadSigner uses key when set (RECOVERBOT_SIGNING_KEY); otherwise the key kept
// in the store, generating and persisting one at first use, so buttons posted
// before a restart still work after it. Only the leader calls it (Slack runs
// there), and under an election its write is fenced: a replica that no longer
// leads cannot store a second key, and gets an error rather than signing with
// a key nobody else knows.
func LoadSigner(ctx context.Context, st recovery.Store, key string) (*Signer, error) {
	if key != "" {
		return NewSigner([]byte(key))
	}
	b, err := st.Setting(ctx, SettingSigningKey)
	switch {
	case err == nil:
		return NewSigner(b)
	case !errors.Is(err, recovery.ErrNotFound):
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	b = make([]byte, 32)
	_, _ = rand.Read(b) // never fails on Linux (Go 1.24+ panics instead)
	if err := st.PutSetting(ctx, SettingSigningKey, b); err != nil {
		return nil, fmt.Errorf("persist signing key: %w", err)
	}
	return NewSigner(b)
}

func (s *Signer) mac(actionID, planID string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(actionID))
	m.Write([]byte{0})
	m.Write([]byte(planID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Sign returns the button value for actionID on planID.
func (s *Signer) Sign(actionID, planID string) string {
	return planID + "." + s.mac(actionID, planID)
}

// Verify returns the plan id of a value signed for actionID, or
// ErrBadSignature. The comparison is constant-time.
func (s *Signer) Verify(actionID, value string) (string, error) {
	i := strings.LastIndexByte(value, '.')
	if i <= 0 || i == len(value)-1 {
		return "", ErrBadSignature
	}
	planID, got := value[:i], value[i+1:]
	if !hmac.Equal([]byte(got), []byte(s.mac(actionID, planID))) {
		return "", ErrBadSignature
	}
	return planID, nil
}
