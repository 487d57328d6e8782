package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/recoverbot/recoverbot/commands"
)

// socketLoop owns the bot's one Socket Mode connection (slack-go's
// socketmode client) and is the one place that decides when an envelope is
// acknowledged (route). slacker v2.0.0-alpha4 acks every envelope before any
// handler runs and has no hook to defer it, so slash commands and clicks
// never reach it: they go to commands.Router, which acks each once its
// decision is committed. Everything else (events_api, hello) goes to slacker
// unchanged, through an in-memory socket (slackerSocket) that its own
// socketmode client connects to; slacker acks those on receipt, as before,
// and its acks go out on the real connection.
type socketLoop struct {
	sm     *socketmode.Client
	router *commands.Router
	inner  *slackerSocket
	log    *slog.Logger
	// onConnected is called for each real socket opened (reconnects too).
	onConnected func()

	handlers sync.WaitGroup // Router calls started by route
}

// run connects and routes envelopes until ctx ends; slack-go reconnects by
// itself. It returns once no more envelopes are routed.
func (l *socketLoop) run(ctx context.Context) error {
	routed := make(chan struct{})
	go func() {
		defer close(routed)
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-l.sm.Events:
				l.route(ctx, ev)
			}
		}
	}()
	err := l.sm.RunContext(ctx)
	<-routed
	return err
}

// route decides who acks ev, and so when:
//   - interactive and slash_commands: commands.Router, once the Handler has
//     decided (committed, or refused); see commands.Router for the order;
//   - events_api and hello: slacker, which acks an event on receipt;
//   - the client's own events (connecting, errors): nothing to ack.
func (l *socketLoop) route(ctx context.Context, ev socketmode.Event) {
	if ev.Request != nil && ev.Request.RetryAttempt > 0 && ev.Type != socketmode.EventTypeEventsAPI {
		l.log.Info("Slack redelivered an unacknowledged envelope", "type", ev.Type,
			"envelope_id", ev.Request.EnvelopeID, "retry_attempt", ev.Request.RetryAttempt, "retry_reason", ev.Request.RetryReason)
	}
	switch ev.Type {
	case socketmode.EventTypeInteractive:
		cb, ok := ev.Data.(slack.InteractionCallback)
		if !ok || ev.Request == nil {
			return
		}
		l.handle(func() { l.router.Interact(ctx, cb, l.acker(ctx, ev.Request.EnvelopeID)) })
	case socketmode.EventTypeSlashCommand:
		sc, ok := ev.Data.(slack.SlashCommand)
		if !ok || ev.Request == nil {
			return
		}
		l.handle(func() { l.router.Slash(ctx, sc, l.acker(ctx, ev.Request.EnvelopeID)) })
	case socketmode.EventTypeEventsAPI, socketmode.EventTypeHello:
		if ev.Request != nil {
			l.inner.forward(ctx, ev.Request)
		}
	case socketmode.EventTypeConnected:
		if l.onConnected != nil {
			l.onConnected()
		}
	case socketmode.EventTypeConnectionError, socketmode.EventTypeIncomingError:
		l.log.Warn("slack socket connection failed; slack-go retries with backoff", "event", commands.Redact(fmt.Sprint(ev.Data)))
	case socketmode.EventTypeErrorBadMessage, socketmode.EventTypeErrorWriteFailed:
		// Left unacked: Slack retries it, and gives up after its retries.
		l.log.Warn("slack socket frame not handled", "type", ev.Type, "event", commands.Redact(fmt.Sprint(ev.Data)))
	default:
		l.log.Debug("slack socket event", "type", ev.Type)
	}
}

func (l *socketLoop) handle(f func()) {
	l.handlers.Add(1)
	go func() {
		defer l.handlers.Done()
		f()
	}()
}

// acker acks envelopeID on the real socket. The ack is queued for
// slack-go's sender; after ctx ends (shutdown) it is not sent, and Slack
// redelivers the envelope to the next connection.
func (l *socketLoop) acker(ctx context.Context, envelopeID string) func() {
	return func() {
		if err := l.sm.AckCtx(ctx, envelopeID, nil); err != nil {
			l.log.Info("envelope left unacknowledged: the bot is stopping; Slack redelivers it", "envelope_id", envelopeID)
		}
	}
}

