package slacktest

import (
	"sync"
	"testing"

	"github.com/slack-go/slack/socketmode"
)

// TestDeliveryToOneSocket opens two sockets and sends envelopes: each one
// reaches exactly one socket, the newest by default, either of them at random
// with WithRandomDelivery (as Slack spreads envelopes over an app's
// connections).
func TestDeliveryToOneSocket(t *testing.T) {
	const envelopes = 64
	for _, tc := range []struct {
		name string
		opts []Option
		// want reports whether the counts per socket (oldest first) are right.
		want func(old, new int) bool
	}{
		{"newest socket gets every envelope by default", nil, func(old, new int) bool { return old == 0 && new == envelopes }},
		// Both sockets get some: all 64 on one by chance is 2^-63.
		{"random socket with WithRandomDelivery", []Option{WithRandomDelivery()}, func(old, new int) bool { return old > 0 && new > 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, tc.opts...)
			ctx := testContext(t)
			var mu sync.Mutex
			got := map[string][]int{} // envelope id → the sockets it reached
			var clients []*socketClient
			for i := range 2 {
				sm := startSocket(t, s)
				sm.next(ctx, t, socketmode.EventTypeHello)
				clients = append(clients, sm)
				go func() {
					for evt := range sm.Events {
						if evt.Type != socketmode.EventTypeSlashCommand {
							continue
						}
						mu.Lock()
						got[evt.Request.EnvelopeID] = append(got[evt.Request.EnvelopeID], i)
						mu.Unlock()
						sm.Ack(*evt.Request)
					}
				}()
			}
			ids := make([]string, envelopes)
			for i := range ids {
				ids[i] = s.SlashCommand("U1", "C1", "/recover", "status")
			}
			for _, id := range ids {
				if _, err := s.WaitAck(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			per := make([]int, len(clients))
			for _, id := range ids {
				if len(got[id]) != 1 {
					t.Errorf("envelope %s reached sockets %v, want exactly one", id, got[id])
					continue
				}
				per[got[id][0]]++
			}
			if !tc.want(per[0], per[1]) {
				t.Errorf("envelopes per socket (oldest first) = %v", per)
			}
			if n := len(s.Acks(ids[0])); n != 1 {
				t.Errorf("envelope %s acked %d times, want 1", ids[0], n)
			}
		})
	}
}
