// Package claude is the AI planner: it asks Claude (the Anthropic Messages API)
// which runbook fits an event or a question, through a forced tool call so the
// answer is structured. It speaks plain HTTP rather than the SDK: one endpoint,
// full control of deadlines and retries (none: a slow AI must never hold up a
// plan), no new dependency tree, and tests against an httptest server.
package claude

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/recoverbot/recoverbot/recovery"
)

var _ recovery.Advisor = (*Client)(nil)

// DefaultModel is used when RECOVERBOT_AI_MODEL is unset.
const DefaultModel = "claude-sonnet-4-5"

// APIVersion is the anthropic-version header the request shapes follow.
const APIVersion = "2023-06-01"

// Client calls the Messages API.
type Client struct {
	BaseURL string // ANTHROPIC_BASE_URL, default https://api.anthropic.com
	APIKey  string
	Model   string
	HTTP    *http.Client
}

// New returns a client; baseURL "" means the public API.
func New(apiKey, baseURL, model string) *Client {
	if baseURL == "" {
		baseURL = "https://api.anthropic.com"
	}
	if model == "" {
		model = DefaultModel
	}
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), APIKey: apiKey, Model: model, HTTP: &http.Client{}}
}

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type tool struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	InputSchema map[string]any `json:"input_schema"`
}

type request struct {
	Model      string         `json:"model"`
	MaxTokens  int            `json:"max_tokens"`
	System     string         `json:"system"`
	Messages   []message      `json:"messages"`
	Tools      []tool         `json:"tools,omitempty"`
	ToolChoice map[string]any `json:"tool_choice,omitempty"`
}

type contentBlock struct {
	Type  string          `json:"type"`
	Text  string          `json:"text"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type response struct {
	Content    []contentBlock `json:"content"`
	StopReason string         `json:"stop_reason"`
	Error      *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// StatusError is a non-2xx answer (429: rate limited; 529: overloaded).
type StatusError struct {
	Status int
	Type   string
	Msg    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("anthropic API %d %s: %s", e.Status, e.Type, e.Msg)
}

func (c *Client) call(ctx context.Context, req request) (*response, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/v1/messages", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("content-type", "application/json")
	hr.Header.Set("x-api-key", c.APIKey)
	hr.Header.Set("anthropic-version", APIVersion)
	resp, err := c.HTTP.Do(hr)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return nil, cause
		}
		return nil, errors.New("anthropic API unreachable") // the URL is not repeated: it may carry secrets
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("anthropic API: reading the answer: %w", err)
	}
	var r response
	jsonErr := json.Unmarshal(raw, &r)
	if resp.StatusCode/100 != 2 {
		se := &StatusError{Status: resp.StatusCode}
		if jsonErr == nil && r.Error != nil {
			se.Type, se.Msg = r.Error.Type, r.Error.Message
		}
		return nil, se
	}
	if jsonErr != nil {
		return nil, fmt.Errorf("anthropic API: malformed answer: %w", jsonErr)
	}
	return &r, nil
}

const system = `You help an SRE bot choose a recovery runbook. You may only choose from the catalogue given, by its exact name, or "none". Give context values only for the parameters that runbook lists, with values taken from the event or question (never invented wildcards, paths or commands). Be conservative: if unsure, answer "none" or a low confidence. A human approves every plan you propose.`

var proposeTool = tool{
	Name:        "propose_runbook",
	Description: "Propose one runbook from the catalogue, or none, with its context values.",
	InputSchema: map[string]any{
		"type": "object",
		"properties": map[string]any{
			"runbook":    map[string]any{"type": "string", "description": "exact catalogue name, or \"none\""},
			"context":    map[string]any{"type": "object", "description": "values for the runbook's declared parameters only"},
			"confidence": map[string]any{"type": "number", "minimum": 0, "maximum": 1},
			"rationale":  map[string]any{"type": "string", "description": "one or two sentences"},
		},
		"required": []string{"runbook", "confidence", "rationale"},
	},
}

// Propose implements recovery.Advisor.
func (c *Client) Propose(ctx context.Context, req recovery.AdviceRequest) (recovery.AIProposal, error) {
	input := map[string]any{"catalogue": req.Catalogue}
	if req.Event != nil {
		input["event"] = req.Event
	}
	if req.Question != "" {
		input["question"] = req.Question
	}
	prompt, _ := json.Marshal(input)
	r, err := c.call(ctx, request{Model: c.Model, MaxTokens: 1024, System: system,
		Messages: []message{{Role: "user", Content: string(prompt)}},
		Tools:    []tool{proposeTool}, ToolChoice: map[string]any{"type": "tool", "name": proposeTool.Name}})
	if err != nil {
		return recovery.AIProposal{}, err
	}
	for _, b := range r.Content {
		if b.Type != "tool_use" || b.Name != proposeTool.Name {
			continue
		}
		var p recovery.AIProposal
		dec := json.NewDecoder(bytes.NewReader(b.Input))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return recovery.AIProposal{}, fmt.Errorf("anthropic API: the proposal is not the expected shape: %w", err)
		}
		p.Model = c.Model
		return p, nil
	}
	return recovery.AIProposal{}, errors.New("anthropic API: the answer holds no propose_runbook call")
}

// Explain implements recovery.Advisor: a few sentences on the failure and the plan.
func (c *Client) Explain(ctx context.Context, x *recovery.Execution) (string, error) {
	plan, _ := json.Marshal(map[string]any{"event": x.Event, "runbook": x.Runbook, "actions": x.Actions, "reasons": x.Reasons})
	r, err := c.call(ctx, request{Model: c.Model, MaxTokens: 300,
		System:   "Explain to an on-call engineer, in at most three short sentences, what failed and what this recovery plan will do. Plain text.",
		Messages: []message{{Role: "user", Content: string(plan)}}})
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, c := range r.Content {
		if c.Type == "text" {
			b.WriteString(c.Text)
		}
	}
	if b.Len() == 0 {
		return "", errors.New("anthropic API: no text in the explanation")
	}
	return b.String(), nil
}
