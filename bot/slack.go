package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/shomali11/slacker/v2"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/recovery"
)

// SlackOptions configure the Slack face. Tokens come from the environment
// only (SLACK_BOT_TOKEN, SLACK_APP_TOKEN); APIURL (SLACK_API_URL) points the
// bot at any Slack-compatible endpoint, such as internal/slacktest.
type SlackOptions struct {
	BotToken, AppToken, APIURL string
	Channel                    string   // RECOVERBOT_SLACK_CHANNEL
	Approvers                  []string // RECOVERBOT_SLACK_APPROVERS
	SigningKey                 string   // RECOVERBOT_SIGNING_KEY; empty: kept in the store
	// Silence is the half-open watchdog's bound: a socket on which nothing
	// (not even Slack's pings) arrived for this long is closed, and
	// slack-go opens a new one (default 30s).
	Silence time.Duration
	// CallTimeout bounds every Web API call (default 10s).
	CallTimeout time.Duration
	Log         *slog.Logger
	// OnDuplicate is called for each redelivered envelope dropped (tests).
	OnDuplicate func(key string)
	// OnAPIError is called with the Web API method of each failed call the
	// bot makes (the recoverbot_slack_api_errors_total metric).
	OnAPIError func(method string)
}

// Slack is the bot's Slack face: a Socket Mode connection whose slash
// commands and clicks commands.Router decides and then acks (socketLoop),
// slacker v2 for everything else, and the notifier that posts plans and
// their threads.
type Slack struct {
	bot      *slacker.Slacker
	api      *slack.Client
	router   *commands.Router
	loop     *socketLoop
	inner    *slackerSocket
	notifier *SlackNotifier
	home     *homeTab
	log      *slog.Logger
	silence  time.Duration

	connects atomic.Int64
}

var _ recovery.LaneNotifier = (*Slack)(nil)

// DefaultSlackSilence is the half-open bound when none is set: Slack pings
// each socket well within it (slack-go's own watchdog, which slacker cannot
// tune, allows 30s and checks on a 30s ticker: up to a minute).
const DefaultSlackSilence = 30 * time.Second

// NewSlack builds the Slack face on eng. Nothing connects until Run.
func NewSlack(ctx context.Context, o SlackOptions, eng *recovery.Engine) (*Slack, error) {
	if o.BotToken == "" || o.AppToken == "" {
		return nil, errors.New("slack: SLACK_BOT_TOKEN and SLACK_APP_TOKEN are both required")
	}
	if o.Channel == "" {
		return nil, errors.New("config slack_channel (RECOVERBOT_SLACK_CHANNEL): required when Slack tokens are set: the incident channel id (C…)")
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "slack")
	if o.Silence <= 0 {
		o.Silence = DefaultSlackSilence
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 10 * time.Second
	}
	signer, err := commands.LoadSigner(ctx, eng.Store(), o.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("config signing_key (RECOVERBOT_SIGNING_KEY): %w", err)
	}

	opts := []slacker.ClientOption{slacker.WithLogger(slackerLog{log})}
	if o.APIURL != "" {
		u, err := apiURL(o.APIURL)
		if err != nil {
			return nil, err
		}
		opts = append(opts, slacker.WithAPIURL(u))
	}
	bot := slacker.NewClient(o.BotToken, o.AppToken, opts...)
	api := bot.SlackClient()
	// Every Web API call, slacker's own conversations.info/users.info
	// included, gets a hard timeout (slack-go's default client has none).
	// slacker builds its slack.Client without options; they only set fields,
	// so they apply after construction. Set before socketmode.New, which
	// copies the client.
	slack.OptionHTTPClient(&http.Client{Timeout: o.CallTimeout})(api)
	s := &Slack{bot: bot, api: api, log: log, silence: o.Silence}
	// The one real socket is ours, dialled through a conn that notices
	// silence; slacker's own socket client talks to the in-memory one.
	sm := socketmode.New(api, socketmode.OptionDialer(&websocket.Dialer{
		NetDialContext:   s.dialWatched,
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: 10 * time.Second,
	}))
	s.inner = newSlackerSocket(sm, log.With("component", "slacker-socket"))
	s.inner.attach(bot.SocketModeClient())

	calls := &countingAPI{Client: api, onErr: o.OnAPIError}
	approvers := commands.NewApprovers(o.Approvers, calls, commands.GroupTTL, nil)
	if len(o.Approvers) == 0 {
		log.Warn("no approvers configured (RECOVERBOT_SLACK_APPROVERS): every approval, rollback and pause from Slack will be refused unless a runbook names its own approvers")
	}
	s.router = &commands.Router{
		Handler: &commands.Handler{Engine: eng, Slack: calls, Channel: o.Channel, Approvers: approvers,
			Signer: signer, Log: log},
		Timeout: requestTimeout(eng.Config().AITimeout),
		Log:     log, OnDuplicate: o.OnDuplicate,
	}
	s.router.Register(bot)
	s.home = newHomeTab(calls, func(ctx context.Context) (slack.HomeTabViewRequest, error) {
		h, err := commands.LoadHome(ctx, eng, signer)
		if err != nil {
			return slack.HomeTabViewRequest{}, err
		}
		return commands.HomeView(h), nil
	}, o.CallTimeout, log.With("component", "home"))
	bot.UnsupportedEventHandler(s.home.onEvent) // app_home_opened
	s.loop = &socketLoop{sm: sm, router: s.router, inner: s.inner, log: log, onConnected: func() {
		n := s.connects.Add(1)
		log.Info("slack socket connected", "connections", n)
	}}
	s.notifier = &SlackNotifier{API: calls, Store: eng.Store(), Engine: eng, Signer: signer,
		Channel: o.Channel, CallTimeout: o.CallTimeout, Log: log.With("component", "notify")}
	return s, nil
}

