package slacktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokenKind int

const (
	botTokenKind tokenKind = iota
	appTokenKind
)

// request is a decoded Web API call.
type request struct {
	method string
	token  string
	params map[string]string
}

type methodFunc func(s *Server, r *request) (map[string]any, *apiError)

type method struct {
	token tokenKind
	fn    methodFunc
}

// methodTable lists every Web API method served. Anything else answers
// unknown_method, so a call the bot starts making shows up at once.
func methodTable() map[string]method {
	return map[string]method{
		"auth.test":             {botTokenKind, (*Server).authTest},
		"apps.connections.open": {appTokenKind, (*Server).appsConnectionsOpen},
		"chat.postMessage":      {botTokenKind, (*Server).chatPostMessage},
		"chat.update":           {botTokenKind, (*Server).chatUpdate},
		"chat.postEphemeral":    {botTokenKind, (*Server).chatPostEphemeral},
		"chat.delete":           {botTokenKind, (*Server).chatDelete},
		"chat.scheduleMessage":  {botTokenKind, (*Server).chatScheduleMessage},
		"chat.getPermalink":     {botTokenKind, (*Server).chatGetPermalink},
		"views.open":            {botTokenKind, (*Server).viewsOpen},
		"views.push":            {botTokenKind, (*Server).viewsPush},
		"views.update":          {botTokenKind, (*Server).viewsUpdate},
		"views.publish":         {botTokenKind, (*Server).viewsPublish},
		"usergroups.users.list": {botTokenKind, (*Server).usergroupsUsersList},
		"usergroups.list":       {botTokenKind, (*Server).usergroupsList},
		"conversations.info":    {botTokenKind, (*Server).conversationsInfo},
		"conversations.open":    {botTokenKind, (*Server).conversationsOpen},
		"conversations.replies": {botTokenKind, (*Server).conversationsReplies},
		"users.info":            {botTokenKind, (*Server).usersInfo},
		"bots.info":             {botTokenKind, (*Server).botsInfo},
	}
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/api/")
	req, err := decodeRequest(name, r)
	if err != nil {
		s.record(name, req, http.StatusBadRequest, "invalid_form_data")
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_form_data"})
		return
	}

	s.mu.Lock()
	if f, ok := s.takeFaultLocked(name); ok {
		s.recordLocked(name, req, f.status, f.code)
		s.mu.Unlock()
		if f.status == http.StatusTooManyRequests {
			// Slack sends whole seconds; slack-go parses them with ParseInt.
			secs := int64(math.Ceil(f.retryAfter.Seconds()))
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			writeJSON(w, f.status, map[string]any{"ok": false, "error": f.code})
			return
		}
		if f.code == "" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(f.status)
			_, _ = io.WriteString(w, "<html><body>Service Unavailable</body></html>")
			return
		}
		writeJSON(w, f.status, map[string]any{"ok": false, "error": f.code})
		return
	}
	m, known := s.methods[name]
	var resp map[string]any
	var apiErr *apiError
	switch {
	case !known:
		apiErr = errCode("unknown_method")
	default:
		apiErr = checkToken(req.token, m.token)
	}
	if apiErr == nil {
		resp, apiErr = m.fn(s, req)
	}
	code := ""
	if apiErr != nil {
		code = apiErr.code
		resp = map[string]any{"ok": false, "error": apiErr.code}
		if len(apiErr.messages) > 0 {
			resp["response_metadata"] = map[string]any{"messages": apiErr.messages}
		}
		if !known {
			resp["req_method"] = name
		}
	} else {
		resp["ok"] = true
	}
	s.recordLocked(name, req, http.StatusOK, code)
	s.mu.Unlock()
	s.log.Debug("api call", "method", name, "error", code)
	writeJSON(w, http.StatusOK, resp)
}

func checkToken(token string, want tokenKind) *apiError {
	switch token {
	case "":
		return errCode("not_authed")
	case botToken:
		if want != botTokenKind {
			return errCode("not_allowed_token_type")
		}
	case appToken:
		if want != appTokenKind {
			return errCode("not_allowed_token_type")
		}
	default:
		return errCode("invalid_auth")
	}
	return nil
}

