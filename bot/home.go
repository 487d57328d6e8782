package bot

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"

	"github.com/recoverbot/recoverbot/commands"
	"github.com/recoverbot/recoverbot/recovery"
)

// homeAPI is the Web API call the App Home makes (views.publish needs no
// scope).
type homeAPI interface {
	PublishViewContext(ctx context.Context, userID string, view slack.HomeTabViewRequest, hash string) (*slack.ViewResponse, error)
}

// App Home pacing. views.publish is a Tier 4 method (100+ calls a minute):
// republish rounds are at least homeEvery apart and, with many viewers,
// spaced homePerCall per viewer, so a storm of state changes makes one
// round per gap, never one publish per change.
const (
	homeEvery      = 2 * time.Second
	homePerCall    = 600 * time.Millisecond // 100 a minute
	homeMaxViewers = 50                     // remembered; the least recently opened is forgotten first
	homeViewerTTL  = 12 * time.Hour         // a Home not opened for this long is no longer kept current
)

var errHomeTimeout = errors.New("app home publish took too long")

// homeTab keeps the App Home of the people who opened it current: it
// publishes the Home when someone opens it (app_home_opened), remembers
// them (bounded), and republishes to all of them, coalesced, when a plan,
// its state, the pause or the breaker changes.
type homeTab struct {
	api    homeAPI
	render func(ctx context.Context) (slack.HomeTabViewRequest, error)
	log    *slog.Logger
	// callTimeout bounds each views.publish; every and perCall space the
	// rounds; now dates each open (viewers are forgotten after homeViewerTTL).
	callTimeout    time.Duration
	every, perCall time.Duration
	maxViewers     int
	now            func() time.Time

	mu      sync.Mutex
	viewers map[string]time.Time // user → last opened
	kick    chan struct{}        // one pending round at most: changes coalesce
	pub     sync.Mutex           // one render-and-publish at a time, so an older view never lands after a newer one
	running sync.WaitGroup
}

func newHomeTab(api homeAPI, render func(context.Context) (slack.HomeTabViewRequest, error), callTimeout time.Duration, log *slog.Logger) *homeTab {
	return &homeTab{api: api, render: render, log: log, callTimeout: callTimeout,
		every: homeEvery, perCall: homePerCall, maxViewers: homeMaxViewers, now: time.Now,
		viewers: map[string]time.Time{}, kick: make(chan struct{}, 1)}
}

// onEvent takes the Events API events slacker does not handle itself; only
// app_home_opened on the Home tab is ours. slacker calls it on its event
// loop, after the ack, so the publish runs in a goroutine of its own.
func (h *homeTab) onEvent(ev socketmode.Event) {
	api, ok := ev.Data.(slackevents.EventsAPIEvent)
	if !ok || api.Type != slackevents.CallbackEvent {
		h.log.Debug("ignored Slack event", "type", ev.Type)
		return
	}
	open, ok := api.InnerEvent.Data.(*slackevents.AppHomeOpenedEvent)
	if !ok {
		h.log.Debug("ignored Slack event", "type", api.InnerEvent.Type)
		return
	}
	if open.Tab != "home" || open.User == "" {
		return // the Messages tab, or nothing to publish to
	}
	h.opened(open.User)
}

// opened remembers user and publishes their Home at once.
func (h *homeTab) opened(user string) {
	h.remember(user)
	h.running.Add(1)
	go func() {
		defer h.running.Done()
		h.publish(context.Background(), []string{user})
	}()
}

func (h *homeTab) remember(user string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.viewers[user] = h.now()
	for len(h.viewers) > h.maxViewers {
		oldest := ""
		for u, at := range h.viewers {
			if oldest == "" || at.Before(h.viewers[oldest]) {
				oldest = u
			}
		}
		delete(h.viewers, oldest)
	}
}

// current returns the users whose Home is kept current, forgetting those
// who have not opened it for homeViewerTTL.
func (h *homeTab) current() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	for u, at := range h.viewers {
		if now.Sub(at) > homeViewerTTL {
			delete(h.viewers, u)
		}
	}
	return slices.Sorted(maps.Keys(h.viewers))
}

// noted is told of every notification delivered: those that change what the
// Home shows (a new plan, a state change, a pause, resume or breaker notice)
// ask for a republish round.
func (h *homeTab) noted(n recovery.Notification) {
	switch n.Kind {
	case recovery.NotePlan, recovery.NoteState, recovery.NoteNotice:
		h.changed()
	}
}

// changed asks for a republish round; while one is pending, more changes
// add nothing.
func (h *homeTab) changed() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// run republishes the Homes on change until ctx ends: a round renders once
// and publishes to every current viewer, then waits out the gap, during
// which changes coalesce into the next round.
func (h *homeTab) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.kick:
		}
		users := h.current()
		if len(users) > 0 {
			h.publish(ctx, users)
		}
		gap := max(h.every, time.Duration(len(users))*h.perCall)
		t := time.NewTimer(gap)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// publish renders the Home once and publishes it to users. A failure is
// logged: the next change or open publishes again.
func (h *homeTab) publish(ctx context.Context, users []string) {
	h.pub.Lock()
	defer h.pub.Unlock()
	rctx, cancel := context.WithTimeoutCause(ctx, h.callTimeout, errHomeTimeout)
	view, err := h.render(rctx)
	cancel()
	if err != nil {
		h.log.Error("app home: could not read what it shows", "err", err)
		return
	}
	for _, u := range users {
		cctx, cancel := context.WithTimeoutCause(ctx, h.callTimeout, errHomeTimeout)
		_, err := h.api.PublishViewContext(cctx, u, view, "")
		cancel()
		if err != nil {
			h.log.Warn("app home: views.publish failed", "user", u, "err", commands.Redact(err.Error()))
		}
	}
}

// wait blocks until the publishes started by opens finish, or ctx ends.
func (h *homeTab) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { h.running.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
