package slacktest

import (
	"encoding/json"
	"maps"
	"slices"
	"time"
)

// Call is one Web API (or response_url) request as the server saw it.
type Call struct {
	Method string
	// Params holds the decoded parameters: form values as sent, JSON bodies
	// flattened one level (strings unquoted, other values as JSON text).
	Params map[string]string
	// Blocks is the "blocks" parameter (or view.blocks) exactly as sent.
	Blocks json.RawMessage
	// Status is the HTTP status answered (429 for injected rate limits).
	Status int
	// Error is the Slack error code answered, "" when ok.
	Error string
	At    time.Time
}

// Message is a channel message with its edit history.
type Message struct {
	Channel string
	TS      string
	// ThreadTS is the parent's ts for a thread reply, "" for a top-level
	// message.
	ThreadTS    string
	User        string // poster; the bot user for messages sent with the bot token
	BotID       string // set for bot messages
	Text        string
	Blocks      json.RawMessage // as stored: block_ids Slack would assign are filled in
	Attachments json.RawMessage
	ReplyCount  int
	Deleted     bool
	// History holds every version, oldest first; the last is the current one.
	History []Revision
}

// Revision is one version of a message.
type Revision struct {
	Text   string
	Blocks json.RawMessage
	At     time.Time
}

// Ephemeral is a message only one user sees.
type Ephemeral struct {
	Channel  string
	User     string
	TS       string
	ThreadTS string
	Text     string
	Blocks   json.RawMessage
	Deleted  bool
	// Source is "chat.postEphemeral", "response_url" or "ack".
	Source string
}

// View is a modal (or home tab) opened by the app.
type View struct {
	ID              string
	Type            string
	User            string
	TriggerID       string
	CallbackID      string
	ExternalID      string
	PrivateMetadata string
	Title           string
	Blocks          json.RawMessage
	// JSON is the view as the app last sent it.
	JSON           json.RawMessage
	RootViewID     string
	PreviousViewID string
	Hash           string
	Closed         bool
	Updates        int
}

// ScheduledMessage is a chat.scheduleMessage request; it is never posted.
type ScheduledMessage struct {
	ID      string
	Channel string
	PostAt  string
	Text    string
	Blocks  json.RawMessage
}

type user struct {
	id, name, realName string
	isBot              bool
}

type channel struct {
	id, name string
	isIM     bool
	imUser   string
	created  int64
}

type message struct {
	Message
}

type ephemeral struct {
	Ephemeral
}

type view struct {
	View
	raw map[string]json.RawMessage
}

type trigger struct {
	user   string
	issued time.Time
	used   bool
}

type fault struct {
	status     int
	retryAfter time.Duration
	code       string
}

// AddUser registers a workspace member; users.info answers for it.
func (s *Server) AddUser(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[id] = &user{id: id, name: name, realName: name}
	s.notifyLocked()
}

// AddUserGroup registers (or replaces) a user group and its members.
func (s *Server) AddUserGroup(id string, members ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.groups[id]; !ok {
		s.groupOrder = append(s.groupOrder, id)
	}
	s.groups[id] = slices.Clone(members)
	s.notifyLocked()
}

// AddChannel registers a public channel the bot is a member of.
func (s *Server) AddChannel(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.channels[id] = &channel{id: id, name: name, created: s.nowLocked().Unix()}
	s.notifyLocked()
}

// Messages returns the channel's top-level messages in post order, deleted
// ones left out. Thread replies are in Thread.
func (s *Server) Messages(channel string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages[channel] {
		if m.ThreadTS == "" && !m.Deleted {
			out = append(out, m.clone())
		}
	}
	return out
}