// requestTimeout bounds the work of one command or click: 20s, or longer
// when /recover ask may wait for a slower configured AI timeout (the engine
// bounds the AI call itself; the rest is bbolt and Slack calls).
func requestTimeout(aiTimeout time.Duration) time.Duration {
	return max(20*time.Second, aiTimeout+15*time.Second)
}

// apiURL checks SLACK_API_URL and gives it the trailing slash slack-go needs.
func apiURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("SLACK_API_URL: %q is not an http(s) URL like https://slack.com/api/", s)
	}
	if !strings.HasSuffix(s, "/") {
		s += "/"
	}
	return s, nil
}

// Notify implements recovery.Notifier. The notification is committed
// before it is delivered, so a Home republished for it shows its state.
func (s *Slack) Notify(ctx context.Context, n recovery.Notification, x *recovery.Execution) error {
	err := s.notifier.Notify(ctx, n, x)
	s.home.noted(n)
	return err
}

// NotifyLane implements recovery.LaneNotifier (SlackNotifier.NotifyLane),
// telling the Home of each notification as Notify does.
func (s *Slack) NotifyLane(ctx context.Context, notes []recovery.Notification, x *recovery.Execution) (int, error) {
	k, err := s.notifier.NotifyLane(ctx, notes, x)
	for _, n := range notes {
		s.home.noted(n)
	}
	return k, err
}

// Run listens on Socket Mode until ctx ends. slack-go reconnects by itself
// after a disconnect message, a read error, a dropped socket or its own ping
// watchdog; the dialer's watchdog adds a tighter bound for half-open sockets.
// Run returns an error only when Slack refuses the tokens (or slacker stops
// by itself).
func (s *Slack) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var slackerErr error
	wg.Add(3)
	go func() { defer wg.Done(); s.home.run(ctx) }()
	go func() { defer wg.Done(); s.inner.serve(ctx) }()
	go func() {
		defer wg.Done()
		if err := s.bot.Listen(ctx); ctx.Err() == nil {
			slackerErr = fmt.Errorf("slacker stopped: %v", err)
			cancel()
		}
	}()
	err := s.loop.run(ctx)
	stopped := ctx.Err() != nil
	cancel()
	wg.Wait()
	switch {
	case slackerErr != nil:
		return fmt.Errorf("slack socket mode: %s", commands.Redact(slackerErr.Error()))
	case stopped:
		return nil
	}
	// slack-go's RunContext ends only with an error: tokens refused.
	return fmt.Errorf("slack socket mode: %s", commands.Redact(err.Error()))
}

// Wait blocks until the commands and clicks being handled, and the App Home
// publishes started by opens, finish.
func (s *Slack) Wait(ctx context.Context) error {
	return errors.Join(s.loop.wait(ctx), s.router.Wait(ctx), s.home.wait(ctx))
}

// Connections counts the sockets opened so far (reconnects included).
func (s *Slack) Connections() int64 { return s.connects.Load() }