// decodeRequest accepts what slack-go sends: form bodies (token in the
// form), JSON bodies (token as Bearer) and GET queries.
func decodeRequest(name string, r *http.Request) (*request, error) {
	req := &request{method: name, params: map[string]string{}}
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		req.token = strings.TrimPrefix(auth, "Bearer ")
	}
	ctype, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ctype == "application/json" {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return req, err
		}
		for k, v := range r.URL.Query() {
			req.params[k] = v[0]
		}
		if len(bytes.TrimSpace(body)) > 0 {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(body, &obj); err != nil {
				return req, err
			}
			for k, v := range obj {
				var str string
				if json.Unmarshal(v, &str) == nil {
					req.params[k] = str
				} else {
					req.params[k] = string(v)
				}
			}
		}
	} else {
		if err := r.ParseForm(); err != nil {
			return req, err
		}
		for k, v := range r.Form {
			req.params[k] = v[0]
		}
	}
	if req.token == "" {
		req.token = req.params["token"]
	}
	delete(req.params, "token")
	return req, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) takeFaultLocked(name string) (fault, bool) {
	q := s.faults[name]
	if len(q) == 0 {
		return fault{}, false
	}
	s.faults[name] = q[1:]
	return q[0], true
}

func (s *Server) record(name string, req *request, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordLocked(name, req, status, code)
}

func (s *Server) recordLocked(name string, req *request, status int, code string) {
	c := Call{Method: name, Params: map[string]string{}, Status: status, Error: code, At: s.nowLocked()}
	if req != nil {
		for k, v := range req.params {
			c.Params[k] = v
		}
		switch {
		case req.params["blocks"] != "":
			c.Blocks = json.RawMessage(req.params["blocks"])
		case req.params["view"] != "":
			var v struct {
				Blocks json.RawMessage `json:"blocks"`
			}
			if json.Unmarshal([]byte(req.params["view"]), &v) == nil {
				c.Blocks = v.Blocks
			}
		}
	}
	s.calls = append(s.calls, c)
	s.notifyLocked()
}

func (s *Server) authTest(*request) (map[string]any, *apiError) {
	return map[string]any{
		"url":                   "https://" + teamDomain + ".slack.com/",
		"team":                  teamDomain,
		"user":                  botName,
		"team_id":               teamID,
		"user_id":               botUserID,
		"bot_id":                botID,
		"is_enterprise_install": false,
	}, nil
}

// appsConnectionsOpen hands out a single-use websocket URL, as Slack does.
func (s *Server) appsConnectionsOpen(*request) (map[string]any, *apiError) {
	if s.closed {
		return nil, errCode("internal_error")
	}
	ticket := fmt.Sprintf("%08x-%04x-4000-8000-%012x", s.nextSeqLocked(), s.nextSeqLocked(), s.nowLocked().UnixNano())
	s.tickets[ticket] = true
	return map[string]any{
		"url": wsURL(s.http.URL) + "/link/?ticket=" + ticket + "&app_id=" + appID,
	}, nil
}

// resolveChannelLocked maps a channel id, or a user id (a DM, as Slack
// allows for chat.postMessage), to a known conversation.
func (s *Server) resolveChannelLocked(id string) (*channel, *apiError) {
	if c, ok := s.channels[id]; ok {
		return c, nil
	}
	if u, ok := s.users[id]; ok && !u.isBot {
		return s.imLocked(u.id), nil
	}
	return nil, errCode("channel_not_found")
}

func (s *Server) imLocked(userID string) *channel {
	for _, c := range s.channels {
		if c.isIM && c.imUser == userID {
			return c
		}
	}
	c := &channel{id: "D" + strings.TrimLeft(userID, "UW"), isIM: true, imUser: userID, created: s.nowLocked().Unix()}
	s.channels[c.id] = c
	return c
}

// content validates and normalises text, blocks and attachments of a
// message request. present reports which were sent, for chat.update.
type content struct {
	text, blocksRaw, attachments string
	blocks                       json.RawMessage
	hasText, hasBlocks, hasAtt   bool
}

func (s *Server) messageContentLocked(p map[string]string) (content, *apiError) {
	var c content
	c.text, c.hasText = p["text"]
	c.blocksRaw, c.hasBlocks = p["blocks"]
	c.attachments, c.hasAtt = p["attachments"]
	if utf8.RuneCountInString(c.text) > maxMessageText {
		return c, errCode("msg_too_long")
	}
	if c.hasBlocks && c.blocksRaw != "" {
		b, err := s.normalizeBlocksLocked(c.blocksRaw, maxMessageBlocks, true)
		if err != nil {
			return c, err
		}
		c.blocks = b
	}
	if c.hasAtt && c.attachments != "" && !json.Valid([]byte(c.attachments)) {
		return c, errCode("invalid_attachments")
	}
	return c, nil
}

