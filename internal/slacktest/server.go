package slacktest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The workspace every Server pretends to be. They are fixed so that golden
// files and assertions can name them; tokens are not secrets here.
const (
	teamID      = "T0000TEST1"
	teamDomain  = "recoverbot-test"
	appID       = "A0000TEST1"
	botID       = "B0000TEST1"
	botUserID   = "U0000BOT01"
	botName     = "recoverbot"
	botToken    = "xoxb-0000-test-bot-token"
	appToken    = "xapp-1-A0000TEST1-0000-test-app-token"
	verifyToken = "slacktest-verification-token"
)

// Defaults that mirror Slack's behaviour.
const (
	// defaultPingInterval must stay well under slack-go socketmode's fixed 30s
	// watchdog (the one slacker v2 alpha4 uses), or healthy sockets get recycled.
	defaultPingInterval = 10 * time.Second
	// defaultTriggerTTL is Slack's documented trigger_id lifetime.
	defaultTriggerTTL = 3 * time.Second
	// writeTimeout bounds a websocket write to a peer that stopped reading.
	writeTimeout = 10 * time.Second
)

// Option configures a Server.
type Option func(*config)

type config struct {
	pingInterval time.Duration
	triggerTTL   time.Duration
	now          func() time.Time
	log          *slog.Logger
	onAck        func(Ack)
	pick         func(n int) int // nil: the newest live socket
}

// WithPingInterval sets how often the server pings each socket (Slack pings
// periodically; slack-go treats a missing ping as a dead socket).
func WithPingInterval(d time.Duration) Option {
	return func(c *config) { c.pingInterval = d }
}

// WithTriggerTTL sets how long a trigger_id may be exchanged in views.open or
// views.push (Slack: 3s). Zero disables expiry.
func WithTriggerTTL(d time.Duration) Option {
	return func(c *config) { c.triggerTTL = d }
}

// WithClock injects the time source for timestamps and trigger expiry.
// Network deadlines still use the wall clock.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}

// WithRandomDelivery delivers each envelope to one live socket drawn at
// random, as Slack does when an app holds several connections (while a
// replica takes over from another, for instance). Without it the newest live
// socket gets every envelope, which keeps single-connection tests
// deterministic.
func WithRandomDelivery() Option {
	return func(c *config) { c.pick = rand.IntN }
}

// WithLogger makes the server log every call and socket frame at debug level.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.log = l }
}

// WithOnAck calls f with each ack as it arrives, before the server records
// it or acts on it, on the socket's read loop (the next frame of that socket
// waits for f). Tests use it to look at the bot's state at the moment of the
// ack: what the bot had committed before it acknowledged. f must not call the
// Server's blocking helpers (WaitFor, WaitAck).
func WithOnAck(f func(Ack)) Option {
	return func(c *config) { c.onAck = f }
}

// Server is a Slack Web API and Socket Mode endpoint on 127.0.0.1. All state
// lives behind one mutex; every change wakes WaitFor.
type Server struct {
	cfg      config
	log      *slog.Logger
	methods  map[string]method
	http     *httptest.Server
	upgrader websocket.Upgrader
	wg       sync.WaitGroup // socket handlers and pingers

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every state change
	closed    bool
	seq       int
	lastMicro int64

	users        map[string]*user
	groups       map[string][]string
	groupOrder   []string
	channels     map[string]*channel
	messages     map[string][]*message // by channel, in post order
	ephemerals   []*ephemeral
	scheduled    []ScheduledMessage
	views        []*view
	homeTabs     map[string]*view
	calls        []Call
	faults       map[string][]fault
	tickets      map[string]bool
	triggers     map[string]*trigger
	responseURLs map[string]*responseURL
	envelopes    map[string]*envelope
	strayAcks    []json.RawMessage
	ackLog       []Ack
	loseAcks     map[string]bool // envelope types whose next ack dies with its socket
	lostAcks     []string
	lose         bool     // envelopes are recorded as sent but written nowhere
	pending      [][]byte // frames waiting for a connection
	conns        []*conn
	connects     int
}