// MessagesAfter lists the channel's top-level messages posted after the one
// whose timestamp is ts ("" or a ts not in the channel: all of them), oldest
// first: what a client that has read up to ts has not seen yet. A test that
// follows a busy channel reads it this way instead of copying every message
// each time with Messages.
func (s *Server) MessagesAfter(channel, ts string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := s.messages[channel]
	from := 0
	for i := len(all) - 1; i >= 0 && ts != ""; i-- {
		if all[i].TS == ts {
			from = i + 1
			break
		}
	}
	var out []Message
	for _, m := range all[from:] {
		if m.ThreadTS == "" && !m.Deleted {
			out = append(out, m.clone())
		}
	}
	return out
}

// Message returns one message (deleted ones too, with Deleted set).
func (s *Server) Message(channel, ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.messageLocked(channel, ts)
	if m == nil {
		return Message{}, false
	}
	return m.clone(), true
}

// Thread returns the replies under the parent ts in post order, without the
// parent and without deleted replies.
func (s *Server) Thread(channel, ts string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages[channel] {
		if m.ThreadTS == ts && !m.Deleted {
			out = append(out, m.clone())
		}
	}
	return out
}

// Ephemerals returns what user was shown privately in channel, oldest first.
func (s *Server) Ephemerals(channel, user string) []Ephemeral {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Ephemeral
	for _, e := range s.ephemerals {
		if e.Channel == channel && e.User == user {
			c := e.Ephemeral
			c.Blocks = slices.Clone(c.Blocks)
			out = append(out, c)
		}
	}
	return out
}

// Views returns every modal opened or pushed, oldest first, then home tabs.
func (s *Server) Views() []View {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]View, 0, len(s.views)+len(s.homeTabs))
	for _, v := range s.views {
		out = append(out, v.clone())
	}
	for _, k := range slices.Sorted(maps.Keys(s.homeTabs)) {
		out = append(out, s.homeTabs[k].clone())
	}
	return out
}

// Scheduled returns the chat.scheduleMessage requests accepted.
func (s *Server) Scheduled() []ScheduledMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.scheduled)
}

// Calls returns the recorded calls of method in order ("" for all calls).
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			c.Params = maps.Clone(c.Params)
			c.Blocks = slices.Clone(c.Blocks)
			out = append(out, c)
		}
	}
	return out
}

// FailNext makes the next n calls of method answer HTTP 429 with a
// Retry-After header in whole seconds (rounded up), which slack-go turns
// into *slack.RateLimitedError.
func (s *Server) FailNext(method string, n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[method] = append(s.faults[method], fault{status: 429, retryAfter: retryAfter, code: "ratelimited"})
	}
}

// FailNextWith makes the next n calls of method answer
// {"ok":false,"error":code}.
func (s *Server) FailNextWith(method string, n int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[method] = append(s.faults[method], fault{status: 200, code: code})
	}
}

// FailNextStatus makes the next n calls of method answer HTTP status with an
// HTML body, as Slack's edge does in an outage (a 503): slack-go turns it into
// slack.StatusCodeError.
func (s *Server) FailNextStatus(method string, n int, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[method] = append(s.faults[method], fault{status: status})
	}
}

func (s *Server) messageLocked(channel, ts string) *message {
	for _, m := range s.messages[channel] {
		if m.TS == ts {
			return m
		}
	}
	return nil
}

func (s *Server) ephemeralLocked(channel, ts string) *ephemeral {
	for _, e := range s.ephemerals {
		if e.Channel == channel && e.TS == ts {
			return e
		}
	}
	return nil
}

func (s *Server) viewLocked(id string) *view {
	for _, v := range s.views {
		if v.ID == id {
			return v
		}
	}
	for _, v := range s.homeTabs {
		if v.ID == id {
			return v
		}
	}
	return nil
}

func (m *message) clone() Message {
	c := m.Message
	c.Blocks = slices.Clone(c.Blocks)
	c.Attachments = slices.Clone(c.Attachments)
	c.History = slices.Clone(c.History)
	return c
}

func (v *view) clone() View {
	c := v.View
	c.Blocks = slices.Clone(c.Blocks)
	c.JSON = slices.Clone(c.JSON)
	return c
}
