package slacktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// responseURL is a hooks URL handed out with a slash command or an
// interaction. For interactions, messageTS names the source message.
type responseURL struct {
	kind      string // "commands" or "actions"
	channel   string
	user      string
	messageTS string
	ephemeral bool // the source message is an ephemeral
}

func (s *Server) newResponseURLLocked(kind, channel, user, messageTS string, ephemeral bool) string {
	n := s.nextSeqLocked()
	path := fmt.Sprintf("/hooks/%s/%s/%d/%016x", kind, teamID, n, s.nowLocked().UnixNano()^int64(n))
	s.responseURLs[path] = &responseURL{kind: kind, channel: channel, user: user, messageTS: messageTS, ephemeral: ephemeral}
	return s.http.URL + path
}

// serveResponseURL accepts the JSON Slack accepts on a response_url (what
// slack.MsgOptionResponseURL / MsgOptionReplaceOriginal send) and answers
// {"ok":true}. Calls are recorded under the method "response_url".
func (s *Server) serveResponseURL(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	req := &request{method: "response_url", params: map[string]string{}}
	var obj map[string]json.RawMessage
	if err == nil {
		err = json.Unmarshal(body, &obj)
	}
	for k, v := range obj {
		var str string
		if json.Unmarshal(v, &str) == nil {
			req.params[k] = str
		} else {
			req.params[k] = string(v)
		}
	}
	req.params["url"] = r.URL.Path

	s.mu.Lock()
	ru, ok := s.responseURLs[r.URL.Path]
	var apiErr *apiError
	switch {
	case !ok:
		apiErr = errCode("no_active_hooks")
	case err != nil:
		apiErr = errCode("invalid_payload")
	default:
		apiErr = s.respondLocked(ru, body, "response_url")
	}
	code := ""
	if apiErr != nil {
		code = apiErr.code
	}
	s.recordLocked("response_url", req, http.StatusOK, code)
	s.mu.Unlock()

	if !ok {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "no_active_hooks")
		return
	}
	if apiErr != nil {
		resp := map[string]any{"ok": false, "error": apiErr.code}
		if len(apiErr.messages) > 0 {
			resp["response_metadata"] = map[string]any{"messages": apiErr.messages}
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

// respondLocked applies a response_url (or slash ack) message: delete or
// replace the source message, or post a new one, ephemeral unless
// response_type is "in_channel".
func (s *Server) respondLocked(ru *responseURL, body json.RawMessage, source string) *apiError {
	var msg struct {
		Text            *string         `json:"text"`
		Blocks          json.RawMessage `json:"blocks"`
		Attachments     json.RawMessage `json:"attachments"`
		ResponseType    string          `json:"response_type"`
		ReplaceOriginal bool            `json:"replace_original"`
		DeleteOriginal  bool            `json:"delete_original"`
		ThreadTS        string          `json:"thread_ts"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		return errCode("invalid_payload")
	}
	p := map[string]string{}
	if msg.Text != nil {
		p["text"] = *msg.Text
	}
	if len(msg.Blocks) > 0 && string(msg.Blocks) != "null" {
		p["blocks"] = string(msg.Blocks)
	}
	if len(msg.Attachments) > 0 && string(msg.Attachments) != "null" {
		p["attachments"] = string(msg.Attachments)
	}
	c, apiErr := s.messageContentLocked(p)
	if apiErr != nil {
		return apiErr
	}
	defer s.notifyLocked()

	if ru.kind == "actions" && (msg.DeleteOriginal || msg.ReplaceOriginal) {
		if ru.ephemeral {
			e := s.ephemeralLocked(ru.channel, ru.messageTS)
			if e == nil {
				return errCode("message_not_found")
			}
			if msg.DeleteOriginal {
				e.Deleted = true
				return nil
			}
			e.Text, e.Blocks = c.text, c.blocks
			return nil
		}
		m := s.messageLocked(ru.channel, ru.messageTS)
		if m == nil || m.Deleted {
			return errCode("message_not_found")
		}
		if msg.DeleteOriginal {
			m.Deleted = true
			return nil
		}
		// replace_original replaces the whole message.
		c.hasText, c.hasBlocks, c.hasAtt = true, true, true
		s.updateLocked(m, c)
		return nil
	}
	if c.empty() {
		return errCode("no_text")
	}
	if msg.ResponseType == "in_channel" {
		s.postLocked(ru.channel, msg.ThreadTS, botUserID, botID, c)
		return nil
	}
	s.postEphemeralLocked(ru.channel, ru.user, msg.ThreadTS, c, source)
	return nil
}