func (c content) empty() bool {
	return c.text == "" && !nonEmptyArray(c.blocks) && !nonEmptyArray(json.RawMessage(c.attachments))
}

func nonEmptyArray(raw json.RawMessage) bool {
	var a []json.RawMessage
	return json.Unmarshal(raw, &a) == nil && len(a) > 0
}

func (s *Server) chatPostMessage(r *request) (map[string]any, *apiError) {
	ch, err := s.resolveChannelLocked(r.params["channel"])
	if err != nil {
		return nil, err
	}
	c, err := s.messageContentLocked(r.params)
	if err != nil {
		return nil, err
	}
	if c.empty() {
		return nil, errCode("no_text")
	}
	m := s.postLocked(ch.id, r.params["thread_ts"], botUserID, botID, c)
	return map[string]any{"channel": ch.id, "ts": m.TS, "message": s.messageJSONLocked(m)}, nil
}

// postLocked stores a message. A thread_ts naming a reply is moved to that
// reply's parent, as Slack does.
func (s *Server) postLocked(channelID, threadTS, userID, bot string, c content) *message {
	if threadTS != "" {
		if p := s.messageLocked(channelID, threadTS); p != nil {
			if p.ThreadTS != "" {
				threadTS = p.ThreadTS
				p = s.messageLocked(channelID, threadTS)
			}
			if p != nil {
				p.ReplyCount++
			}
		}
	}
	now := s.nowLocked()
	m := &message{Message{
		Channel:     channelID,
		TS:          s.nextTSLocked(),
		ThreadTS:    threadTS,
		User:        userID,
		BotID:       bot,
		Text:        c.text,
		Blocks:      c.blocks,
		Attachments: json.RawMessage(c.attachments),
	}}
	if c.attachments == "" {
		m.Attachments = nil
	}
	m.History = []Revision{{Text: m.Text, Blocks: m.Blocks, At: now}}
	s.messages[channelID] = append(s.messages[channelID], m)
	return m
}

func (s *Server) messageJSONLocked(m *message) map[string]any {
	out := map[string]any{
		"type": "message",
		"text": m.Text,
		"user": m.User,
		"ts":   m.TS,
		"team": teamID,
	}
	if m.BotID != "" {
		out["bot_id"] = m.BotID
		out["app_id"] = appID
	}
	if len(m.Blocks) > 0 {
		out["blocks"] = m.Blocks
	}
	if len(m.Attachments) > 0 {
		out["attachments"] = m.Attachments
	}
	if m.ThreadTS != "" {
		out["thread_ts"] = m.ThreadTS
		out["parent_user_id"] = s.messageLocked(m.Channel, m.ThreadTS).userOr("")
	} else if m.ReplyCount > 0 {
		out["thread_ts"] = m.TS
		out["reply_count"] = m.ReplyCount
	}
	if len(m.History) > 1 {
		out["edited"] = map[string]any{"user": m.User, "ts": m.TS}
	}
	return out
}

func (m *message) userOr(def string) string {
	if m == nil {
		return def
	}
	return m.User
}

// ownMessageLocked finds the bot's own live message named by the channel and
// ts parameters, answering as Slack does when it is missing or someone else's.
func (s *Server) ownMessageLocked(r *request, notOwn string) (*channel, *message, *apiError) {
	ch, err := s.resolveChannelLocked(r.params["channel"])
	if err != nil {
		return nil, nil, err
	}
	m := s.messageLocked(ch.id, r.params["ts"])
	if m == nil || m.Deleted {
		return nil, nil, errCode("message_not_found")
	}
	if m.BotID != botID {
		return nil, nil, errCode(notOwn)
	}
	return ch, m, nil
}

func (s *Server) chatUpdate(r *request) (map[string]any, *apiError) {
	ch, m, err := s.ownMessageLocked(r, "cant_update_message")
	if err != nil {
		return nil, err
	}
	c, err := s.messageContentLocked(r.params)
	if err != nil {
		return nil, err
	}
	s.updateLocked(m, c)
	return map[string]any{"channel": ch.id, "ts": m.TS, "text": m.Text, "message": s.messageJSONLocked(m)}, nil
}