// wait blocks until the Router calls route started have returned.
func (l *socketLoop) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { l.handlers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("slack handlers still running: %w", context.Cause(ctx))
	}
}

// slackerSocket is the Socket Mode endpoint slacker's own socketmode client
// connects to, in memory: apps.connections.open is answered without a
// request, the websocket runs over net.Pipe, and the server side writes the
// envelopes route forwards and hands slacker's acks to the real socket. It
// pings like Slack, so slack-go's watchdog on slacker's side stays quiet.
type slackerSocket struct {
	real   *socketmode.Client
	log    *slog.Logger
	frames chan []byte // envelopes for slacker, in order

	conns chan net.Conn // server ends of dialled pipes
}

// slackerPing is how often the in-memory socket pings slacker's client
// (slack-go reconnects after 30s without one).
const slackerPing = 10 * time.Second

// slackerURL is what apps.connections.open answers slacker's client; the
// dialer ignores the address and dials a pipe.
const slackerURL = "ws://slacker.in-memory/link"

func newSlackerSocket(real *socketmode.Client, log *slog.Logger) *slackerSocket {
	return &slackerSocket{real: real, log: log, frames: make(chan []byte, 64), conns: make(chan net.Conn)}
}

// attach points slacker's socketmode client at the in-memory socket. Both
// options only set fields, so they apply after slacker built the client.
func (s *slackerSocket) attach(c *socketmode.Client) {
	slack.OptionHTTPClient(openOnly{})(&c.Client)
	socketmode.OptionDialer(&websocket.Dialer{NetDialContext: s.dial, HandshakeTimeout: 10 * time.Second})(c)
}

// serve accepts slacker's connections until ctx ends.
func (s *slackerSocket) serve(ctx context.Context) {
	l := &pipeListener{conns: s.conns, done: ctx.Done()}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.link(ctx, w, r) }),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	_ = srv.Serve(l)
}

func (s *slackerSocket) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case s.conns <- server:
		return client, nil
	case <-ctx.Done():
		_ = client.Close()
		_ = server.Close()
		return nil, ctx.Err()
	}
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// link is one slacker connection: frames out (with pings), acks in.
func (s *slackerSocket) link(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer func() { _ = ws.Close() }()
		t := time.NewTicker(slackerPing)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-t.C:
				if ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second)) != nil {
					return
				}
			case f := <-s.frames:
				if err := ws.WriteMessage(websocket.TextMessage, f); err != nil {
					// Unacked: Slack redelivers it.
					s.log.Warn("could not hand an event to slacker", "err", err)
					return
				}
			}
		}
	}()
	defer close(done)
	for {
		var ack socketmode.Response
		if err := ws.ReadJSON(&ack); err != nil {
			return
		}
		if ack.EnvelopeID == "" {
			continue
		}
		if err := s.real.AckCtx(ctx, ack.EnvelopeID, ack.Payload); err != nil {
			return
		}
	}
}

// forward queues an envelope for slacker; it waits for room (slacker reads
// as fast as it acks) or the end of ctx.
func (s *slackerSocket) forward(ctx context.Context, req *socketmode.Request) {
	f, err := json.Marshal(req)
	if err != nil {
		s.log.Error("could not hand an event to slacker", "type", req.Type, "err", err)
		return
	}
	select {
	case s.frames <- f:
	case <-ctx.Done():
	}
}

// openOnly answers apps.connections.open for slacker's client with the
// in-memory socket's URL, and refuses any other call: that client makes no
// other (slacker's Web API calls use the bot's own slack.Client).
type openOnly struct{}

func (openOnly) Do(r *http.Request) (*http.Response, error) {
	if !strings.HasSuffix(r.URL.Path, "/apps.connections.open") {
		return nil, fmt.Errorf("slacker's socket client called %s: only apps.connections.open is answered", r.URL.Path)
	}
	body, _ := json.Marshal(map[string]any{"ok": true, "url": slackerURL})
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": {"application/json"}},
		Body:    io.NopCloser(strings.NewReader(string(body))),
		Request: r,
	}, nil
}

// pipeListener hands the server ends of dialled pipes to http.Server.
type pipeListener struct {
	conns <-chan net.Conn
	done  <-chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error { return nil }

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "slacker.in-memory" }
