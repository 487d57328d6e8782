package commands

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
)

func TestSignerRefusesAlteredValues(t *testing.T) {
	s := testSigner(t)
	good := s.Sign(ActionApprove, "PLAN1")
	other, _ := NewSigner([]byte(strings.Repeat("k", 32)))
	for _, c := range []struct {
		name, action, value string
		ok                  bool
	}{
		{"signed for this action", ActionApprove, good, true},
		{"plan id changed", ActionApprove, "PLAN2" + good[len("PLAN1"):], false},
		{"mac changed", ActionApprove, good[:len(good)-1] + "A", false},
		{"copied from the details button", ActionApprove, s.Sign(ActionDetails, "PLAN1"), false},
		{"signed with another key", ActionApprove, other.Sign(ActionApprove, "PLAN1"), false},
		{"bare plan id", ActionApprove, "PLAN1", false},
		{"empty", ActionApprove, "", false},
		{"only a dot", ActionApprove, ".", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, err := s.Verify(c.action, c.value)
			if c.ok && (err != nil || id != "PLAN1") {
				t.Errorf("Verify = %q, %v; want PLAN1", id, err)
			}
			if !c.ok && !errors.Is(err, ErrBadSignature) {
				t.Errorf("Verify = %q, %v; want ErrBadSignature", id, err)
			}
		})
	}
}

// Without RECOVERBOT_SIGNING_KEY the key is generated once and kept: buttons
// posted before a restart verify after it.
func TestLoadSignerKeepsGeneratedKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	db, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s1, err := LoadSigner(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	v := s1.Sign(ActionApprove, "P")
	_ = db.Close()
	db, err = store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s2, err := LoadSigner(ctx, db, "")
	if err != nil {
		t.Fatal(err)
	}
	if id, err := s2.Verify(ActionApprove, v); err != nil || id != "P" {
		t.Errorf("after reopening: Verify = %q, %v", id, err)
	}
	if _, err := LoadSigner(ctx, db, "short"); err == nil {
		t.Errorf("a 5-byte RECOVERBOT_SIGNING_KEY was accepted")
	}
}

func TestParseValues(t *testing.T) {
	for _, c := range []struct {
		in, wantErr string
		want        map[string]any
	}{
		{"upstream=payments backup_service=payments-dr", "", map[string]any{"upstream": "payments", "backup_service": "payments-dr"}},
		{"route=/api/users", "", map[string]any{"route": "/api/users"}},
		{"upstream", "`upstream` is not a key=value pair", nil},
		{"a=1 a=2", "`a` is given twice", nil},
		{"=x", "a key is letters", nil},
		{"k=", "has no value", nil},
	} {
		t.Run(c.in, func(t *testing.T) {
			got, err := parseValues("plan", split(c.in))
			if c.wantErr != "" {
				var u *UsageError
				if !errors.As(err, &u) || !strings.Contains(u.Msg, c.wantErr) || !strings.Contains(u.Msg, "/recover plan") {
					t.Errorf("error = %v, want a usage error containing %q and the usage line", err, c.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(c.want) {
				t.Fatalf("got %v, %v; want %v", got, err, c.want)
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

func TestParseApprovers(t *testing.T) {
	got, err := ParseApprovers(" U01ABC, S02GROUP ,W03X,")
	if err != nil || strings.Join(got, ",") != "U01ABC,S02GROUP,W03X" {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"@alice", "u01abc", "C0123", "U0 1"} {
		if _, err := ParseApprovers(bad); err == nil {
			t.Errorf("ParseApprovers(%q) accepted", bad)
		}
	}
}

type fakeGroups struct {
	members map[string][]string
	calls   atomic.Int32
	err     error
}

func (f *fakeGroups) GetUserGroupMembersContext(_ context.Context, g string) ([]string, error) {
	f.calls.Add(1)
	if f.err != nil {
		return nil, f.err
	}
	return f.members[g], nil
}

func TestApproversGroupsAreCached(t *testing.T) {
	now := t0
	g := &fakeGroups{members: map[string][]string{"S1": {"U2"}}}
	a := NewApprovers([]string{"U1", "S1"}, g, time.Minute, func() time.Time { return now })
	ctx := context.Background()
	for _, c := range []struct {
		user string
		want bool
	}{{"U1", true}, {"U2", true}, {"U3", false}, {"U2", true}} {
		if ok, err := a.Allowed(ctx, a.Global(), c.user); ok != c.want || err != nil {
			t.Errorf("Allowed(%s) = %v, %v; want %v", c.user, ok, err, c.want)
		}
	}
	if n := g.calls.Load(); n != 1 {
		t.Errorf("usergroups.users.list calls = %d, want 1 (cached)", n)
	}
	now = now.Add(2 * time.Minute)
	g.members["S1"] = nil // removed from the on-call group
	if ok, _ := a.Allowed(ctx, a.Global(), "U2"); ok {
		t.Errorf("U2 still approves after leaving the group and the cache expiring")
	}
	// A failing lookup refuses (with an error) rather than guessing.
	g.err = errors.New("ratelimited")
	now = now.Add(2 * time.Minute)
	if ok, err := a.Allowed(ctx, a.Global(), "U9"); ok || err == nil {
		t.Errorf("Allowed with a failing group lookup = %v, %v; want false and an error", ok, err)
	}
	// Nobody configured: nobody approves.
	if ok, err := NewApprovers(nil, g, 0, nil).Allowed(ctx, nil, "U1"); ok || err != nil {
		t.Errorf("empty list: Allowed = %v, %v", ok, err)
	}
}

func TestDedup(t *testing.T) {
	now := t0
	d := Dedup{TTL: time.Minute, Max: 3, Now: func() time.Time { return now }}
	if d.Seen("a") || !d.Seen("a") {
		t.Fatal("second a not seen")
	}
	now = now.Add(2 * time.Minute)
	if d.Seen("a") {
		t.Error("a still seen after TTL")
	}
	for _, k := range []string{"b", "c", "d", "e"} {
		d.Seen(k)
	}
	if len(d.seen) > 3 {
		t.Errorf("kept %d keys, max 3", len(d.seen))
	}
}

func TestRedact(t *testing.T) {
	in := `Post "https://hooks.slack.com/hooks/commands/T1/123/abcdef": token xoxb-1-2-3 and xapp-1-A-2 ticket=9f8e&app_id=A1`
	got := Redact(in)
	for _, secret := range []string{"abcdef", "xoxb-1-2-3", "xapp-1-A-2", "9f8e"} {
		if strings.Contains(got, secret) {
			t.Errorf("Redact left %q in %q", secret, got)
		}
	}
}

var _ Engine = (*recovery.Engine)(nil)