// dialWatched dials the Socket Mode TCP connection and watches it: every
// read (Slack's pings, envelopes, TLS records) marks it alive; when nothing
// arrives for s.silence, the conn is closed, the websocket read fails, and
// slack-go reconnects through apps.connections.open. Bound: a half-open
// socket is replaced within s.silence (+ timer slack) of its last byte.
func (s *Slack) dialWatched(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	w := &watchedConn{Conn: c, done: make(chan struct{})}
	w.touch()
	go w.watch(s.silence, s.log)
	return w, nil
}

type watchedConn struct {
	net.Conn
	last atomic.Int64 // unix nanos of the last byte read
	once sync.Once
	done chan struct{}
}

func (c *watchedConn) touch() { c.last.Store(time.Now().UnixNano()) }

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

func (c *watchedConn) watch(bound time.Duration, log *slog.Logger) {
	t := time.NewTimer(bound)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		idle := time.Since(time.Unix(0, c.last.Load()))
		if idle >= bound {
			log.Warn("slack socket silent (no ping, no message): closing it so slack-go reconnects", "silent_for", idle.Round(time.Millisecond), "bound", bound)
			_ = c.Close()
			return
		}
		t.Reset(bound - idle)
	}
}

// countingAPI is the Web API client with each failed call counted by method.
// (Replies through a response_url go through PostMessageContext too and
// count as chat.postMessage.)
type countingAPI struct {
	*slack.Client
	onErr func(method string)
}

func (c *countingAPI) count(method string, err error) {
	if err != nil && c.onErr != nil {
		c.onErr(method)
	}
}

func (c *countingAPI) PostMessageContext(ctx context.Context, ch string, opts ...slack.MsgOption) (string, string, error) {
	a, b, err := c.Client.PostMessageContext(ctx, ch, opts...)
	c.count("chat.postMessage", err)
	return a, b, err
}

func (c *countingAPI) UpdateMessageContext(ctx context.Context, ch, ts string, opts ...slack.MsgOption) (string, string, string, error) {
	a, b, d, err := c.Client.UpdateMessageContext(ctx, ch, ts, opts...)
	c.count("chat.update", err)
	return a, b, d, err
}

func (c *countingAPI) PostEphemeralContext(ctx context.Context, ch, user string, opts ...slack.MsgOption) (string, error) {
	ts, err := c.Client.PostEphemeralContext(ctx, ch, user, opts...)
	c.count("chat.postEphemeral", err)
	return ts, err
}

func (c *countingAPI) OpenViewContext(ctx context.Context, trigger string, v slack.ModalViewRequest) (*slack.ViewResponse, error) {
	r, err := c.Client.OpenViewContext(ctx, trigger, v)
	c.count("views.open", err)
	return r, err
}

func (c *countingAPI) PublishViewContext(ctx context.Context, user string, v slack.HomeTabViewRequest, hash string) (*slack.ViewResponse, error) {
	r, err := c.Client.PublishViewContext(ctx, user, v, hash)
	c.count("views.publish", err)
	return r, err
}

func (c *countingAPI) GetUserGroupMembersContext(ctx context.Context, group string) ([]string, error) {
	m, err := c.Client.GetUserGroupMembersContext(ctx, group)
	c.count("usergroups.users.list", err)
	return m, err
}

// slackerLog routes slacker's log lines to slog, tokens and hook URLs
// redacted. slacker's info lines ("connecting to Slack with Socket Mode…")
// describe its in-memory socket, not Slack's (socketLoop logs that one), so
// they are debug lines here.
type slackerLog struct{ l *slog.Logger }

func (s slackerLog) Info(args ...any) {
	s.l.Debug(commands.Redact(strings.TrimSpace(fmt.Sprint(args...))))
}
func (s slackerLog) Infof(f string, args ...any) {
	s.l.Debug(commands.Redact(strings.TrimSpace(fmt.Sprintf(f, args...))))
}
func (s slackerLog) Debug(args ...any) {
	s.l.Debug(commands.Redact(strings.TrimSpace(fmt.Sprint(args...))))
}
func (s slackerLog) Debugf(f string, args ...any) {
	s.l.Debug(commands.Redact(strings.TrimSpace(fmt.Sprintf(f, args...))))
}
func (s slackerLog) Error(args ...any) {
	s.l.Error(commands.Redact(strings.TrimSpace(fmt.Sprint(args...))))
}
func (s slackerLog) Errorf(f string, args ...any) {
	s.l.Error(commands.Redact(strings.TrimSpace(fmt.Sprintf(f, args...))))
}
