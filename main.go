// Command recoverbot is a ChatOps bot that recovers services from common
// failures, with humans in the loop where it is risky. See README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"os/user"
	"strings"
	"syscall"

	"github.com/recoverbot/recoverbot/bot"
	"github.com/recoverbot/recoverbot/runbooks"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: recoverbot <command> [flags]

  serve [--config FILE]          run the bot (intake, admin API, Slack when configured)
  validate [DIR]                 check a runbook directory (default: the embedded runbooks)
  settings                       list every setting and its environment variable
  executions [--state S] [--runbook R] [--limit N]
  show ID                        one execution with its audit trail
  event ID                       one accepted event and what was decided for it
  approve ID | reject ID | rollback ID
  false ID                       mark an execution as a false action
  pause | resume
  audit [--since 24h]            the audit trail as JSON lines
  quarantine                     store records set aside because they cannot be decoded
  deadletters                    notifications given up on (refused by Slack, or too many tries)
  stats [--window 24h]           auto-heal rate, MTTR, false-action rate beside their targets
  ask "QUESTION"                 ask the AI for a plan (needs ANTHROPIC_API_KEY on the bot); it waits for approval

Commands after "settings" talk to a running bot's admin API (RECOVERBOT_ADMIN_URL,
default http://<listen>; RECOVERBOT_ADMIN_TOKEN).
`

// run is the whole program; main only wires the process to it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", getenv("RECOVERBOT_CONFIG"), "config file (YAML)")
	var state, runbook, since *string
	var limit *int
	switch cmd {
	case "executions":
		state = fs.String("state", "", "only executions in this state")
		runbook = fs.String("runbook", "", "only executions of this runbook")
		limit = fs.Int("limit", 50, "at most this many")
	case "audit":
		since = fs.String("since", "24h", "records since a duration ago or an RFC 3339 time")
	case "stats":
		since = fs.String("window", "24h", "the window before now")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch cmd {
	case "validate":
		return validate(fs.Arg(0), stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	cfg, err := bot.LoadConfig(*configFile, getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if cmd == "serve" {
		bot.TuneGC(getenv)
		log := bot.NewLogger(cfg.LogFormat, stderr)
		if err := bot.Serve(ctx, cfg, bot.Options{Getenv: getenv, Log: log}); err != nil {
			log.Error("recoverbot stopped", "err", err)
			return 1
		}
		return 0
	}
	if cmd == "settings" {
		for _, s := range bot.Settings() {
			fmt.Fprintf(stdout, "%-26s %-40s %-22s %s\n", s[0], s[1], s[2], s[3])
		}
		return 0
	}

	who := "unknown"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	c := bot.NewClient(cfg, who)
	var path, method = "", "GET"
	var body []byte
	q := url.Values{}
	id := fs.Arg(0)
	needID := func() bool {
		if id == "" {
			fmt.Fprintf(stderr, "recoverbot %s: an execution or event id is required\n", cmd)
			return false
		}
		return true
	}
	switch cmd {
	case "executions":
		path = "/v1/executions"
		if *state != "" {
			q.Set("state", *state)
		}
		if *runbook != "" {
			q.Set("runbook", *runbook)
		}
		q.Set("limit", fmt.Sprint(*limit))
	case "show":
		if !needID() {
			return 2
		}
		path = "/v1/executions/" + url.PathEscape(id)
	case "event":
		if !needID() {
			return 2
		}
		path = "/v1/events/" + url.PathEscape(id)
	case "approve", "reject", "rollback", "false":
		if !needID() {
			return 2
		}
		method, path = "POST", "/v1/executions/"+url.PathEscape(id)+"/"+cmd
	case "stats":
		path = "/v1/stats"
		q.Set("window", *since)
	case "ask":
		if fs.NArg() == 0 {
			fmt.Fprintln(stderr, "recoverbot ask: a question is required")
			return 2
		}
		method, path = "POST", "/v1/ask"
		b, _ := json.Marshal(map[string]string{"question": strings.Join(fs.Args(), " ")})
		body = b
	case "pause", "resume":
		method, path = "POST", "/v1/"+cmd
	case "audit":
		path = "/v1/audit"
		q.Set("since", *since)
	case "quarantine", "deadletters":
		path = "/v1/" + cmd
	default:
		fmt.Fprintf(stderr, "recoverbot: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	resp, err := c.Do(ctx, method, path, q, body)
	if err != nil {
		fmt.Fprintf(stderr, "recoverbot %s: %v\n", cmd, err)
		return 1
	}
	if cmd == "audit" {
		_, _ = stdout.Write(resp) // already JSON lines
		return 0
	}
	if cmd == "stats" {
		var v struct{ Text string }
		if json.Unmarshal(resp, &v) == nil {
			fmt.Fprint(stdout, v.Text)
			return 0
		}
	}
	var v any
	if json.Unmarshal(resp, &v) == nil {
		out, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(stdout, string(out))
		return 0
	}
	_, _ = stdout.Write(resp)
	return 0
}

// validate prints every runbook error at once (file:line: path: message) and
// exits 1, or a one-line summary and 0.
func validate(dir string, stdout, stderr io.Writer) int {
	var set *runbooks.Set
	var err error
	where := "embedded defaults"
	if dir == "" {
		set, err = runbooks.LoadDefaults()
	} else {
		where = dir
		set, err = runbooks.Load(dir)
	}
	if err != nil {
		var errs runbooks.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(stderr, e)
			}
			fmt.Fprintf(stderr, "%d error(s) in %s\n", len(errs), where)
		} else {
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	n := 0
	for _, rb := range set.All() {
		n += len(rb.Actions)
	}
	fmt.Fprintf(stdout, "ok: %d runbooks, %d actions in %s\n", len(set.All()), n, where)
	return 0
}
