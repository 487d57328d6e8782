package slacktest

import (
	"encoding/json"
	"fmt"
	"strings"
)

// envelope is one Socket Mode request the server sent. attempts counts
// deliveries (Redeliver adds one); acks holds each ack's payload; acked is
// the attempts count when the last ack arrived (0: never acked).
type envelope struct {
	id       string
	typ      string
	payload  json.RawMessage
	accepts  bool
	attempts int
	acks     []json.RawMessage
	acked    int

	channel, user string // slash_commands: where an ack payload answer goes
	viewID        string // view_submission: the view an ack payload acts on
}

func (e *envelope) frame(retryReason string) []byte {
	f := map[string]any{
		"envelope_id":              e.id,
		"payload":                  e.payload,
		"type":                     e.typ,
		"accepts_response_payload": e.accepts,
	}
	// Slack puts the retry fields on events_api envelopes, and on any
	// envelope it retries.
	if e.typ == "events_api" || e.attempts > 1 {
		f["retry_attempt"] = e.attempts - 1
		f["retry_reason"] = retryReason
	}
	b, _ := json.Marshal(f)
	return b
}

func (s *Server) newEnvelopeLocked(typ string, payload any, accepts bool) *envelope {
	p, err := json.Marshal(payload)
	if err != nil {
		panic(fmt.Sprintf("slacktest: marshal %s payload: %v", typ, err))
	}
	n := s.nextSeqLocked()
	e := &envelope{
		id:       fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", n, n%0xffff, n%0xfff, n%0xfff, s.nowLocked().UnixNano()),
		typ:      typ,
		payload:  p,
		accepts:  accepts,
		attempts: 1,
	}
	s.envelopes[e.id] = e
	s.notifyLocked()
	return e
}

func (s *Server) send(e *envelope, retryReason string) string {
	s.dispatch(e.frame(retryReason))
	return e.id
}

func (s *Server) mustUserLocked(id string) *user {
	u, ok := s.users[id]
	if !ok {
		panic(fmt.Sprintf("slacktest: unknown user %q: call AddUser first", id))
	}
	return u
}

func (s *Server) mustChannelLocked(id string) *channel {
	c, ok := s.channels[id]
	if !ok {
		panic(fmt.Sprintf("slacktest: unknown channel %q: call AddChannel first", id))
	}
	return c
}

func userRef(u *user) map[string]any {
	return map[string]any{"id": u.id, "username": u.name, "name": u.name, "team_id": teamID}
}

func teamRef() map[string]any {
	return map[string]any{"id": teamID, "domain": teamDomain}
}

// SlashCommand delivers a slash_commands envelope as Slack does when user
// types "command text" in channel (command starts with "/"). It returns the
// envelope id for WaitAck. It panics if the user or channel is unknown,
// which Slack could never send.
func (s *Server) SlashCommand(user, channel, command, text string) (envelopeID string) {
	if !strings.HasPrefix(command, "/") {
		panic(fmt.Sprintf("slacktest: slash command %q must start with /", command))
	}
	s.mu.Lock()
	u := s.mustUserLocked(user)
	c := s.mustChannelLocked(channel)
	payload := map[string]any{
		"token":       verifyToken,
		"team_id":     teamID,
		"team_domain": teamDomain,
		"channel_id":  c.id,
		"channel_name": func() string {
			if c.isIM {
				return "directmessage"
			}
			return c.name
		}(),
		"user_id":    u.id,
		"user_name":  u.name,
		"command":    command,
		"text":       text,
		"api_app_id": appID,
		// Slack sends this one as a string in socket mode; slack-go v0.12.5
		// parses either form.
		"is_enterprise_install": "false",
		"response_url":          s.newResponseURLLocked("commands", c.id, u.id, "", false),
		"trigger_id":            s.issueTriggerLocked(u.id),
	}
	e := s.newEnvelopeLocked("slash_commands", payload, true)
	e.channel, e.user = c.id, u.id
	s.mu.Unlock()
	return s.send(e, "")
}

