package slacktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Block Kit limits Slack enforces on chat.postMessage, chat.update,
// chat.postEphemeral and response_url messages.
const (
	maxMessageBlocks   = 50
	maxViewBlocks      = 100
	maxBlocksJSONChars = 12000 // beyond: msg_blocks_too_long
	maxMessageText     = 40000 // beyond: msg_too_long
	maxSectionText     = 3000
	maxSectionFields   = 10
	maxSectionField    = 2000
	maxHeaderText      = 150
	maxBlockID         = 255
	maxActionID        = 255
	maxActionsElements = 25
	maxContextElements = 10
	maxButtonText      = 75
	maxButtonValue     = 2000
	maxURL             = 3000
	maxViewTitle       = 24
	maxCallbackID      = 255
	maxPrivateMetadata = 3000
)

// apiError is a Slack error answer: the code plus the response_metadata
// messages Slack adds for invalid_blocks and invalid_arguments.
type apiError struct {
	code     string
	messages []string
}

func (e *apiError) Error() string { return e.code }

func errCode(code string) *apiError { return &apiError{code: code} }

type textObject struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type rawBlock struct {
	Type      string            `json:"type"`
	BlockID   *string           `json:"block_id"`
	Text      *textObject       `json:"text"`
	Fields    []textObject      `json:"fields"`
	Elements  []json.RawMessage `json:"elements"`
	Accessory json.RawMessage   `json:"accessory"`
	Label     *textObject       `json:"label"`
	Element   json.RawMessage   `json:"element"`
}

type rawElement struct {
	Type     string      `json:"type"`
	ActionID *string     `json:"action_id"`
	Text     *textObject `json:"text"`
	Value    *string     `json:"value"`
	URL      *string     `json:"url"`
}

