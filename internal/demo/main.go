// Command demo is `make demo`: the real bot, in full mode with the
// record-only log driver, connected by Socket Mode to the in-repo
// Slack-compatible server (internal/slacktest), and a page on 127.0.0.1
// that shows the incident channel as a person sees it in Slack.
//
// The page is a view of the Slack server's state, nothing more: it renders
// the messages, threads, ephemeral replies and modals the bot sent through
// the Web API, and a click, a /recover command or a closed modal goes back
// as the envelope Slack would deliver (block_actions, slash_commands,
// view_closed). The sample events are posted to the bot's real intake over
// HTTP, as monitoring would. No rule of the bot is repeated here.
//
//  1. A temporary directory holds the bbolt file; it is removed at exit.
//  2. The Slack server gets two people: alice, an approver, and bob, who is
//     not; and one channel, #incident.
//  3. bot.Serve runs in-process with the Slack server's tokens and API URL.
//  4. The page listens on RECOVERBOT_DEMO_LISTEN (default 127.0.0.1:8090),
//     loopback only: it acts as any demo user, so nobody else may reach it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/recoverbot/recoverbot/bot"
)

// DefaultListen is the page's address when RECOVERBOT_DEMO_LISTEN is unset.
const DefaultListen = "127.0.0.1:8090"

func main() {
	if err := bot.CheckEnv(os.Environ()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run starts the demo and serves it until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	events := fs.String("events", "examples/events", "directory of the sample events (one JSON event per file)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	listen := getenv("RECOVERBOT_DEMO_LISTEN")
	if listen == "" {
		listen = DefaultListen
	}
	if err := checkListen(listen); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	d, err := start(ctx, options{listen: listen, events: *events, log: bot.NewLogger("text", stderr)})
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	fmt.Fprintf(stdout, "recoverbot demo: open %s in a browser (Ctrl-C stops it)\n", d.URL())
	fmt.Fprintf(stdout, "the bot's intake and admin API: %s (the CLI: RECOVERBOT_ADMIN_URL=%[1]s go run . executions)\n", d.BotURL())
	if err := d.Wait(); err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
	return 0
}

// checkListen refuses an address off this machine: whoever reaches the page
// acts as alice, an approver, so it must not be on the network.
func checkListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("RECOVERBOT_DEMO_LISTEN: %q is not host:port (like %s)", addr, DefaultListen)
	}
	if !bot.IsLoopback(host) {
		return fmt.Errorf("RECOVERBOT_DEMO_LISTEN: %q is not a loopback address: the demo page acts as an approver for whoever opens it, so it listens on this machine only (127.0.0.1:PORT, [::1]:PORT or localhost:PORT)", addr)
	}
	return nil
}
