package main

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/recoverbot/recoverbot/internal/testutil"
)

// The page in a real browser (headless Chromium, Debian's package, which
// .ci/run installs): a sample event, bob's refused Approve, alice's Approve
// and the execution in the thread, View Details, /recover status typed in
// the box, and a hostile event shown as text. With
// RECOVERBOT_DEMO_SCREENSHOT=1 it writes docs/demo.png, the README's picture.
func TestDemoInABrowser(t *testing.T) {
	chromium := testutil.Binary(t, "chromium", "chromium")
	d, ctx := startDemo(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 960))
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil { // starts the browser, on the test's context
		t.Fatal(err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(browser, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// text reads an element's text as shown. The page re-renders on each
	// change, so it is read in one evaluation, not through a node id.
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(browser, chromedp.Evaluate[string](`document.querySelector(`+strconv.Quote(sel)+`).innerText`))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	// until waits for a condition on the page, polled by the browser.
	until := func(js string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond))(ctx, tg)
			return err
		})
	}
	// as switches the person the page acts as (the selector's change event)
	// and waits until the page shows what that person sees.
	as := func(p person) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := chromedp.Evaluate[any](`(() => { const s = document.getElementById("user"); s.value = "`+p.ID+`"; s.dispatchEvent(new Event("change")); })()`)(ctx, tg)
				return err
			}),
			until(`document.body.dataset.viewer === "`+p.ID+`"`))
	}
	approve := chromedp.CSS(`button[data-action="approve_recovery"]`)

	do("open the page and post a sample event",
		chromedp.Navigate(d.URL()),
		chromedp.Click(chromedp.CSS(`button.sample[data-sample="restart-pod-memory-leak"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(approve),
	)
	do("bob presses Approve",
		as(bob),
		chromedp.Click(approve, chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`.msg.ephemeral`)),
	)
	if s := text(`.msg.ephemeral`); !strings.Contains(s, "Only visible to you") || !strings.Contains(s, "You are not an approver") {
		t.Errorf("bob's reply reads %q", s)
	}
	do("alice presses Approve",
		as(alice),
		chromedp.WaitNotPresent(chromedp.CSS(`.msg.ephemeral`)), // bob's reply is his
		chromedp.Click(approve, chromedp.NodeVisible),
		// Done when the thread says so and the request became its outcome
		// (Roll back): the page changes no more.
		until(`(document.querySelector(".thread") || {innerText: ""}).innerText.includes("Recovery succeeded") && document.querySelector('button[data-action="rollback_recovery"]') !== null`),
	)
	thread := text(`.thread`)
	for _, want := range []string{"Approved by @alice", "Executing 1 action(s) of restart-pod-memory-leak", "Step 1/1: RESTART_POD", "log driver: RESTART_POD recorded, nothing changed", "Step 1/1 done", "Recovery succeeded"} {
		if !strings.Contains(thread, want) {
			t.Errorf("the thread lacks %q:\n%s", want, thread)
		}
	}
	do("View Details",
		chromedp.Click(chromedp.CSS(`button[data-action="view_recovery_details"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`#overlay.open`)),
	)
	if title, body := text(`#modal-title`), text(`#modal-body`); title != "Recovery plan" || !strings.Contains(body, "SUCCEEDED") || !strings.Contains(body, "RESTART_POD") {
		t.Errorf("the modal %q shows:\n%s", title, body)
	}
	do("close the modal, type /recover status",
		chromedp.Click(chromedp.CSS(`#modal-close`), chromedp.NodeVisible),
		chromedp.WaitNotVisible(chromedp.CSS(`#overlay`)),
		chromedp.SendKeys(chromedp.CSS(`#cmd-text`), "/recover status"),
		chromedp.Click(chromedp.CSS(`#cmd-send`)),
		until(`[...document.querySelectorAll(".msg.ephemeral")].some(e => e.innerText.includes("Awaiting approval"))`),
	)
	if os.Getenv("RECOVERBOT_DEMO_SCREENSHOT") == "1" {
		// The whole channel: the window grows to the height of its content.
		h, err := chromedp.Run(browser, chromedp.Evaluate[int64](`document.getElementById("channel").scrollHeight + document.body.scrollHeight - document.getElementById("channel").clientHeight`))
		if err != nil {
			t.Fatal(err)
		}
		do("grow the window", chromedp.EmulateViewport(1280, h))
		png, err := chromedp.Run(browser, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("../../docs/demo.png", png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Hostile text: the summary's tags are shown, none runs.
	hostile := `<script>window.pwned=1</script><img src=x onerror="window.pwned=2">`
	ev := `{"type":"LATENCY_ANOMALY","severity":"WARNING","confidence":0.9,"summary":` + strconv.Quote(hostile) + `,"data":{"metric":"latency_ms","current_value":2500},"context":{"cause":"DATABASE"}}`
	resp, err := http.Post(d.botURL+"/v1/events", "application/json", strings.NewReader(ev))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	do("a hostile event", until(`document.getElementById("channel").innerText.includes(`+strconv.Quote(hostile)+`)`))
	pwned, err := chromedp.Run(browser, chromedp.Evaluate[bool](`window.pwned !== undefined || document.querySelector("#channel script, #channel img") !== null`))
	if err != nil || pwned {
		t.Errorf("the event's markup ran or became elements on the page (%v)", err)
	}
}