// normalizeBlocks validates a blocks array as Slack does and returns it as
// Slack stores it: blocks without a block_id get a generated one, which is
// what interaction payloads then carry. limit is 50 for messages, 100 for
// views; checkSize applies the 12,000-character message limit.
func (s *Server) normalizeBlocksLocked(raw string, limit int, checkSize bool) (json.RawMessage, *apiError) {
	var blocks []json.RawMessage
	if err := json.Unmarshal([]byte(raw), &blocks); err != nil {
		return nil, errCode("invalid_blocks_format")
	}
	if len(blocks) > limit {
		return nil, &apiError{code: "invalid_blocks", messages: []string{
			fmt.Sprintf("[ERROR] no more than %d items allowed [json-pointer:/blocks]", limit),
		}}
	}
	seen := map[string]bool{}
	for i, b := range blocks {
		var rb rawBlock
		if err := json.Unmarshal(b, &rb); err != nil {
			return nil, invalidBlock(i, "", "must be an object")
		}
		if rb.BlockID != nil {
			if n := utf8.RuneCountInString(*rb.BlockID); n == 0 || n > maxBlockID {
				return nil, invalidBlock(i, "/block_id", fmt.Sprintf("must be between 1 and %d characters", maxBlockID))
			}
			if seen[*rb.BlockID] {
				return nil, invalidBlock(i, "/block_id", "block_id already exists")
			}
			seen[*rb.BlockID] = true
		}
		if e := validateBlock(i, rb); e != nil {
			return nil, e
		}
	}
	// Slack measures the blocks it was given, after the per-block checks.
	if checkSize && utf8.RuneCountInString(raw) > maxBlocksJSONChars {
		return nil, errCode("msg_blocks_too_long")
	}
	out := make([]json.RawMessage, len(blocks))
	for i, b := range blocks {
		var rb rawBlock
		_ = json.Unmarshal(b, &rb)
		if rb.BlockID != nil {
			out[i] = b
			continue
		}
		var m map[string]json.RawMessage
		_ = json.Unmarshal(b, &m)
		id, _ := json.Marshal(s.blockIDLocked(seen))
		m["block_id"] = id
		out[i], _ = json.Marshal(m)
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, b := range out {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

// blockIDLocked makes a short id like the ones Slack assigns ("a1B2c").
func (s *Server) blockIDLocked(seen map[string]bool) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	for {
		x := uint32(s.nextSeqLocked()) * 2654435761 // Knuth's multiplicative hash
		id := make([]byte, 0, 5)
		for range 5 {
			id = append(id, alphabet[x%uint32(len(alphabet))])
			x /= uint32(len(alphabet))
		}
		if !seen[string(id)] {
			seen[string(id)] = true
			return string(id)
		}
	}
}

func invalidBlock(i int, pointer, msg string) *apiError {
	return &apiError{code: "invalid_blocks", messages: []string{
		fmt.Sprintf("[ERROR] %s [json-pointer:/blocks/%d%s]", msg, i, pointer),
	}}
}

func tooLong(i int, pointer string, max int) *apiError {
	return invalidBlock(i, pointer, fmt.Sprintf("must be less than %d characters", max+1))
}

func validateBlock(i int, b rawBlock) *apiError {
	switch b.Type {
	case "section":
		if b.Text == nil && len(b.Fields) == 0 {
			return invalidBlock(i, "", "must provide either text or fields")
		}
		if b.Text != nil && utf8.RuneCountInString(b.Text.Text) > maxSectionText {
			return tooLong(i, "/text/text", maxSectionText)
		}
		if b.Text != nil && b.Text.Text == "" {
			return invalidBlock(i, "/text/text", "must be more than 0 characters")
		}
		if len(b.Fields) > maxSectionFields {
			return invalidBlock(i, "/fields", fmt.Sprintf("no more than %d items allowed", maxSectionFields))
		}
		for j, f := range b.Fields {
			if utf8.RuneCountInString(f.Text) > maxSectionField {
				return tooLong(i, fmt.Sprintf("/fields/%d/text", j), maxSectionField)
			}
		}
		if len(b.Accessory) > 0 {
			return validateElement(i, "/accessory", b.Accessory, map[string]bool{})
		}
	case "header":
		if b.Text == nil || b.Text.Type != "plain_text" {
			return invalidBlock(i, "/text", "must be a plain_text object")
		}
		if utf8.RuneCountInString(b.Text.Text) > maxHeaderText {
			return tooLong(i, "/text/text", maxHeaderText)
		}
	case "actions":
		if len(b.Elements) == 0 || len(b.Elements) > maxActionsElements {
			return invalidBlock(i, "/elements", fmt.Sprintf("must have between 1 and %d items", maxActionsElements))
		}
		ids := map[string]bool{}
		for j, e := range b.Elements {
			if err := validateElement(i, fmt.Sprintf("/elements/%d", j), e, ids); err != nil {
				return err
			}
		}
	case "context":
		if len(b.Elements) == 0 || len(b.Elements) > maxContextElements {
			return invalidBlock(i, "/elements", fmt.Sprintf("must have between 1 and %d items", maxContextElements))
		}
	case "input":
		if b.Label == nil || len(b.Element) == 0 {
			return invalidBlock(i, "", "must provide label and element")
		}
	case "divider", "image", "file", "video", "rich_text":
	case "":
		return invalidBlock(i, "/type", "missing required field: type")
	default:
		return invalidBlock(i, "/type", fmt.Sprintf("unsupported type: %s", b.Type))
	}
	return nil
}

func validateElement(i int, pointer string, raw json.RawMessage, actionIDs map[string]bool) *apiError {
	var e rawElement
	if err := json.Unmarshal(raw, &e); err != nil {
		return invalidBlock(i, pointer, "must be an object")
	}
	if e.ActionID != nil {
		if utf8.RuneCountInString(*e.ActionID) > maxActionID {
			return tooLong(i, pointer+"/action_id", maxActionID)
		}
		// Slack wants action_ids unique within their block.
		if actionIDs[*e.ActionID] {
			return invalidBlock(i, pointer+"/action_id", "action_id already exists")
		}
		actionIDs[*e.ActionID] = true
	}
	if e.Type == "button" {
		if e.Text == nil || e.Text.Type != "plain_text" {
			return invalidBlock(i, pointer+"/text", "must be a plain_text object")
		}
		if utf8.RuneCountInString(e.Text.Text) > maxButtonText {
			return tooLong(i, pointer+"/text/text", maxButtonText)
		}
		if e.Value != nil && utf8.RuneCountInString(*e.Value) > maxButtonValue {
			return tooLong(i, pointer+"/value", maxButtonValue)
		}
		if e.URL != nil && utf8.RuneCountInString(*e.URL) > maxURL {
			return tooLong(i, pointer+"/url", maxURL)
		}
	}
	return nil
}

// findElement returns the interactive element (action_id in block_id) of a
// stored blocks array, or nil.
func findElement(blocks json.RawMessage, blockID, actionID string) map[string]json.RawMessage {
	var bs []rawBlock
	if json.Unmarshal(blocks, &bs) != nil {
		return nil
	}
	for _, b := range bs {
		if b.BlockID == nil || *b.BlockID != blockID {
			continue
		}
		cands := b.Elements
		if len(b.Accessory) > 0 {
			cands = append(cands, b.Accessory)
		}
		if len(b.Element) > 0 {
			cands = append(cands, b.Element)
		}
		for _, c := range cands {
			var m map[string]json.RawMessage
			if json.Unmarshal(c, &m) != nil {
				continue
			}
			var id string
			_ = json.Unmarshal(m["action_id"], &id)
			if id == actionID {
				return m
			}
		}
	}
	return nil
}
