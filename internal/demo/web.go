package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/recoverbot/recoverbot/bot"
	"github.com/recoverbot/recoverbot/internal/slacktest"
)

//go:embed page.html
var pageHTML []byte

// pageCSP lets only the page's own script run: were a message's HTML ever
// to carry a script or an event handler, the browser would refuse it.
var pageCSP = func() string {
	_, rest, _ := bytes.Cut(pageHTML, []byte("<script>"))
	script, _, _ := bytes.Cut(rest, []byte("</script>"))
	sum := sha256.Sum256(script)
	return "default-src 'self'; script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

// handler is the page and its small API. Every route goes through the
// bot's browser checks (bot.BrowserGuard): loopback Host names only, no
// foreign Origin, JSON POSTs only, so no other web page can act as alice.
func (d *demo) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", pageCSP)
		_, _ = w.Write(pageHTML)
	})
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, r *http.Request) {
		u, err := viewer(r)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(d.stateJSON(u))
	})
	mux.HandleFunc("GET /api/stream", d.stream)
	mux.HandleFunc("POST /api/sample", d.postSample)
	mux.HandleFunc("POST /api/click", d.click)
	mux.HandleFunc("POST /api/command", d.command)
	mux.HandleFunc("POST /api/close", d.closeView)
	return bot.BrowserGuard(d.log.With("component", "demo"), mux.ServeHTTP)
}

func writeErr(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// viewer is the person whose view is asked for; the page starts as the
// first one.
func viewer(r *http.Request) (person, error) {
	id := r.URL.Query().Get("user")
	if id == "" {
		id = people[0].ID
	}
	return userParam(id)
}

func userParam(id string) (person, error) {
	p, ok := personByID(id)
	if !ok {
		return p, fmt.Errorf("user %q is not one of the demo's people (alice %s, bob %s)", id, people[0].ID, people[1].ID)
	}
	return p, nil
}

// state is what one person sees: the channel with their own ephemeral
// replies, and their open modal.
type state struct {
	Viewer   string   `json:"viewer"` // whose view this is
	Channel  string   `json:"channel"`
	People   []person `json:"people"`
	Samples  []string `json:"samples"`
	Messages []item   `json:"messages"`
	Modal    *modal   `json:"modal,omitempty"`
}

type item struct {
	TS        string `json:"ts"`
	Author    string `json:"author"`
	Time      string `json:"time"`
	HTML      string `json:"html"`
	Edited    bool   `json:"edited,omitempty"`
	Ephemeral bool   `json:"ephemeral,omitempty"` // "Only visible to you"
	Replies   []item `json:"replies,omitempty"`
}

type modal struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	HTML  string `json:"html"`
}

// stateJSON renders the Slack server's state as p sees it now.
func (d *demo) stateJSON(p person) []byte {
	names := map[string]string{d.slack.BotUserID(): "recoverbot", channelID: channelName}
	for _, x := range people {
		names[x.ID] = x.Name
	}
	r := renderer{names: names, now: time.Now(), loc: time.Local}
	st := state{Viewer: p.ID, Channel: channelName, People: people, Messages: []item{}}
	for _, s := range d.samples {
		st.Samples = append(st.Samples, s.Name)
	}
	message := func(m slacktest.Message) item {
		it := item{TS: m.TS, Author: names[m.User], Time: tsTime(m.TS), Edited: len(m.History) > 1, HTML: r.blocks(m.Blocks, m.TS)}
		if it.HTML == "" {
			it.HTML = r.mrkdwn(m.Text)
		}
		return it
	}
	ephs := d.slack.Ephemerals(channelID, p.ID)
	ephemeral := func(e slacktest.Ephemeral) item {
		it := item{TS: e.TS, Author: "recoverbot", Time: tsTime(e.TS), Ephemeral: true, HTML: r.blocks(e.Blocks, e.TS)}
		if it.HTML == "" {
			it.HTML = r.mrkdwn(e.Text)
		}
		return it
	}
	for _, m := range d.slack.Messages(channelID) {
		it := message(m)
		for _, t := range d.slack.Thread(channelID, m.TS) {
			it.Replies = append(it.Replies, message(t))
		}
		for _, e := range ephs {
			if e.ThreadTS == m.TS && !e.Deleted {
				it.Replies = append(it.Replies, ephemeral(e))
			}
		}
		slices.SortStableFunc(it.Replies, func(a, b item) int { return compareTS(a.TS, b.TS) })
		st.Messages = append(st.Messages, it)
	}
	for _, e := range ephs {
		if e.ThreadTS == "" && !e.Deleted {
			st.Messages = append(st.Messages, ephemeral(e))
		}
	}
	slices.SortStableFunc(st.Messages, func(a, b item) int { return compareTS(a.TS, b.TS) })
	for _, v := range d.slack.Views() {
		if v.Type == "modal" && !v.Closed && v.User == p.ID {
			// The last one opened is on top.
			st.Modal = &modal{ID: v.ID, Title: v.Title, HTML: r.blocks(v.Blocks, "")}
		}
	}
	b, _ := json.Marshal(st)
	return b
}

