package main

import (
	"encoding/json"
	"fmt"
	"html"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// renderer turns Block Kit and mrkdwn into HTML, as a Slack client shows
// them. Everything that is not markup is text: it is HTML-escaped, so an
// event's summary reaches the page as the words it holds, never as tags.
type renderer struct {
	names map[string]string // user and channel ids → names, for mentions
	now   time.Time         // "today" in dates
	loc   *time.Location    // the reader's time zone
}

// blocks renders a blocks array. A button of the message at ts carries what
// pressing it needs (the message, the block, the action); its value stays
// with the Slack server, which sends it as Slack does.
func (r renderer) blocks(raw json.RawMessage, ts string) string {
	var blocks []map[string]json.RawMessage
	if json.Unmarshal(raw, &blocks) != nil {
		return ""
	}
	var b strings.Builder
	for _, bl := range blocks {
		var typ, blockID string
		_ = json.Unmarshal(bl["type"], &typ)
		_ = json.Unmarshal(bl["block_id"], &blockID)
		switch typ {
		case "header":
			fmt.Fprintf(&b, `<div class="b-header">%s</div>`, r.text(bl["text"]))
		case "section":
			b.WriteString(`<div class="b-section"><div class="b-body">`)
			if len(bl["text"]) > 0 {
				fmt.Fprintf(&b, `<div>%s</div>`, r.text(bl["text"]))
			}
			var fields []json.RawMessage
			_ = json.Unmarshal(bl["fields"], &fields)
			if len(fields) > 0 {
				b.WriteString(`<div class="b-fields">`)
				for _, f := range fields {
					fmt.Fprintf(&b, `<div>%s</div>`, r.text(f))
				}
				b.WriteString(`</div>`)
			}
			b.WriteString(`</div>`)
			if len(bl["accessory"]) > 0 {
				b.WriteString(r.element(bl["accessory"], ts, blockID))
			}
			b.WriteString(`</div>`)
		case "context":
			var els []json.RawMessage
			_ = json.Unmarshal(bl["elements"], &els)
			b.WriteString(`<div class="b-context">`)
			for _, e := range els {
				fmt.Fprintf(&b, `<span>%s</span>`, r.text(e))
			}
			b.WriteString(`</div>`)
		case "actions":
			var els []json.RawMessage
			_ = json.Unmarshal(bl["elements"], &els)
			b.WriteString(`<div class="b-actions">`)
			for _, e := range els {
				b.WriteString(r.element(e, ts, blockID))
			}
			b.WriteString(`</div>`)
		case "divider":
			b.WriteString(`<hr class="b-divider">`)
		default:
			fmt.Fprintf(&b, `<div class="b-unknown">[%s block]</div>`, html.EscapeString(typ))
		}
	}
	return b.String()
}

// element renders an interactive element. A button in a message (ts set)
// can be pressed; anywhere else it is shown, disabled.
func (r renderer) element(raw json.RawMessage, ts, blockID string) string {
	var e struct {
		Type     string          `json:"type"`
		ActionID string          `json:"action_id"`
		Style    string          `json:"style"`
		Text     json.RawMessage `json:"text"`
	}
	if json.Unmarshal(raw, &e) != nil || e.Type != "button" {
		return fmt.Sprintf(`<span class="b-unknown">[%s]</span>`, html.EscapeString(e.Type))
	}
	class := "btn"
	if e.Style == "primary" || e.Style == "danger" {
		class += " " + e.Style
	}
	if ts == "" {
		return fmt.Sprintf(`<button class="%s" disabled>%s</button>`, class, r.text(e.Text))
	}
	return fmt.Sprintf(`<button class="%s" data-ts="%s" data-block="%s" data-action="%s">%s</button>`,
		class, html.EscapeString(ts), html.EscapeString(blockID), html.EscapeString(e.ActionID), r.text(e.Text))
}

// text renders a text object: mrkdwn formatted, plain_text as it is.
func (r renderer) text(raw json.RawMessage) string {
	var t struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &t) != nil {
		return ""
	}
	if t.Type == "mrkdwn" {
		return r.mrkdwn(t.Text)
	}
	return strings.ReplaceAll(html.EscapeString(t.Text), "\n", "<br>")
}

// Formatting characters are written as entities inside code, links and
// mentions, so that the emphasis pass (emphasize) leaves them alone.
var shield = strings.NewReplacer("*", "&#42;", "_", "&#95;", "~", "&#126;", "`", "&#96;")

// esc HTML-escapes text that Slack sent escaped (&amp; &lt; &gt;).
func esc(s string) string {
	s = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
	return html.EscapeString(s)
}

// mrkdwn renders Slack's mrkdwn: ```code blocks```, `code`, <links|text>,
// <@mentions>, <!date^…> dates, then *bold*, _italic_ and ~strike~, and
// line breaks. Text is escaped first; markup only adds tags.
func (r renderer) mrkdwn(s string) string {
	var b strings.Builder
	for s != "" {
		switch {
		case strings.HasPrefix(s, "```"):
			if end := strings.Index(s[3:], "```"); end >= 0 {
				code := strings.Trim(s[3:3+end], "\n")
				fmt.Fprintf(&b, `<pre>%s</pre>`, shield.Replace(esc(code)))
				s = s[6+end:]
				continue
			}
		case s[0] == '`':
			if end := strings.IndexAny(s[1:], "`\n"); end > 0 && s[1+end] == '`' {
				fmt.Fprintf(&b, `<code>%s</code>`, shield.Replace(esc(s[1:1+end])))
				s = s[2+end:]
				continue
			}
		case s[0] == '<':
			if end := strings.IndexByte(s, '>'); end > 0 {
				b.WriteString(shield.Replace(r.control(s[1:end])))
				s = s[end+1:]
				continue
			}
		}
		n := strings.IndexAny(s[1:], "`<") + 1
		if n == 0 {
			n = len(s)
		}
		b.WriteString(esc(s[:n]))
		s = s[n:]
	}
	return strings.ReplaceAll(emphasize(b.String()), "\n", "<br>")
}

