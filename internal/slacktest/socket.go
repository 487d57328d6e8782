package slacktest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// conn is one Socket Mode websocket. writeMu serialises data frames
// (gorilla allows one writer; pings go through WriteControl, which may run
// concurrently). ready, silenced and dropped are guarded by Server.mu.
type conn struct {
	ws       *websocket.Conn
	writeMu  sync.Mutex
	done     chan struct{}
	ready    bool // hello sent: envelopes may be delivered
	silenced bool // half-open: no pings, no frames
	dropped  bool
}

func (c *conn) writeLocked(frame []byte) error {
	if err := c.ws.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	return c.ws.WriteMessage(websocket.TextMessage, frame)
}

// serveLink is the websocket endpoint apps.connections.open points at.
// Each URL works once, like Slack's ticketed URLs.
func (s *Server) serveLink(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	valid := s.tickets[ticket] && !s.closed
	delete(s.tickets, ticket)
	s.mu.Unlock()
	if !valid {
		http.Error(w, "invalid or used ticket", http.StatusUnauthorized)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &conn{ws: ws, done: make(chan struct{})}
	// Hold writeMu from before the socket is visible until hello and the
	// backlog are written, so that every other frame (envelopes,
	// disconnect) lands after them and in order.
	c.writeMu.Lock()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.writeMu.Unlock()
		_ = ws.Close()
		return
	}
	s.wg.Add(2) // this handler's read loop and the pinger; Close waits for both
	s.conns = append(s.conns, c)
	s.connects++
	open := len(s.conns)
	s.notifyLocked()
	s.mu.Unlock()
	defer s.wg.Done()
	defer s.removeConn(c)

	hello, _ := json.Marshal(map[string]any{
		"type":            "hello",
		"num_connections": open,
		"debug_info": map[string]any{
			"host":                        "applink-slacktest",
			"build_number":                1,
			"approximate_connection_time": 18060,
		},
		"connection_info": map[string]any{"app_id": appID},
	})
	// Ready before hello is written: a bot that has read hello may be sent
	// envelopes at once. They wait for writeMu, so they land after hello and
	// the backlog; if a write fails, dispatch requeues its frame.
	s.mu.Lock()
	c.ready = true
	backlog := s.pending
	s.pending = nil
	s.mu.Unlock()
	err = c.writeLocked(hello)
	for i, f := range backlog {
		if err != nil {
			s.requeue(backlog[i:])
			break
		}
		err = c.writeLocked(f)
		if err != nil {
			s.requeue(backlog[i:])
			break
		}
	}
	if err != nil {
		s.mu.Lock()
		c.ready = false
		s.mu.Unlock()
	}
	c.writeMu.Unlock()
	s.log.Debug("socket connected", "connections", open)

	go s.ping(c)
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		s.handleAck(data)
	}
}

func (s *Server) removeConn(c *conn) {
	close(c.done)
	_ = c.ws.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.conns {
		if x == c {
			s.conns = append(s.conns[:i], s.conns[i+1:]...)
			break
		}
	}
	s.notifyLocked()
}

// ping sends websocket pings like Slack; slack-go's socketmode reconnects
// when none arrives within its ping interval.
func (s *Server) ping(c *conn) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.pingInterval)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		silent := c.silenced
		s.mu.Unlock()
		if silent {
			continue
		}
		if err := c.ws.WriteControl(websocket.PingMessage, fmt.Appendf(nil, "ping-%d", n), time.Now().Add(writeTimeout)); err != nil {
			return
		}
	}
}

func (s *Server) requeue(frames [][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = append(frames, s.pending...)
}

// dispatch delivers a frame to one live connection, the newest, or one drawn
// at random with WithRandomDelivery, or queues it until a bot connects; it
// drops the frame while LoseDeliveries is on. (Slack would fail a slash
// command with no app connected; queueing keeps tests free of start-up races.)
func (s *Server) dispatch(frame []byte) {
	s.mu.Lock()
	if s.lose {
		s.mu.Unlock()
		return
	}
	var live []*conn
	for _, c := range s.conns {
		if c.ready && !c.silenced && !c.dropped {
			live = append(live, c)
		}
	}
	var target *conn
	switch {
	case len(live) == 0:
	case s.cfg.pick != nil:
		target = live[s.cfg.pick(len(live))]
	default:
		target = live[len(live)-1]
	}
	if target == nil {
		s.pending = append(s.pending, frame)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	target.writeMu.Lock()
	err := target.writeLocked(frame)
	target.writeMu.Unlock()
	if err != nil {
		s.requeue([][]byte{frame})
	}
}

// Disconnect sends Slack's disconnect message to every live socket; slack-go
// then closes the socket and reconnects through apps.connections.open.
// reason is "refresh_requested" when empty ("warning", "link_disabled" are
// the others Slack uses).
func (s *Server) Disconnect(reason string) {
	if reason == "" {
		reason = "refresh_requested"
	}
	frame, _ := json.Marshal(map[string]any{
		"type":       "disconnect",
		"reason":     reason,
		"debug_info": map[string]any{"host": "applink-slacktest"},
	})
	for _, c := range s.liveConns() {
		c.writeMu.Lock()
		_ = c.writeLocked(frame)
		c.writeMu.Unlock()
	}
}

// DropConnections closes every socket without a close frame, as a network
// failure would.
func (s *Server) DropConnections() {
	s.mu.Lock()
	conns := append([]*conn(nil), s.conns...)
	for _, c := range conns {
		c.dropped = true
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.ws.Close()
	}
}

// SilenceConnections leaves the current sockets open but sends nothing on
// them any more, pings included: a half-open connection. Envelopes wait for
// the next connection; sockets opened later behave normally.
func (s *Server) SilenceConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.silenced = true
	}
	s.notifyLocked()
}

