package slacktest

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

func TestBlockValidation(t *testing.T) {
	s := newServer(t)
	section := func(text string) string {
		b, _ := json.Marshal(map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": text}})
		return string(b)
	}
	button := func(text, value string) string {
		b, _ := json.Marshal(map[string]any{"type": "actions", "elements": []any{map[string]any{
			"type": "button", "action_id": "a", "text": map[string]any{"type": "plain_text", "text": text}, "value": value,
		}}})
		return string(b)
	}
	list := func(blocks ...string) string { return "[" + strings.Join(blocks, ",") + "]" }
	many := func(n int, b string) string { return list(strings.Split(strings.Repeat(b+"\x00", n-1)+b, "\x00")...) }

	tests := []struct {
		name   string
		blocks string
		want   string
	}{
		{"plain section is ok", list(section("hi")), ""},
		{"empty array with text is ok", "[]", ""},
		{"not json is invalid_blocks_format", "[{", "invalid_blocks_format"},
		{"object is invalid_blocks_format", `{"type":"divider"}`, "invalid_blocks_format"},
		{"51 blocks is invalid_blocks", many(51, `{"type":"divider"}`), "invalid_blocks"},
		{"section of 3001 chars is invalid_blocks", list(section(strings.Repeat("é", 3001))), "invalid_blocks"},
		{"section of 3000 multibyte chars is ok", list(section(strings.Repeat("é", 3000))), ""},
		{"empty section text is invalid_blocks", list(section("")), "invalid_blocks"},
		{"11 fields is invalid_blocks", list(`{"type":"section","fields":[` + strings.TrimSuffix(strings.Repeat(`{"type":"mrkdwn","text":"f"},`, 11), ",") + `]}`), "invalid_blocks"},
		{"header over 150 is invalid_blocks", list(`{"type":"header","text":{"type":"plain_text","text":"` + strings.Repeat("h", 151) + `"}}`), "invalid_blocks"},
		{"duplicate block_id is invalid_blocks", list(`{"type":"divider","block_id":"x"}`, `{"type":"divider","block_id":"x"}`), "invalid_blocks"},
		{"button text over 75 is invalid_blocks", list(button(strings.Repeat("b", 76), "v")), "invalid_blocks"},
		{"button value over 2000 is invalid_blocks", list(button("ok", strings.Repeat("v", 2001))), "invalid_blocks"},
		{"unknown block type is invalid_blocks", list(`{"type":"carousel"}`), "invalid_blocks"},
		{"over 12000 chars is msg_blocks_too_long", list(section(strings.Repeat("x", 2990)), section(strings.Repeat("x", 2990)), section(strings.Repeat("x", 2990)), section(strings.Repeat("x", 2990)), section(strings.Repeat("x", 100))), "msg_blocks_too_long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"token": {s.BotToken()}, "channel": {"C1"}, "text": {"fallback"}, "blocks": {tt.blocks}}
			body, err := httpRequest(t.Context(), s.APIURL()+"chat.postMessage", "application/x-www-form-urlencoded", form.Encode(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var resp struct {
				OK       bool   `json:"ok"`
				Error    string `json:"error"`
				Metadata struct {
					Messages []string `json:"messages"`
				} `json:"response_metadata"`
			}
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Error != tt.want {
				t.Errorf("error = %q (%v), want %q", resp.Error, resp.Metadata.Messages, tt.want)
			}
			if tt.want == "invalid_blocks" && len(resp.Metadata.Messages) == 0 {
				t.Errorf("invalid_blocks without response_metadata.messages")
			}
		})
	}
}

func TestWaitForCancelled(t *testing.T) {
	s := newServer(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.WaitFor(ctx, func(*Server) bool { return false }); err == nil {
		t.Fatal("WaitFor returned nil for a cancelled context")
	}
	if _, err := s.WaitAck(t.Context(), "nope"); err == nil {
		t.Fatal("WaitAck of an unknown envelope returned nil")
	}
	s.Close()
	s.Close() // idempotent
}