// compareTS orders Slack timestamps ("seconds.micros", fixed width after
// the dot) numerically.
func compareTS(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

func tsTime(ts string) string {
	var sec int64
	_, _ = fmt.Sscanf(ts, "%d.", &sec)
	return time.Unix(sec, 0).Format("15:04")
}

// stream sends the person's state each time it changes (server-sent
// events), and once at the start.
func (d *demo) stream(w http.ResponseWriter, r *http.Request) {
	p, err := viewer(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		writeErr(w, http.StatusInternalServerError, errors.New("streaming is not supported"))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	var sent []byte
	for {
		var cur []byte
		// WaitFor evaluates after every change of the Slack server's state
		// (and at once); only a change of what p sees is sent.
		if d.slack.WaitFor(r.Context(), func(*slacktest.Server) bool {
			cur = d.stateJSON(p)
			return !bytes.Equal(cur, sent)
		}) != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", cur); err != nil {
			return
		}
		fl.Flush()
		sent = cur
	}
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("the body is not the JSON expected: %v", err))
		return false
	}
	return true
}

// postSample posts a sample event to the bot's intake, as monitoring does,
// and answers what the bot answered.
func (d *demo) postSample(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if !decode(w, r, &req) {
		return
	}
	i := slices.IndexFunc(d.samples, func(s sample) bool { return s.Name == req.Name })
	if i < 0 {
		writeErr(w, http.StatusNotFound, fmt.Errorf("no sample event %q", req.Name))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	breq, err := http.NewRequestWithContext(ctx, http.MethodPost, d.botURL+"/v1/events", bytes.NewReader(d.samples[i].body))
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	breq.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(breq)
	if err != nil {
		writeErr(w, http.StatusBadGateway, fmt.Errorf("the bot's intake: %w", err))
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// click presses a button the person sees, as they would in Slack.
func (d *demo) click(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User, TS, Block, Action string
	}
	if !decode(w, r, &req) {
		return
	}
	if _, err := userParam(req.User); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	id, err := d.slack.Press(req.User, channelID, req.TS, req.Block, req.Action)
	if err != nil {
		writeErr(w, http.StatusNotFound, err)
		return
	}
	writeSent(w, id)
}

// command sends a slash command typed in the message box.
func (d *demo) command(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User, Text string
	}
	if !decode(w, r, &req) {
		return
	}
	if _, err := userParam(req.User); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	cmd, text, _ := strings.Cut(strings.TrimSpace(req.Text), " ")
	if cmd != "/recover" {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("%q is not a command of this workspace: type /recover help", cmd))
		return
	}
	writeSent(w, d.slack.SlashCommand(req.User, channelID, cmd, strings.TrimSpace(text)))
}

// closeView closes the person's modal (its Close button).
func (d *demo) closeView(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User, View string
	}
	if !decode(w, r, &req) {
		return
	}
	if _, err := userParam(req.User); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	id, err := d.slack.CloseView(req.User, req.View)
	if err != nil {
		writeErr(w, http.StatusNotFound, err)
		return
	}
	writeSent(w, id)
}

func writeSent(w http.ResponseWriter, envelopeID string) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"envelope_id": envelopeID})
}
