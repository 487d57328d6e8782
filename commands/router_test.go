package commands

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// serve's order for one request and its redeliveries: the first delivery is
// decided, then acked, then replied to; a redelivery that arrives while the
// first is being decided is not handled, and is acked only once the first
// is; one that arrives later is acked at once. (The end-to-end proofs
// against the store are bot's TestSlackAck*.)
func TestServeAcksAfterDecisionAndRedeliveriesWithIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var order []string
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, s)
	}
	dupSeen := make(chan struct{}, 2)
	r := &Router{OnDuplicate: func(string) { dupSeen <- struct{}{} }}
	started, release := make(chan struct{}), make(chan struct{})
	handled := 0

	first := make(chan struct{})
	go func() {
		defer close(first)
		r.serve(ctx, "click", "click:T1:1.0", false, func() { record("ack 1") }, func(context.Context) *Reply {
			handled++
			close(started)
			<-release
			record("decided")
			return nil
		}, replyTo{})
	}()
	<-started
	live := make(chan struct{})
	go func() {
		defer close(live)
		r.serve(ctx, "click", "click:T1:1.0", false, func() { record("ack 2 (live redelivery)") }, func(context.Context) *Reply {
			handled++
			return nil
		}, replyTo{})
	}()
	<-dupSeen
	close(release)
	<-first
	<-live
	r.serve(ctx, "click", "click:T1:1.0", false, func() { record("ack 3 (late redelivery)") }, func(context.Context) *Reply {
		handled++
		return nil
	}, replyTo{})
	<-dupSeen

	want := []string{"decided", "ack 1", "ack 2 (live redelivery)", "ack 3 (late redelivery)"}
	if !slices.Equal(order, want) || handled != 1 {
		t.Errorf("order = %q, handled %d times; want %q, handled once", order, handled, want)
	}
}

// /recover ask is acked before it is decided (the AI takes longer than
// Slack's ack window); every other command after.
func TestAcksFirst(t *testing.T) {
	for text, want := range map[string]bool{"ask why is checkout slow": true, "ASK x": true, "pause": false, "": false, "status ask": false} {
		if got := acksFirst(text); got != want {
			t.Errorf("acksFirst(%q) = %v, want %v", text, got, want)
		}
	}
}
