// Package amsilence silences, in Alertmanager (API v2), the alert an
// execution remediates: the recovery engine decides when (recovery/silence.go),
// this package what — exact matchers on the alert's own labels, validated
// first, created by recoverbot, with a comment naming the runbook and plan.
// It speaks the API directly rather than pulling the Alertmanager module into
// the build.
package amsilence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/recoverbot/recoverbot/recovery"
)

var _ recovery.Silencer = (*Client)(nil)

// CreatedBy is the silences' author, as Alertmanager shows it.
const CreatedBy = "recoverbot"

// Client creates and expires silences on one Alertmanager.
type Client struct {
	base *url.URL
	http *http.Client
}

// New returns a client for an Alertmanager base URL (http://host:9093). Each
// call is bounded by its ctx (the engine gives it a deadline).
func New(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("alertmanager url: want http(s)://host[:port]")
	}
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: u, http: hc}, nil
}

// Matcher is one matcher of a silence, as API v2 spells it.
type Matcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	IsEqual bool   `json:"isEqual"`
}

// Matchers turns an alert's labels into the exact matchers of its silence,
// sorted by name. Labels come from outside, so each is checked first: a name
// must have Prometheus's label-name syntax ([a-zA-Z_][a-zA-Z0-9_]*) and not
// be reserved (__…); a value must be non-empty (a matcher on "" would also
// match every alert without the label) valid UTF-8. No labels at all would
// match every alert: refused too. Their count and size are the event's
// bounds (recovery.BoundEvent), checked at intake.
func Matchers(labels map[string]string) ([]Matcher, error) {
	if len(labels) == 0 {
		return nil, errors.New("the alert has no labels: a silence would match every alert")
	}
	out := make([]Matcher, 0, len(labels))
	for k, v := range labels {
		if !labelName(k) {
			return nil, fmt.Errorf("label name %q is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)", recovery.CutText(k, 64))
		}
		switch {
		case v == "":
			return nil, fmt.Errorf("label %s is empty: a matcher on it would match every alert without it", k)
		case !utf8.ValidString(v):
			return nil, fmt.Errorf("label %s is not valid UTF-8", k)
		}
		out = append(out, Matcher{Name: k, Value: v, IsEqual: true})
	}
	slices.SortFunc(out, func(a, b Matcher) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func labelName(s string) bool {
	if s == "" || strings.HasPrefix(s, "__") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Comment is the silence's comment for x: the plan's id is what /recover
// status, the admin API and the CLI take (the bot has no link to a plan).
func Comment(x *recovery.Execution) string {
	return fmt.Sprintf("recoverbot is remediating %s: plan %s", x.Runbook, x.ID)
}

type silence struct {
	Matchers  []Matcher `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
}

// Silence implements recovery.Silencer: POST /api/v2/silences.
func (c *Client) Silence(ctx context.Context, x *recovery.Execution, startsAt, endsAt time.Time) (string, error) {
	m, err := Matchers(x.Event.Labels)
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(silence{Matchers: m, StartsAt: startsAt.UTC(), EndsAt: endsAt.UTC(),
		CreatedBy: CreatedBy, Comment: Comment(x)})
	if err != nil {
		return "", err
	}
	var out struct {
		SilenceID string `json:"silenceID"`
	}
	status, answer, err := c.call(ctx, http.MethodPost, "/api/v2/silences", body)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("silence refused by Alertmanager: %d %s", status, answer)
	}
	if err := json.Unmarshal(answer, &out); err != nil || out.SilenceID == "" {
		return "", fmt.Errorf("no silence id in Alertmanager's answer: %s", answer)
	}
	return out.SilenceID, nil
}

// Expire implements recovery.Silencer: DELETE /api/v2/silence/{id}. A silence
// Alertmanager no longer has (404), or that already expired, is done.
func (c *Client) Expire(ctx context.Context, id string) error {
	status, answer, err := c.call(ctx, http.MethodDelete, "/api/v2/silence/"+url.PathEscape(id), nil)
	switch {
	case err != nil:
		return err
	case status == http.StatusOK, status == http.StatusNotFound:
		return nil
	case bytes.Contains(answer, []byte("already expired")):
		return nil // Alertmanager 0.25 answers 500 for it
	}
	return fmt.Errorf("expiry of silence %s refused by Alertmanager: %d %s", id, status, answer)
}

// call sends one request; the answer's body is cut to what an error may show.
// A transport error names the Alertmanager without the URL's credentials.
func (c *Client) call(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	u := *c.base
	u.Path += path
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the URL
		}
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			err = cause
		}
		return 0, nil, fmt.Errorf("cannot reach Alertmanager at %s: %w", c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read Alertmanager's answer: %w", err)
	}
	return resp.StatusCode, bytes.TrimSpace([]byte(recovery.CutText(string(answer), 512))), nil
}