// updateLocked applies chat.update semantics: a field left out keeps its
// value; an empty blocks array removes the blocks.
func (s *Server) updateLocked(m *message, c content) {
	if c.hasText {
		m.Text = c.text
	}
	if c.hasBlocks {
		m.Blocks = c.blocks
	}
	if c.hasAtt {
		m.Attachments = json.RawMessage(c.attachments)
	}
	m.History = append(m.History, Revision{Text: m.Text, Blocks: m.Blocks, At: s.nowLocked()})
}

func (s *Server) chatPostEphemeral(r *request) (map[string]any, *apiError) {
	ch, err := s.resolveChannelLocked(r.params["channel"])
	if err != nil {
		return nil, err
	}
	if _, ok := s.users[r.params["user"]]; !ok {
		return nil, errCode("user_not_found")
	}
	c, err := s.messageContentLocked(r.params)
	if err != nil {
		return nil, err
	}
	if c.empty() {
		return nil, errCode("no_text")
	}
	e := s.postEphemeralLocked(ch.id, r.params["user"], r.params["thread_ts"], c, "chat.postEphemeral")
	return map[string]any{"message_ts": e.TS}, nil
}

func (s *Server) postEphemeralLocked(channelID, userID, threadTS string, c content, source string) *ephemeral {
	e := &ephemeral{Ephemeral{
		Channel:  channelID,
		User:     userID,
		TS:       s.nextTSLocked(),
		ThreadTS: threadTS,
		Text:     c.text,
		Blocks:   c.blocks,
		Source:   source,
	}}
	s.ephemerals = append(s.ephemerals, e)
	return e
}

func (s *Server) chatDelete(r *request) (map[string]any, *apiError) {
	ch, m, err := s.ownMessageLocked(r, "cant_delete_message")
	if err != nil {
		return nil, err
	}
	m.Deleted = true
	return map[string]any{"channel": ch.id, "ts": m.TS}, nil
}

func (s *Server) chatScheduleMessage(r *request) (map[string]any, *apiError) {
	ch, err := s.resolveChannelLocked(r.params["channel"])
	if err != nil {
		return nil, err
	}
	postAt, perr := strconv.ParseInt(r.params["post_at"], 10, 64)
	if perr != nil {
		return nil, errCode("invalid_time")
	}
	if postAt <= s.nowLocked().Unix() {
		return nil, errCode("time_in_past")
	}
	c, err := s.messageContentLocked(r.params)
	if err != nil {
		return nil, err
	}
	if c.empty() {
		return nil, errCode("no_text")
	}
	sm := ScheduledMessage{ID: s.idLocked("Q"), Channel: ch.id, PostAt: r.params["post_at"], Text: c.text, Blocks: c.blocks}
	s.scheduled = append(s.scheduled, sm)
	return map[string]any{
		"channel":              ch.id,
		"scheduled_message_id": sm.ID,
		"post_at":              postAt,
		"message":              map[string]any{"type": "message", "text": c.text, "bot_id": botID, "user": botUserID, "team": teamID},
	}, nil
}

func (s *Server) chatGetPermalink(r *request) (map[string]any, *apiError) {
	ch, err := s.resolveChannelLocked(r.params["channel"])
	if err != nil {
		return nil, err
	}
	m := s.messageLocked(ch.id, r.params["message_ts"])
	if m == nil || m.Deleted {
		return nil, errCode("message_not_found")
	}
	return map[string]any{
		"channel":   ch.id,
		"permalink": fmt.Sprintf("https://%s.slack.com/archives/%s/p%s", teamDomain, ch.id, strings.ReplaceAll(m.TS, ".", "")),
	}, nil
}

func (s *Server) usergroupsUsersList(r *request) (map[string]any, *apiError) {
	members, ok := s.groups[r.params["usergroup"]]
	if !ok {
		return nil, errCode("no_such_subteam")
	}
	return map[string]any{"users": nonNil(members)}, nil
}

func (s *Server) usergroupsList(r *request) (map[string]any, *apiError) {
	groups := []map[string]any{}
	for _, id := range s.groupOrder {
		g := map[string]any{
			"id": id, "team_id": teamID, "is_usergroup": true, "name": id, "handle": id,
			"user_count": len(s.groups[id]),
		}
		if r.params["include_users"] == "true" {
			g["users"] = nonNil(s.groups[id])
		}
		groups = append(groups, g)
	}
	return map[string]any{"usergroups": groups}, nil
}