// Click delivers an interactive block_actions envelope for a button press on
// the message (or ephemeral message) at messageTS. The payload carries the
// message as the server stores it now (its blocks, with generated
// block_ids) and, as Slack does, no top-level message_ts. It panics if the
// user, channel or message is unknown.
func (s *Server) Click(user, channel, messageTS, actionID, blockID, value string) (envelopeID string) {
	s.mu.Lock()
	u := s.mustUserLocked(user)
	c := s.mustChannelLocked(channel)
	e, err := s.clickLocked(u, c, messageTS, actionID, blockID, value, false)
	s.mu.Unlock()
	if err != nil {
		panic("slacktest: " + err.Error())
	}
	return s.send(e, "")
}

// Press is what a person's click in a Slack client does: it presses the
// button blockID/actionID that the message (or the user's ephemeral
// message) at messageTS shows now, with the value the app gave it, and
// delivers the block_actions envelope Click sends. Unlike Click it never
// panics: an unknown user, channel, message or button is an error, since
// its caller (a person, through internal/demo) may name anything.
func (s *Server) Press(user, channel, messageTS, blockID, actionID string) (envelopeID string, err error) {
	s.mu.Lock()
	u, ok := s.users[user]
	c, cok := s.channels[channel]
	var e *envelope
	switch {
	case !ok:
		err = fmt.Errorf("unknown user %q", user)
	case !cok:
		err = fmt.Errorf("unknown channel %q", channel)
	default:
		e, err = s.clickLocked(u, c, messageTS, actionID, blockID, "", true)
	}
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	return s.send(e, ""), nil
}

// clickLocked builds a block_actions envelope. With press, the button must
// exist in the message's blocks and its own value is sent.
func (s *Server) clickLocked(u *user, c *channel, messageTS, actionID, blockID, value string, press bool) (*envelope, error) {
	container := map[string]any{"type": "message", "message_ts": messageTS, "channel_id": c.id, "is_ephemeral": false, "is_app_unfurl": false}
	payload := map[string]any{
		"type":                  "block_actions",
		"user":                  userRef(u),
		"api_app_id":            appID,
		"token":                 verifyToken,
		"container":             container,
		"team":                  teamRef(),
		"enterprise":            nil,
		"is_enterprise_install": false,
		"channel":               map[string]any{"id": c.id, "name": c.name},
		"state":                 map[string]any{"values": map[string]any{}},
	}
	var blocks json.RawMessage
	var respond func() string
	if m := s.messageLocked(c.id, messageTS); m != nil && !m.Deleted {
		blocks = m.Blocks
		payload["message"] = s.messageJSONLocked(m)
		if m.ThreadTS != "" {
			container["thread_ts"] = m.ThreadTS
		}
		respond = func() string { return s.newResponseURLLocked("actions", c.id, u.id, m.TS, false) }
	} else if e := s.ephemeralLocked(c.id, messageTS); e != nil && !e.Deleted && e.User == u.id {
		// Slack omits the message of an ephemeral; only response_url can
		// change it.
		blocks = e.Blocks
		container["is_ephemeral"] = true
		respond = func() string { return s.newResponseURLLocked("actions", c.id, u.id, e.TS, true) }
	} else {
		return nil, fmt.Errorf("no message %s in %s for %s to click", messageTS, c.id, u.id)
	}
	el := findElement(blocks, blockID, actionID)
	if press {
		if el == nil || string(el["type"]) != `"button"` {
			return nil, fmt.Errorf("message %s has no button %s in block %s", messageTS, actionID, blockID)
		}
		_ = json.Unmarshal(el["value"], &value)
	}
	payload["trigger_id"] = s.issueTriggerLocked(u.id)
	payload["response_url"] = respond()
	action := map[string]any{
		"action_id": actionID,
		"block_id":  blockID,
		"type":      "button",
		"value":     value,
		"action_ts": s.nextTSLocked(),
	}
	if el != nil {
		for _, k := range []string{"type", "text", "style"} {
			if v, ok := el[k]; ok {
				action[k] = v
			}
		}
		if string(el["type"]) == `"static_select"` {
			action["selected_option"] = map[string]any{"text": map[string]any{"type": "plain_text", "text": value}, "value": value}
			delete(action, "value")
		}
	}
	payload["actions"] = []any{action}
	return s.newEnvelopeLocked("interactive", payload, false), nil
}