// New starts a server. Call Close when done (t.Cleanup(s.Close)).
func New(opts ...Option) *Server {
	cfg := config{
		pingInterval: defaultPingInterval,
		triggerTTL:   defaultTriggerTTL,
		now:          time.Now,
		log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{
		cfg:          cfg,
		log:          cfg.log.With("component", "slacktest"),
		methods:      methodTable(),
		changed:      make(chan struct{}),
		users:        map[string]*user{},
		groups:       map[string][]string{},
		channels:     map[string]*channel{},
		messages:     map[string][]*message{},
		homeTabs:     map[string]*view{},
		faults:       map[string][]fault{},
		tickets:      map[string]bool{},
		triggers:     map[string]*trigger{},
		responseURLs: map[string]*responseURL{},
		envelopes:    map[string]*envelope{},
		loseAcks:     map[string]bool{},
	}
	// slack-go dials with Origin: https://api.slack.com, which the default
	// same-origin check would refuse.
	s.upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	s.users[botUserID] = &user{id: botUserID, name: botName, realName: botName, isBot: true}

	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.serveAPI)
	mux.HandleFunc("/link/", s.serveLink)
	mux.HandleFunc("/hooks/", s.serveResponseURL)
	s.http = httptest.NewServer(mux)
	return s
}

// Close drops every socket and stops the server. It is safe to call twice.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	conns := append([]*conn(nil), s.conns...)
	s.notifyLocked()
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.ws.Close()
	}
	s.wg.Wait()
	s.http.Close()
}

// APIURL is the value for slack.OptionAPIURL / slacker.WithAPIURL; it ends in
// "/api/" as slack-go requires.
func (s *Server) APIURL() string { return s.http.URL + "/api/" }

// URL is the server's base URL (http://127.0.0.1:PORT).
func (s *Server) URL() string { return s.http.URL }

// BotToken is the xoxb- token the Web API accepts.
func (s *Server) BotToken() string { return botToken }

// AppToken is the xapp- token apps.connections.open accepts.
func (s *Server) AppToken() string { return appToken }

// TeamID is the workspace id in every payload.
func (s *Server) TeamID() string { return teamID }

// AppID is the app id sent in hello and in every payload.
func (s *Server) AppID() string { return appID }

// BotUserID is the bot's user id (auth.test user_id, message user).
func (s *Server) BotUserID() string { return botUserID }

// BotID is the bot id (auth.test bot_id, message bot_id, bots.info).
func (s *Server) BotID() string { return botID }

// WaitFor blocks until cond(s) is true, re-evaluating it after every state
// change (API call, message, ack, connection). cond may call any accessor.
func (s *Server) WaitFor(ctx context.Context, cond func(*Server) bool) error {
	for {
		// Take the change channel before evaluating so a change in between
		// is never missed.
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond(s) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("slacktest: condition not met: %w", context.Cause(ctx))
		}
	}
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) nowLocked() time.Time { return s.cfg.now() }

// nextTSLocked returns a Slack timestamp ("seconds.micros") that is unique
// and increasing within the server, as Slack's per-channel ts are.
func (s *Server) nextTSLocked() string {
	micro := s.nowLocked().UnixMicro()
	if micro <= s.lastMicro {
		micro = s.lastMicro + 1
	}
	s.lastMicro = micro
	return fmt.Sprintf("%d.%06d", micro/1_000_000, micro%1_000_000)
}

func (s *Server) nextSeqLocked() int {
	s.seq++
	return s.seq
}

// idLocked makes an id shaped like Slack's: a prefix letter and upper-case
// alphanumerics.
func (s *Server) idLocked(prefix string) string {
	return fmt.Sprintf("%s%010d", prefix, s.nextSeqLocked())
}

func wsURL(httpURL string) string {
	return "ws" + strings.TrimPrefix(httpURL, "http")
}
