// Package promcheck verifies recoveries against Prometheus's HTTP API: a query
// is healthy when it returns a non-empty result. It speaks the API directly
// rather than pulling the Prometheus module into the build.
package promcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

var _ recovery.Verifier = (*Client)(nil)

// ErrUnreachable is wrapped by every error of a call that never got an answer
// from Prometheus (connection refused, timeout): the answer is unknown, which
// start-up treats as a warning and verification as "unavailable".
var ErrUnreachable = errors.New("prometheus unreachable")

// Client queries one Prometheus server.
type Client struct {
	base *url.URL
	http *http.Client
}

// New returns a client for a Prometheus base URL (http://host:9090).
func New(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus url %q: want http(s)://host[:port]", base)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return &Client{base: u, http: hc}, nil
}

type apiResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

type queryData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`
	Values [][]any           `json:"values"`
}

// post calls an API endpoint with a form body; a transport error or a non-JSON
// answer is an error, as is {"status":"error"}.
func (c *Client) post(ctx context.Context, path string, form url.Values) (json.RawMessage, error) {
	u := *c.base
	u.Path += path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("prometheus: reading the answer: %w", err)
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("prometheus answered HTTP %d with something that is not its API's JSON", resp.StatusCode)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("prometheus %s: %s", r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// Check implements recovery.Verifier.
func (c *Client) Check(ctx context.Context, query string) (bool, string, error) {
	raw, err := c.post(ctx, "/api/v1/query", url.Values{"query": {query}})
	if err != nil {
		return false, "", err
	}
	var d queryData
	if err := json.Unmarshal(raw, &d); err != nil {
		return false, "", fmt.Errorf("prometheus: unexpected query data: %w", err)
	}
	switch d.ResultType {
	case "vector", "matrix":
		var ss []sample
		if err := json.Unmarshal(d.Result, &ss); err != nil {
			return false, "", fmt.Errorf("prometheus: unexpected %s: %w", d.ResultType, err)
		}
		if len(ss) == 0 {
			return false, "empty result", nil
		}
		v := describe(ss[0])
		if len(ss) > 1 {
			v += fmt.Sprintf(" (and %d more series)", len(ss)-1)
		}
		return true, v, nil
	case "scalar":
		// A bare number: healthy unless it is 0 (a PromQL comparison on scalars
		// needs the bool modifier, which yields 0 or 1).
		var pair []any
		if err := json.Unmarshal(d.Result, &pair); err != nil || len(pair) != 2 {
			return false, "", errors.New("prometheus: unexpected scalar result")
		}
		s := fmt.Sprint(pair[1])
		return s != "0", "scalar " + s, nil
	}
	return false, "", fmt.Errorf("prometheus: result type %q cannot be judged healthy or not", d.ResultType)
}

func describe(s sample) string {
	keys := make([]string, 0, len(s.Metric))
	for k := range s.Metric {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(s.Metric["__name__"])
	b.WriteByte('{')
	n := 0
	for _, k := range keys {
		if k == "__name__" {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, s.Metric[k])
		n++
	}
	b.WriteString("} = ")
	switch {
	case len(s.Value) == 2:
		fmt.Fprint(&b, s.Value[1])
	case len(s.Values) > 0 && len(s.Values[len(s.Values)-1]) == 2:
		fmt.Fprint(&b, s.Values[len(s.Values)-1][1])
	}
	return b.String()
}

// Validate asks Prometheus whether query parses (/api/v1/format_query), so an
// invalid verify query is a start-up error rather than a failed verification.
func (c *Client) Validate(ctx context.Context, query string) error {
	_, err := c.post(ctx, "/api/v1/format_query", url.Values{"query": {query}})
	return err
}