// SubmitView delivers a view_submission for an open modal. values maps
// block_id → action_id → the text typed into a plain_text_input. The ack
// payload's response_action is applied as Slack would (none or "clear"
// closes the modal, "errors" keeps it open, "update" replaces it).
func (s *Server) SubmitView(user, viewID string, values map[string]map[string]string) (envelopeID string) {
	s.mu.Lock()
	u := s.mustUserLocked(user)
	v := s.viewLocked(viewID)
	if v == nil || v.Closed || v.Type != "modal" {
		s.mu.Unlock()
		panic(fmt.Sprintf("slacktest: no open modal %q to submit", viewID))
	}
	state := map[string]any{}
	for block, actions := range values {
		m := map[string]any{}
		for action, text := range actions {
			m[action] = map[string]any{"type": "plain_text_input", "value": text}
		}
		state[block] = m
	}
	vj := s.viewJSONLocked(v)
	vj["state"] = map[string]any{"values": state}
	payload := map[string]any{
		"type":                  "view_submission",
		"team":                  teamRef(),
		"user":                  userRef(u),
		"api_app_id":            appID,
		"token":                 verifyToken,
		"trigger_id":            s.issueTriggerLocked(u.id),
		"view":                  vj,
		"response_urls":         []any{},
		"is_enterprise_install": false,
		"enterprise":            nil,
	}
	e := s.newEnvelopeLocked("interactive", payload, true)
	e.viewID, e.user = v.ID, u.id
	s.mu.Unlock()
	return s.send(e, "")
}

// EventsAPI delivers an events_api envelope. event is either a complete
// event_callback payload (top-level "type":"event_callback") or just the
// inner event (e.g. {"type":"app_mention",...}), which is wrapped the way
// Slack wraps it.
func (s *Server) EventsAPI(event any) (envelopeID string) {
	raw, err := json.Marshal(event)
	if err != nil {
		panic(fmt.Sprintf("slacktest: marshal event: %v", err))
	}
	var top struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(raw, &top)
	s.mu.Lock()
	var payload any = json.RawMessage(raw)
	if top.Type != "event_callback" {
		payload = s.callbackLocked(raw)
	}
	e := s.newEnvelopeLocked("events_api", payload, false)
	s.mu.Unlock()
	return s.send(e, "")
}

func (s *Server) callbackLocked(inner json.RawMessage) map[string]any {
	n := s.nextSeqLocked()
	return map[string]any{
		"token":                 verifyToken,
		"team_id":               teamID,
		"context_team_id":       teamID,
		"context_enterprise_id": nil,
		"api_app_id":            appID,
		"event":                 inner,
		"type":                  "event_callback",
		"event_id":              fmt.Sprintf("Ev%010d", n),
		"event_time":            s.nowLocked().Unix(),
		"authorizations": []any{map[string]any{
			"enterprise_id": nil, "team_id": teamID, "user_id": botUserID,
			"is_bot": true, "is_enterprise_install": false,
		}},
		"is_ext_shared_channel": false,
		"event_context":         fmt.Sprintf("4-slacktest-%d", n),
	}
}

// AppMention posts text from user in channel (prefixed with the bot's
// mention if it lacks one), stores it as a channel message and delivers the
// app_mention event. It returns the envelope id and the message ts.
func (s *Server) AppMention(user, channel, text string) (envelopeID, ts string) {
	mention := "<@" + botUserID + ">"
	if !strings.Contains(text, mention) {
		text = mention + " " + text
	}
	s.mu.Lock()
	u := s.mustUserLocked(user)
	c := s.mustChannelLocked(channel)
	m := s.postLocked(c.id, "", u.id, "", content{text: text})
	s.notifyLocked()
	inner, _ := json.Marshal(map[string]any{
		"client_msg_id": fmt.Sprintf("%08x-0000-4000-8000-%012x", s.nextSeqLocked(), 0),
		"type":          "app_mention",
		"text":          text,
		"user":          u.id,
		"ts":            m.TS,
		"team":          teamID,
		"channel":       c.id,
		"event_ts":      m.TS,
	})
	e := s.newEnvelopeLocked("events_api", s.callbackLocked(inner), false)
	s.mu.Unlock()
	return s.send(e, ""), m.TS
}

