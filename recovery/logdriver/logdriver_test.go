package logdriver

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

// TestJournalLine checks what a journal line says: the call, its execution
// and action, the time it was made, and the leadership term only when the
// driver has one.
func TestJournalLine(t *testing.T) {
	a := runbooks.Action{Type: runbooks.CacheClear, Parameters: map[string]any{"pattern": "users:*"}}
	for _, tc := range []struct {
		name     string
		term     func() int64
		wantTerm any // nil: no "term" key
	}{
		{"without a term the line has none", nil, nil},
		{"with a term the line carries it", func() int64 { return 42 }, float64(42)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			d := &Driver{Journal: &buf, Term: tc.term}
			ctx := recovery.WithExecution(context.Background(), "x-1", 2)
			before := time.Now()
			if _, err := d.Apply(ctx, a, func(string) {}); err != nil {
				t.Fatal(err)
			}
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatalf("journal %q: %v", buf.Bytes(), err)
			}
			if line["op"] != "apply" || line["execution"] != "x-1" || line["action"] != float64(2) || line["type"] != string(runbooks.CacheClear) {
				t.Errorf("journal line %v, want apply of x-1 action 2 (%s)", line, runbooks.CacheClear)
			}
			s, _ := line["at"].(string)
			at, err := time.Parse(time.RFC3339Nano, s)
			if err != nil || at.Before(before.Truncate(time.Microsecond)) || at.After(time.Now()) {
				t.Errorf("at = %v (%v), want the time of the call", line["at"], err)
			}
			if got := line["term"]; got != tc.wantTerm {
				t.Errorf("term = %v, want %v", got, tc.wantTerm)
			}
		})
	}
}
