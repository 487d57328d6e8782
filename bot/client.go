package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

// Client talks to a running bot's admin API: the CLI works while the server
// holds the bbolt lock. Who it acts as is the server's answer to its token
// (GET /v1/whoami), never something it says about itself.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// NewClient builds a client for cfg (AdminURL, else http://<listen>). Its
// token is RECOVERBOT_ADMIN_TOKEN, else the only entry of
// RECOVERBOT_ADMIN_TOKENS when the CLI shares the server's environment.
func NewClient(cfg Config) *Client {
	base := cfg.AdminURL
	if base == "" {
		base = "http://" + cfg.Listen
	}
	tok := cfg.AdminToken
	if ts, _ := ParseAdminTokens(cfg.AdminTokens); tok == "" && len(ts) == 1 {
		tok = ts[0].Token
	}
	return &Client{BaseURL: strings.TrimRight(base, "/"), Token: tok,
		HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// Do sends a request and returns the body of a 2xx answer, or an error holding
// the server's message.
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, body []byte) ([]byte, error) {
	u := c.BaseURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if method == http.MethodPost {
		// Every POST, bodyless ones too: the server refuses others (415).
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("is the bot running? %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var he httpError
		if json.Unmarshal(answer, &he) == nil && he.Msg != "" {
			return nil, fmt.Errorf("%s (HTTP %d)", he.Msg, resp.StatusCode)
		}
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(answer)))
	}
	return answer, nil
}

// parseSince accepts a duration back from now ("24h") or an RFC 3339 time.
func parseSince(s string, clock recovery.Clock) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, recovery.Errorf(recovery.CodeInvalid, "since must not be negative")
		}
		return clock.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, recovery.Errorf(recovery.CodeInvalid, "since %q is neither a duration (24h) nor an RFC 3339 time", s)
	}
	return t, nil
}
