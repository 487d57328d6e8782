package recovery

import (
	"testing"
	"time"
)

// The courier's waits double from 250 ms and never exceed the 30 s cap
// (issue #12 item 8: it used to go 16 s → 32 s).
func TestNextBackoffNeverExceedsCap(t *testing.T) {
	want := []time.Duration{
		250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second,
	}
	var got []time.Duration
	d := time.Duration(0)
	for range want {
		d = nextBackoff(d)
		got = append(got, d)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("backoff sequence = %v, want %v", got, want)
		}
	}
}