func nonNil(a []string) []string {
	if a == nil {
		return []string{}
	}
	return a
}

func (s *Server) conversationsInfo(r *request) (map[string]any, *apiError) {
	c, ok := s.channels[r.params["channel"]]
	if !ok {
		return nil, errCode("channel_not_found")
	}
	return map[string]any{"channel": channelJSON(c)}, nil
}

func channelJSON(c *channel) map[string]any {
	if c.isIM {
		return map[string]any{
			"id": c.id, "created": c.created, "is_im": true, "is_org_shared": false,
			"user": c.imUser, "is_user_deleted": false, "priority": 0,
		}
	}
	return map[string]any{
		"id": c.id, "name": c.name, "name_normalized": c.name,
		"is_channel": true, "is_group": false, "is_im": false, "is_mpim": false,
		"is_private": false, "created": c.created, "is_archived": false, "is_general": false,
		"unlinked": 0, "is_shared": false, "is_org_shared": false, "is_ext_shared": false,
		"is_pending_ext_shared": false, "is_member": true, "creator": botUserID,
		"topic":   map[string]any{"value": "", "creator": "", "last_set": 0},
		"purpose": map[string]any{"value": "", "creator": "", "last_set": 0},
	}
}

func (s *Server) conversationsOpen(r *request) (map[string]any, *apiError) {
	if ch := r.params["channel"]; ch != "" {
		c, ok := s.channels[ch]
		if !ok {
			return nil, errCode("channel_not_found")
		}
		return map[string]any{"channel": map[string]any{"id": c.id}}, nil
	}
	ids := strings.Split(r.params["users"], ",")
	if len(ids) != 1 || ids[0] == "" {
		return nil, errCode("users_list_not_supplied")
	}
	u, ok := s.users[ids[0]]
	if !ok {
		return nil, errCode("user_not_found")
	}
	return map[string]any{"channel": map[string]any{"id": s.imLocked(u.id).id}}, nil
}

func (s *Server) conversationsReplies(r *request) (map[string]any, *apiError) {
	ch, ok := s.channels[r.params["channel"]]
	if !ok {
		return nil, errCode("channel_not_found")
	}
	parent := s.messageLocked(ch.id, r.params["ts"])
	if parent == nil || parent.Deleted {
		return nil, errCode("thread_not_found")
	}
	msgs := []map[string]any{s.messageJSONLocked(parent)}
	for _, m := range s.messages[ch.id] {
		if m.ThreadTS == parent.TS && !m.Deleted {
			msgs = append(msgs, s.messageJSONLocked(m))
		}
	}
	return map[string]any{"messages": msgs, "has_more": false}, nil
}

func (s *Server) usersInfo(r *request) (map[string]any, *apiError) {
	u, ok := s.users[r.params["user"]]
	if !ok {
		return nil, errCode("user_not_found")
	}
	profile := map[string]any{
		"real_name": u.realName, "real_name_normalized": u.realName,
		"display_name": u.name, "display_name_normalized": u.name, "team": teamID,
	}
	if u.isBot {
		profile["bot_id"] = botID
		profile["api_app_id"] = appID
	}
	return map[string]any{"user": map[string]any{
		"id": u.id, "team_id": teamID, "name": u.name, "deleted": false,
		"real_name": u.realName, "tz": "Etc/UTC", "tz_label": "Coordinated Universal Time", "tz_offset": 0,
		"profile": profile, "is_admin": false, "is_owner": false, "is_primary_owner": false,
		"is_restricted": false, "is_ultra_restricted": false, "is_bot": u.isBot,
		"is_app_user": false, "updated": s.nowLocked().Unix(), "locale": "en-US",
	}}, nil
}

func (s *Server) botsInfo(r *request) (map[string]any, *apiError) {
	if id := r.params["bot"]; id != "" && id != botID {
		return nil, errCode("bot_not_found")
	}
	return map[string]any{"bot": map[string]any{
		"id": botID, "deleted": false, "name": botName, "updated": s.nowLocked().Unix(),
		"app_id": appID, "user_id": botUserID, "icons": map[string]any{},
	}}, nil
}