// Connections is the number of sockets open now.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// TotalConnections counts every socket ever accepted.
func (s *Server) TotalConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connects
}

// WaitConnections blocks until n sockets have been accepted in total since
// the server started (a counter, so reconnects count).
func (s *Server) WaitConnections(ctx context.Context, n int) error {
	return s.WaitFor(ctx, func(s *Server) bool { return s.TotalConnections() >= n })
}

// liveConns lists the sockets that are neither silenced nor dropped,
// including those still being greeted: their writeMu is held across hello,
// so a frame written to them lands after it.
func (s *Server) liveConns() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*conn
	for _, c := range s.conns {
		if !c.silenced && !c.dropped {
			out = append(out, c)
		}
	}
	return out
}

// Ack is one acknowledgement as the server received it: the envelope it
// names, that envelope's type, which delivery it answered (Attempt 0 is the
// first, as retry_attempt counts), its payload, when it arrived, and Seq, its
// place among all acks (1, 2, …).
type Ack struct {
	EnvelopeID string
	Type       string
	Attempt    int
	Payload    json.RawMessage
	At         time.Time
	Seq        int
}

// handleAck records {"envelope_id": ..., "payload": ...} and applies what
// Slack does with an ack payload.
func (s *Server) handleAck(data []byte) {
	var ack struct {
		EnvelopeID string          `json:"envelope_id"`
		Payload    json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(data, &ack); err != nil || ack.EnvelopeID == "" {
		s.log.Debug("ignored socket frame", "frame", string(data))
		return
	}
	s.mu.Lock()
	env, ok := s.envelopes[ack.EnvelopeID]
	if !ok {
		s.strayAcks = append(s.strayAcks, data)
		s.notifyLocked()
		s.mu.Unlock()
		return
	}
	rec := Ack{EnvelopeID: env.id, Type: env.typ, Attempt: env.attempts - 1, Payload: ack.Payload, At: s.nowLocked()}
	s.mu.Unlock()
	if s.cfg.onAck != nil {
		s.cfg.onAck(rec)
	}
	s.mu.Lock()
	if s.loseAcks[env.typ] {
		delete(s.loseAcks, env.typ)
		s.lostAcks = append(s.lostAcks, env.id)
		s.notifyLocked()
		s.mu.Unlock()
		s.log.Debug("ack lost with its socket", "envelope_id", env.id)
		s.DropConnections()
		return
	}
	defer s.mu.Unlock()
	defer s.notifyLocked()
	rec.Seq = len(s.ackLog) + 1
	s.ackLog = append(s.ackLog, rec)
	env.acks = append(env.acks, ack.Payload)
	env.acked = env.attempts
	s.log.Debug("ack", "envelope_id", env.id, "type", env.typ, "payload", string(ack.Payload))
	if len(env.acks) > 1 {
		return // Slack acts on the first ack of an envelope only
	}
	switch env.typ {
	case "slash_commands":
		s.applySlashAckLocked(env, ack.Payload)
	case "interactive":
		if env.viewID != "" {
			s.applyViewAckLocked(env, ack.Payload)
		}
	}
}

// AckLog lists every ack received for a known envelope, in arrival order.
func (s *Server) AckLog() []Ack {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Ack(nil), s.ackLog...)
}

// LoseNextAck makes the next ack of an envelope of type typ
// ("interactive", "slash_commands", "events_api") die with its socket: the
// server drops every connection instead of recording it, as when the bot
// dies between sending the ack and Slack reading it. Slack then still holds
// the envelope unacknowledged (RedeliverUnacked sends it again).
func (s *Server) LoseNextAck(typ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loseAcks[typ] = true
}

// LostAcks lists the envelopes whose ack LoseNextAck lost, in order.
func (s *Server) LostAcks() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lostAcks...)
}

// LoseDeliveries, while on, records envelopes as sent but writes them to no
// socket: as if each went into a connection that died before the bot read
// it. Slack holds them unacknowledged (RedeliverUnacked sends them again).
func (s *Server) LoseDeliveries(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lose = on
}

// RedeliverUnacked sends again, as Slack retries after a reconnect, every
// envelope that has no ack yet: same envelope_id and payload, retry_attempt
// one more, retry_reason "timeout". It returns their ids in the order they
// were first sent.
func (s *Server) RedeliverUnacked() []string {
	s.mu.Lock()
	var ids []string
	for _, e := range s.envelopes {
		if len(e.acks) == 0 {
			ids = append(ids, e.id)
		}
	}
	s.mu.Unlock()
	slices.Sort(ids) // ids begin with the server's sequence number in hex
	for _, id := range ids {
		s.Redeliver(id)
	}
	return ids
}

// WaitAck blocks until the bot has acked the latest delivery of the
// envelope (an ack that arrived after it was sent) and returns that ack's
// payload (nil when it had none).
func (s *Server) WaitAck(ctx context.Context, envelopeID string) (json.RawMessage, error) {
	s.mu.Lock()
	env, ok := s.envelopes[envelopeID]
	var want int
	if ok {
		want = env.attempts
	}
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("slacktest: unknown envelope %q", envelopeID)
	}
	var payload json.RawMessage
	err := s.WaitFor(ctx, func(s *Server) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if env.acked < want {
			return false
		}
		payload = env.acks[len(env.acks)-1]
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("slacktest: envelope %s (%s) not acked: %w", envelopeID, env.typ, err)
	}
	return payload, nil
}

// Acks returns every ack payload received for the envelope, in order.
func (s *Server) Acks(envelopeID string) []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	env, ok := s.envelopes[envelopeID]
	if !ok {
		return nil
	}
	return append([]json.RawMessage(nil), env.acks...)
}
