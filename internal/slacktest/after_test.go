package slacktest

import (
	"slices"
	"testing"

	"github.com/slack-go/slack"
)

// TestMessagesAfter: MessagesAfter lists the top-level messages posted after
// a ts, oldest first, without thread replies or deleted messages; "" or an
// unknown ts lists them all.
func TestMessagesAfter(t *testing.T) {
	s := newServer(t)
	api := newAPI(s)
	ctx := testContext(t)
	post := func(text string, opts ...slack.MsgOption) string {
		t.Helper()
		_, ts, err := api.PostMessageContext(ctx, "C1", append(opts, slack.MsgOptionText(text, false))...)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	first := post("one")
	post("reply", slack.MsgOptionTS(first))
	second := post("two")
	gone := post("three")
	if _, _, err := api.DeleteMessageContext(ctx, "C1", gone); err != nil {
		t.Fatal(err)
	}
	post("four")
	texts := func(ms []Message) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Text)
		}
		return out
	}
	for _, c := range []struct {
		after string
		want  []string
	}{
		{"", []string{"one", "two", "four"}},
		{first, []string{"two", "four"}},
		{second, []string{"four"}},
		{"9.000001", []string{"one", "two", "four"}},
	} {
		if got := texts(s.MessagesAfter("C1", c.after)); !slices.Equal(got, c.want) {
			t.Errorf("MessagesAfter(%q) = %q, want %q", c.after, got, c.want)
		}
	}
}