// control renders what Slack writes between < and >.
func (r renderer) control(c string) string {
	target, label, hasLabel := strings.Cut(c, "|")
	switch {
	case strings.HasPrefix(target, "@"):
		name := r.names[target[1:]]
		if hasLabel {
			name = label
		}
		if name == "" {
			name = target[1:]
		}
		return `<span class="mention">@` + esc(name) + `</span>`
	case strings.HasPrefix(target, "#"):
		name := r.names[target[1:]]
		if hasLabel {
			name = label
		}
		if name == "" {
			name = target[1:]
		}
		return `<span class="mention">#` + esc(name) + `</span>`
	case strings.HasPrefix(target, "!date^"):
		return `<span class="date">` + esc(r.date(target, label)) + `</span>`
	case strings.HasPrefix(target, "!subteam^"):
		if hasLabel {
			return `<span class="mention">` + esc(label) + `</span>`
		}
		return `<span class="mention">@` + esc(strings.TrimPrefix(target, "!subteam^")) + `</span>`
	case strings.HasPrefix(target, "!"):
		return `<span class="mention">@` + esc(target[1:]) + `</span>`
	}
	u, err := url.Parse(strings.NewReplacer("&amp;", "&").Replace(target))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "mailto") {
		// Not a link Slack would make: shown as the text it is.
		return esc("<" + c + ">")
	}
	if !hasLabel {
		label = target
	}
	return fmt.Sprintf(`<a href="%s" target="_blank" rel="noopener noreferrer">%s</a>`, html.EscapeString(u.String()), esc(label))
}

// date renders <!date^UNIX^FORMAT[^LINK]|FALLBACK> in the reader's zone.
func (r renderer) date(target, fallback string) string {
	parts := strings.Split(target, "^")
	if len(parts) < 3 {
		return fallback
	}
	sec, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return fallback
	}
	t := time.Unix(sec, 0).In(r.loc)
	now := r.now.In(r.loc)
	day := func(layout string, pretty bool) string {
		if pretty {
			y, m, d := t.Date()
			for off, word := range map[int]string{0: "today", -1: "yesterday", 1: "tomorrow"} {
				if oy, om, od := now.AddDate(0, 0, off).Date(); oy == y && om == m && od == d {
					return word
				}
			}
		}
		return strings.ReplaceAll(t.Format(layout), "{ord}", ordinal(t.Day()))
	}
	return strings.NewReplacer(
		"{date_num}", t.Format("2006-01-02"),
		"{date}", day("January 2{ord}, 2006", false),
		"{date_short}", day("Jan 2, 2006", false),
		"{date_long}", day("Monday, January 2{ord}, 2006", false),
		"{date_pretty}", day("January 2{ord}, 2006", true),
		"{date_short_pretty}", day("Jan 2, 2006", true),
		"{date_long_pretty}", day("Monday, January 2{ord}, 2006", true),
		"{time}", t.Format("15:04"),
		"{time_secs}", t.Format("15:04:05"),
	).Replace(parts[2])
}

func ordinal(d int) string {
	switch {
	case d%100 >= 11 && d%100 <= 13:
		return "th"
	case d%10 == 1:
		return "st"
	case d%10 == 2:
		return "nd"
	case d%10 == 3:
		return "rd"
	}
	return "th"
}

// emphasize applies *bold*, _italic_ and ~strike~ to escaped HTML as Slack
// does: a marker opens after a non-word character and before a non-space,
// and closes on the same line after a non-space and before a non-word
// character. Markers inside code, links and mentions were written as
// entities (shield), and HTML tags and entities hold none.
func emphasize(s string) string {
	for _, m := range []struct {
		mark     byte
		open, cl string
	}{{'*', "<b>", "</b>"}, {'_', "<i>", "</i>"}, {'~', "<s>", "</s>"}} {
		var b strings.Builder
		i := 0
		for i < len(s) {
			if s[i] != m.mark || (i > 0 && word(s[i-1])) || i+1 >= len(s) || s[i+1] == ' ' || s[i+1] == m.mark {
				b.WriteByte(s[i])
				i++
				continue
			}
			j := closing(s, i+1, m.mark)
			if j < 0 {
				b.WriteByte(s[i])
				i++
				continue
			}
			b.WriteString(m.open + s[i+1:j] + m.cl)
			i = j + 1
		}
		s = b.String()
	}
	return s
}

// closing finds the marker that closes one opened before from, or -1.
func closing(s string, from int, mark byte) int {
	for j := from; j < len(s) && s[j] != '\n'; j++ {
		if s[j] == mark && s[j-1] != ' ' && (j+1 == len(s) || !word(s[j+1])) {
			return j
		}
	}
	return -1
}

func word(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}
