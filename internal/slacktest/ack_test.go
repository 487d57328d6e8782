package slacktest

import (
	"slices"
	"testing"

	"github.com/slack-go/slack/socketmode"
)

// A lost ack (LoseNextAck) drops every socket and leaves the envelope
// unacknowledged; a lost delivery (LoseDeliveries) reaches no socket.
// RedeliverUnacked sends both again with retry_attempt 1 to the reconnected
// client, and their acks are recorded with the delivery they answered;
// WithOnAck sees every ack, the lost one too, before it is recorded.
func TestLostAcksAndDeliveriesAreRedelivered(t *testing.T) {
	var seen []string // only the socket's read loop appends, then the test reads after WaitAck
	s := newServer(t, WithOnAck(func(a Ack) { seen = append(seen, a.EnvelopeID) }))
	ctx := testContext(t)
	sm := startSocket(t, s)
	sm.next(ctx, t, socketmode.EventTypeHello)

	s.LoseNextAck("slash_commands")
	lostAck := s.SlashCommand("U1", "C1", "/recover", "pause")
	evt := sm.next(ctx, t, socketmode.EventTypeSlashCommand)
	sm.Ack(*evt.Request)
	mustWait(ctx, t, s, "the lost ack", func(s *Server) bool { return slices.Contains(s.LostAcks(), lostAck) })
	if got := s.Acks(lostAck); len(got) != 0 {
		t.Errorf("acks recorded for the lost ack: %d, want 0", len(got))
	}

	s.LoseDeliveries(true)
	lostDelivery := s.SlashCommand("U1", "C1", "/recover", "resume")
	s.LoseDeliveries(false)
	acked := s.SlashCommand("U1", "C1", "/recover", "status")

	if err := s.WaitConnections(ctx, 2); err != nil { // slack-go reconnected after the drop
		t.Fatal(err)
	}
	evt = sm.next(ctx, t, socketmode.EventTypeSlashCommand)
	if evt.Request.EnvelopeID != acked {
		t.Fatalf("delivered %s, want only %s (the lost delivery reaches no socket)", evt.Request.EnvelopeID, acked)
	}
	sm.Ack(*evt.Request)
	if _, err := s.WaitAck(ctx, acked); err != nil {
		t.Fatal(err)
	}

	if got, want := s.RedeliverUnacked(), []string{lostAck, lostDelivery}; !slices.Equal(got, want) {
		t.Fatalf("RedeliverUnacked = %q, want %q", got, want)
	}
	for _, want := range []string{lostAck, lostDelivery} {
		evt := sm.next(ctx, t, socketmode.EventTypeSlashCommand)
		if evt.Request.EnvelopeID != want || evt.Request.RetryAttempt != 1 || evt.Request.RetryReason != "timeout" {
			t.Errorf("redelivered %s retry %d %q, want %s retry 1 timeout", evt.Request.EnvelopeID, evt.Request.RetryAttempt, evt.Request.RetryReason, want)
		}
		sm.Ack(*evt.Request)
		if _, err := s.WaitAck(ctx, want); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, a := range s.AckLog() {
		got = append(got, a.EnvelopeID)
		if want := map[string]int{acked: 0, lostAck: 1, lostDelivery: 1}[a.EnvelopeID]; a.Attempt != want || a.Type != "slash_commands" {
			t.Errorf("ack %+v: attempt %d, want %d", a, a.Attempt, want)
		}
	}
	if want := []string{acked, lostAck, lostDelivery}; !slices.Equal(got, want) {
		t.Errorf("AckLog = %q, want %q", got, want)
	}
	if want := []string{lostAck, acked, lostAck, lostDelivery}; !slices.Equal(seen, want) {
		t.Errorf("WithOnAck saw %q, want %q", seen, want)
	}
	if got := s.RedeliverUnacked(); len(got) != 0 {
		t.Errorf("still unacked: %q", got)
	}
}
