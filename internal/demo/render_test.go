package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testRenderer() renderer {
	return renderer{
		names: map[string]string{"U0ALICE001": "alice", "C0INCIDENT": "incident"},
		now:   time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC),
		loc:   time.UTC,
	}
}

// What a Slack client shows for the mrkdwn the bot writes, and for hostile
// text: everything that is not markup arrives as text.
func TestMrkdwn(t *testing.T) {
	noon := time.Date(2026, 11, 27, 12, 4, 5, 0, time.UTC).Unix()
	yesterday := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC).Unix()
	for _, c := range []struct{ name, in, want string }{
		{"bold", "*Event:* CAPACITY_WARNING", "<b>Event:</b> CAPACITY_WARNING"},
		{"italic", "_(the event gave no summary)_", "<i>(the event gave no summary)</i>"},
		{"strike", "~gone~ here", "<s>gone</s> here"},
		{"bold inside a word is text", "a*b*c and 2*3*4", "a*b*c and 2*3*4"},
		{"a marker before a space opens nothing", "* not bold *", "* not bold *"},
		{"emphasis stays on its line", "*one\ntwo*", "*one<br>two*"},
		{"snake_case stays", "restart_pod_memory", "restart_pod_memory"},
		{"code", "plan `p_1*x*` done", "plan <code>p&#95;1&#42;x&#42;</code> done"},
		{"code block", "```\n{\"a\": 1}\n```", "<pre>{&#34;a&#34;: 1}</pre>"},
		{"line breaks", "a\nb", "a<br>b"},
		{"link with text", "<https://example.com/a_b?x=1&amp;y=2|the runbook>", `<a href="https://example.com/a&#95;b?x=1&amp;y=2" target="&#95;blank" rel="noopener noreferrer">the runbook</a>`},
		{"bare link", "<https://example.com>", `<a href="https://example.com" target="&#95;blank" rel="noopener noreferrer">https://example.com</a>`},
		{"javascript: is no link", "<javascript:alert(1)|click>", "&lt;javascript:alert(1)|click&gt;"},
		{"user mention", "Approved by <@U0ALICE001>", `Approved by <span class="mention">@alice</span>`},
		{"unknown user", "<@U9>", `<span class="mention">@U9</span>`},
		{"channel", "<#C0INCIDENT>", `<span class="mention">#incident</span>`},
		{"special mention", "<!here>", `<span class="mention">@here</span>`},
		{"time", fmtDate(noon, "{time}", "12:04 UTC"), `<span class="date">12:04</span>`},
		{"date and seconds", fmtDate(noon, "{date_num} {time_secs}", "x"), `<span class="date">2026-11-27 12:04:05</span>`},
		{"long date", fmtDate(noon, "{date_long}", "x"), `<span class="date">Friday, November 27th, 2026</span>`},
		{"pretty today", fmtDate(noon, "{date_pretty} at {time}", "x"), `<span class="date">today at 12:04</span>`},
		{"pretty yesterday", fmtDate(yesterday, "{date_short_pretty}", "x"), `<span class="date">yesterday</span>`},
		{"short date", fmtDate(yesterday, "{date_short}", "x"), `<span class="date">Nov 26, 2026</span>`},
		{"a bad date shows its fallback", "<!date^soon^{time}|12:04 UTC>", `<span class="date">12:04 UTC</span>`},
		// Hostile input, as the bot sends it (escaped) and as it could not.
		{"escaped script is text", "*Problem:* &lt;script&gt;alert(1)&lt;/script&gt;", "<b>Problem:</b> &lt;script&gt;alert(1)&lt;/script&gt;"},
		{"raw script is text", "<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"},
		{"an image tag is text", "&lt;img src=x onerror=alert(1)&gt;", "&lt;img src=x onerror=alert(1)&gt;"},
		{"quotes cannot leave an attribute", `<https://e.com/"onmouseover="x|y>`, `<a href="https://e.com/%22onmouseover=%22x" target="&#95;blank" rel="noopener noreferrer">y</a>`},
		{"a mention's label is text", "<@U1|<b>x</b>>", `<span class="mention">@&lt;b</span>x&lt;/b&gt;&gt;`},
		{"ampersands", "a &amp; b & c", "a &amp; b &amp; c"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := testRenderer().mrkdwn(c.in); got != c.want {
				t.Errorf("mrkdwn(%q)\n got %s\nwant %s", c.in, got, c.want)
			}
		})
	}
}

func fmtDate(unix int64, format, fallback string) string {
	return "<!date^" + strconv.FormatInt(unix, 10) + "^" + format + "|" + fallback + ">"
}

// A message's blocks as the page shows them: buttons carry the message, the
// block and the action, never the value; in a modal they are shown disabled.
func TestBlocks(t *testing.T) {
	blocks := json.RawMessage(`[
		{"type":"header","block_id":"h","text":{"type":"plain_text","text":"🤖 Approval <Required> *now*"}},
		{"type":"section","block_id":"s","text":{"type":"mrkdwn","text":"*Runbook:* x"},"fields":[{"type":"mrkdwn","text":"_a_"},{"type":"plain_text","text":"b"}]},
		{"type":"context","block_id":"c","elements":[{"type":"mrkdwn","text":"Plan ` + "`p-1`" + `"}]},
		{"type":"divider","block_id":"d"},
		{"type":"actions","block_id":"recovery_approval","elements":[
			{"type":"button","action_id":"approve_recovery","value":"signed-secret","style":"primary","text":{"type":"plain_text","text":"✅ Approve & Execute"}},
			{"type":"static_select","action_id":"pick"}]},
		{"type":"video","block_id":"v"}]`)
	got := testRenderer().blocks(blocks, "1.000001")
	for _, want := range []string{
		`<div class="b-header">🤖 Approval &lt;Required&gt; *now*</div>`,
		`<div><b>Runbook:</b> x</div><div class="b-fields"><div><i>a</i></div><div>b</div></div>`,
		`<div class="b-context"><span>Plan <code>p-1</code></span></div>`,
		`<hr class="b-divider">`,
		`<button class="btn primary" data-ts="1.000001" data-block="recovery_approval" data-action="approve_recovery">✅ Approve &amp; Execute</button>`,
		`<span class="b-unknown">[static_select]</span>`,
		`<div class="b-unknown">[video block]</div>`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("blocks: missing %s\nin %s", want, got)
		}
	}
	if strings.Contains(got, "signed-secret") {
		t.Errorf("a button's value reached the page: %s", got)
	}
	modal := testRenderer().blocks(blocks, "")
	if !strings.Contains(modal, `<button class="btn primary" disabled>`) {
		t.Errorf("a modal's button can be pressed: %s", modal)
	}
}