// Redeliver sends an envelope again, as Slack retries one it considers
// unacknowledged: same envelope_id and payload, retry_attempt incremented,
// retry_reason "timeout". WaitAck then waits for the new delivery's ack.
func (s *Server) Redeliver(envelopeID string) {
	s.mu.Lock()
	e, ok := s.envelopes[envelopeID]
	if !ok {
		s.mu.Unlock()
		panic(fmt.Sprintf("slacktest: unknown envelope %q", envelopeID))
	}
	e.attempts++
	frame := e.frame("timeout")
	s.notifyLocked()
	s.mu.Unlock()
	s.dispatch(frame)
}

// applySlashAckLocked posts a slash command's ack payload the way Slack
// does: ephemeral to the user unless response_type is "in_channel".
func (s *Server) applySlashAckLocked(e *envelope, payload json.RawMessage) {
	if len(payload) == 0 || string(payload) == "null" {
		return
	}
	s.respondLocked(&responseURL{kind: "commands", channel: e.channel, user: e.user}, payload, "ack")
}

// applyViewAckLocked applies a view_submission ack's response_action.
func (s *Server) applyViewAckLocked(e *envelope, payload json.RawMessage) {
	v := s.viewLocked(e.viewID)
	if v == nil {
		return
	}
	var resp struct {
		ResponseAction string          `json:"response_action"`
		View           json.RawMessage `json:"view"`
	}
	if len(payload) > 0 {
		_ = json.Unmarshal(payload, &resp)
	}
	switch resp.ResponseAction {
	case "errors":
		return
	case "update", "push":
		nv, err := s.parseViewLocked(string(resp.View), "modal")
		if err != nil {
			return
		}
		if resp.ResponseAction == "update" {
			v.raw, v.Blocks, v.JSON, v.Title = nv.raw, nv.Blocks, nv.JSON, nv.Title
			v.CallbackID, v.PrivateMetadata = nv.CallbackID, nv.PrivateMetadata
			v.Hash = s.newHashLocked()
			v.Updates++
			return
		}
		nv.ID, nv.RootViewID, nv.PreviousViewID, nv.User = s.idLocked("V"), v.RootViewID, v.ID, v.User
		nv.Hash = s.newHashLocked()
		s.views = append(s.views, nv)
	case "clear": // the whole stack closes
		for _, x := range s.views {
			if x.RootViewID == v.RootViewID {
				x.Closed = true
			}
		}
	default: // a bare ack closes the submitted view only
		v.Closed = true
	}
}

// NewTriggerID issues a trigger_id for user, as an interaction would, for
// tests that drive a handler without a socket.
func (s *Server) NewTriggerID(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issueTriggerLocked(user)
}

// CloseView is a person pressing a modal's Close button: the view closes
// (the one below it in the stack, if any, shows again) and, when the app
// set notify_on_close, a view_closed envelope is delivered as Slack does.
// envelopeID is "" when none was. An unknown view, one already closed, or
// another user's is an error: a person can only close what they see.
func (s *Server) CloseView(user, viewID string) (envelopeID string, err error) {
	s.mu.Lock()
	u, ok := s.users[user]
	v := s.viewLocked(viewID)
	switch {
	case !ok:
		err = fmt.Errorf("unknown user %q", user)
	case v == nil || v.Type != "modal" || v.Closed || v.User != user:
		err = fmt.Errorf("%s has no open modal %q", user, viewID)
	}
	if err != nil {
		s.mu.Unlock()
		return "", err
	}
	v.Closed = true
	s.notifyLocked()
	if string(v.raw["notify_on_close"]) != "true" {
		s.mu.Unlock()
		return "", nil
	}
	payload := map[string]any{
		"type":                  "view_closed",
		"team":                  teamRef(),
		"user":                  userRef(u),
		"api_app_id":            appID,
		"token":                 verifyToken,
		"view":                  s.viewJSONLocked(v),
		"is_cleared":            false,
		"is_enterprise_install": false,
		"enterprise":            nil,
	}
	e := s.newEnvelopeLocked("interactive", payload, false)
	s.mu.Unlock()
	return s.send(e, ""), nil
}
