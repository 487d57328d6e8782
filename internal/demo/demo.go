package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/recoverbot/recoverbot/bot"
	"github.com/recoverbot/recoverbot/internal/slacktest"
)

// The demo workspace. The ids are shaped like Slack's, as the bot's
// settings require.
const (
	channelID   = "C0INCIDENT"
	channelName = "incident"
)

// person is a demo user the page can act as.
type person struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Approver bool   `json:"approver"`
}

var people = []person{
	{ID: "U0ALICE001", Name: "alice", Approver: true},
	{ID: "U0BOB00002", Name: "bob"},
}

func personByID(id string) (person, bool) {
	i := slices.IndexFunc(people, func(p person) bool { return p.ID == id })
	if i < 0 {
		return person{}, false
	}
	return people[i], true
}

type options struct {
	listen string // the page's address (loopback: checkListen)
	events string // directory of sample events
	log    *slog.Logger
}

// demo is a running demo: the Slack server, the bot and the page.
type demo struct {
	slack   *slacktest.Server
	botURL  string // the bot's intake and admin API
	samples []sample
	log     *slog.Logger
	url     string
	stop    context.CancelFunc
	done    chan error
}

// sample is one sample event, posted as its file holds it.
type sample struct {
	Name string `json:"name"` // the file name without .json
	body []byte
}

func loadSamples(dir string) ([]sample, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no sample events (*.json) in %s: run make demo from the repository's root, or pass -events DIR", dir)
	}
	var out []sample
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, sample{Name: strings.TrimSuffix(filepath.Base(f), ".json"), body: b})
	}
	return out, nil
}

// start runs the Slack server, the bot and the page until ctx ends or Close.
func start(ctx context.Context, o options) (*demo, error) {
	samples, err := loadSamples(o.events)
	if err != nil {
		return nil, err
	}
	// The page's address first: a port in use is said before anything runs.
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, fmt.Errorf("RECOVERBOT_DEMO_LISTEN %s: %w", o.listen, err)
	}
	dir, err := os.MkdirTemp("", "recoverbot-demo-")
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	ctx, stop := context.WithCancel(ctx)
	d := &demo{slack: slacktest.New(), samples: samples, log: o.log, url: "http://" + ln.Addr().String(), stop: stop, done: make(chan error, 1)}
	cleanup := func() { d.slack.Close(); _ = os.RemoveAll(dir) }
	for _, p := range people {
		d.slack.AddUser(p.ID, p.Name)
	}
	d.slack.AddChannel(channelID, channelName)

	cfg := bot.DefaultConfig()
	cfg.Mode, cfg.Drivers = "full", "log"
	cfg.Data = filepath.Join(dir, "recoverbot.db")
	cfg.Listen = "127.0.0.1:0"
	cfg.SlackChannel = channelID
	var approvers []string
	for _, p := range people {
		if p.Approver {
			approvers = append(approvers, p.ID)
		}
	}
	cfg.SlackApprovers = strings.Join(approvers, ",")
	env := map[string]string{"SLACK_BOT_TOKEN": d.slack.BotToken(), "SLACK_APP_TOKEN": d.slack.AppToken(), "SLACK_API_URL": d.slack.APIURL()}
	ready := make(chan string, 1)
	served := make(chan error, 1)
	go func() {
		err := cfg.Validate()
		if err == nil {
			err = bot.Serve(ctx, cfg, bot.Options{Getenv: func(k string) string { return env[k] }, Log: o.log, Ready: func(a string) { ready <- a }})
		}
		served <- err
	}()
	// The page is useful once the bot takes events and listens on its
	// socket.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	select {
	case a := <-ready:
		d.botURL = "http://" + a
		if err = d.slack.WaitConnections(wctx, 1); err != nil {
			err = fmt.Errorf("the bot did not connect to the Slack server: %w", err)
		}
	case err = <-served:
		err = fmt.Errorf("the bot did not start: %w", err)
		served <- nil
	case <-wctx.Done():
		err = fmt.Errorf("the bot did not start: %w", context.Cause(wctx))
	}
	cancel()
	if err != nil {
		stop()
		<-served
		_ = ln.Close()
		cleanup()
		return nil, err
	}

	// No WriteTimeout: the live view is a stream that stays open. Every
	// request ends with ctx (BaseContext), the stream too.
	page := &http.Server{Handler: d.handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	pageErr := make(chan error, 1)
	go func() { pageErr <- page.Serve(ln) }()

	// Teardown, in reverse: the page, the bot, the Slack server and the
	// temporary directory.
	go func() {
		var err, botErr error
		botDone := false
		select {
		case <-ctx.Done():
		case err = <-pageErr:
		case botErr = <-served:
			botDone = true
		}
		stop()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = page.Shutdown(sctx)
		cancel()
		if !botDone {
			botErr = <-served
		}
		cleanup()
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		if botErr != nil {
			botErr = fmt.Errorf("the bot: %w", botErr)
		}
		d.done <- errors.Join(err, botErr)
	}()
	return d, nil
}

// URL is the page's address.
func (d *demo) URL() string { return d.url }

// BotURL is the bot's own HTTP address: intake and admin API (the CLI's
// RECOVERBOT_ADMIN_URL).
func (d *demo) BotURL() string { return d.botURL }

// Close stops the demo and waits for it.
func (d *demo) Close() error {
	d.stop()
	return d.Wait()
}

// Wait waits for the demo to stop (its context ended, or a part failed) and
// returns why it stopped, nil for a requested stop. Call it once.
func (d *demo) Wait() error { return <-d.done }
