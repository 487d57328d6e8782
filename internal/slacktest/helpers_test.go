package slacktest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// testTimeout bounds every wait; nothing sleeps, so it only matters when a
// test is about to fail.
const testTimeout = 15 * time.Second

func newServer(t *testing.T, opts ...Option) *Server {
	t.Helper()
	s := New(opts...)
	t.Cleanup(s.Close)
	s.AddUser("U1", "alice")
	s.AddUser("U2", "bob")
	s.AddChannel("C1", "ops")
	return s
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func newAPI(s *Server) *slack.Client {
	return slack.New(s.BotToken(), slack.OptionAPIURL(s.APIURL()), slack.OptionAppLevelToken(s.AppToken()))
}

// socketClient runs an unmodified slack-go socketmode client against s.
type socketClient struct {
	*socketmode.Client
	done chan error
}

func startSocket(t *testing.T, s *Server, opts ...socketmode.Option) *socketClient {
	t.Helper()
	sm := socketmode.New(newAPI(s), opts...)
	ctx, cancel := context.WithCancel(context.Background())
	c := &socketClient{Client: sm, done: make(chan error, 1)}
	go func() { c.done <- sm.RunContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-c.done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("socketmode RunContext: %v", err)
		}
	})
	return c
}

// next returns the next event of type typ, skipping others.
func (c *socketClient) next(ctx context.Context, t *testing.T, typ socketmode.EventType) socketmode.Event {
	t.Helper()
	for {
		select {
		case evt := <-c.Events:
			if evt.Type == typ {
				return evt
			}
		case <-ctx.Done():
			t.Fatalf("no %s event: %v", typ, ctx.Err())
		}
	}
}

func mustWait(ctx context.Context, t *testing.T, s *Server, what string, cond func(*Server) bool) {
	t.Helper()
	if err := s.WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func httpRequest(ctx context.Context, url, ctype, body string, header map[string]string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ctype)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}
