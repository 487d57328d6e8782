// Command recoverbot is a ChatOps bot that recovers services from common
// failures, with humans in the loop where it is risky. See README.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/recoverbot/recoverbot/bot"
	"github.com/recoverbot/recoverbot/runbooks"
)

// version and commit are set at build time (-ldflags -X, deploy/image/build.sh);
// a plain go build says "dev".
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	// A misspelt RECOVERBOT_* variable would be ignored silently; stop first.
	if err := bot.CheckEnv(os.Environ()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: recoverbot <command> [flags]

  serve [--config FILE]          run the bot (intake, admin API, Slack when configured)
  validate [DIR]                 check a runbook directory (default: the embedded runbooks)
  settings                       list every setting and its environment variable
  executions [--state S] [--runbook R] [--limit N] [-o json]
  show ID [-o json]              one execution with its audit trail
  event ID                       one accepted event and what was decided for it
  approve ID | reject ID | rollback ID
  false ID                       mark an execution as a false action
  pause | resume
  freeze DURATION REASON [--runbook R] [--target T]  plans in scope wait for approval until DURATION (like 90m) ends
  unfreeze ID | --all            end a freeze (or every ad-hoc one) now
  freezes [-o json]              the freezes holding now, ad-hoc and recurring windows
  audit [--since 24h] [-o json]  the audit trail (-o json: as JSON lines)
  quarantine                     store records set aside because they cannot be decoded
  deadletters                    notifications given up on (refused by Slack, or too many tries)
  stats [--window 24h] [-o json] auto-heal rate, MTTR, false-action rate beside their targets
  ask "QUESTION"                 ask the AI for a plan (needs ANTHROPIC_API_KEY on the bot); it waits for approval
  whoami                         who the bot takes you for (from your token)
  version                        the version, commit and Go release it was built from

Commands after "settings" talk to a running bot's admin API (RECOVERBOT_ADMIN_URL,
default http://<listen>) with the token RECOVERBOT_ADMIN_TOKEN (one of the bot's
RECOVERBOT_ADMIN_TOKENS); you act as that token's owner. Without admin tokens on the
bot, loopback callers are the local operator ("local").

executions, show, audit, stats, freeze, unfreeze and freezes print tables for people; -o json prints the
admin API's JSON. Exit status: 0 done, 1 the bot could not be reached or refused,
2 a usage error. <command> --help prints the command's usage.
`

// run is the whole program; main only wires the process to it. It parses the
// command line and hands over to serve, validate, settings or the admin CLI.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", getenv("RECOVERBOT_CONFIG"), "config file (YAML)")
	f := adminFlags(cmd, fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: recoverbot %s\n", commandUsage(cmd))
		fs.PrintDefaults()
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout) // asked for: the usage is the answer, exit 0
			fs.Usage()
			return 0
		}
	}
	// Flags may follow the id (show ID -o json): parse around each positional.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	_ = fs.Parse(append([]string{"--"}, pos...)) // fs.Args() are the positionals
	if f.output != nil && *f.output != "" && *f.output != "json" {
		fmt.Fprintf(stderr, "recoverbot %s: -o %q: the only other output is json\n", cmd, *f.output)
		return 2
	}
	switch cmd {
	case "validate":
		return validate(fs.Arg(0), stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "recoverbot %s (commit %s, %s)\n", version, commit, runtime.Version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	cfg, err := bot.LoadConfig(*configFile, getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	switch cmd {
	case "serve":
		return serve(ctx, cfg, getenv, stderr)
	case "settings":
		for _, s := range bot.Settings() {
			fmt.Fprintf(stdout, "%-26s %-40s %-22s %s\n", s[0], s[1], s[2], s[3])
		}
		return 0
	}
	return admin(ctx, cfg, cmd, fs, f, stdout, stderr)
}

// serve runs the bot until ctx ends (SIGINT, SIGTERM); bot.Serve owns the
// start-up and the teardown.
func serve(ctx context.Context, cfg bot.Config, getenv func(string) string, stderr io.Writer) int {
	bot.TuneGC(getenv)
	log := bot.NewLogger(cfg.LogFormat, stderr)
	if err := bot.Serve(ctx, cfg, bot.Options{Getenv: getenv, Log: log}); err != nil {
		log.Error("recoverbot stopped", "err", err)
		return 1
	}
	return 0
}

// flags are the admin commands' own flags (nil when the command has none).
type flags struct {
	state, runbook, since, target *string
	limit                         *int
	all                           *bool
	output                        *string // -o: "" (for people) or "json"
}

// commandUsage is cmd's line of usage (one owner: the usage text), or cmd.
func commandUsage(cmd string) string {
	for _, line := range strings.Split(usage, "\n") {
		if !strings.HasPrefix(line, "  ") {
			continue
		}
		line = strings.TrimSpace(line)
		words, _, _ := strings.Cut(line, "  ")
		for _, w := range strings.Fields(words) {
			if w == cmd {
				return line
			}
		}
	}
	return cmd
}

func adminFlags(cmd string, fs *flag.FlagSet) flags {
	var f flags
	switch cmd {
	case "executions":
		f.state = fs.String("state", "", "only executions in this state")
		f.runbook = fs.String("runbook", "", "only executions of this runbook")
		f.limit = fs.Int("limit", 50, "at most this many")
	case "audit":
		f.since = fs.String("since", "24h", "records since a duration ago or an RFC 3339 time")
	case "stats":
		f.since = fs.String("window", "24h", "the window before now")
	case "freeze":
		f.runbook = fs.String("runbook", "", "freeze only this runbook's plans (default: every runbook)")
		f.target = fs.String("target", "", "freeze only plans touching this target, as plans name it, like deployment/payments/api (default: every target)")
	case "unfreeze":
		f.all = fs.Bool("all", false, "end every active ad-hoc freeze")
	}
	if readableCommands[cmd] {
		f.output = fs.String("o", "", "output: json for the admin API's JSON (default: a table or text for people)")
	}
	return f
}

// admin runs one admin CLI command against a running bot's admin API and
// prints the answer.
func admin(ctx context.Context, cfg bot.Config, cmd string, fs *flag.FlagSet, f flags, stdout, stderr io.Writer) int {
	method, path, q, body, code := adminRequest(cmd, fs, f, stderr)
	if code != 0 {
		return code
	}
	resp, err := bot.NewClient(cfg).Do(ctx, method, path, q, body)
	if err != nil {
		fmt.Fprintf(stderr, "recoverbot %s: %v\n", cmd, err)
		return 1
	}
	if f.output != nil && *f.output == "" {
		var b bytes.Buffer
		if err := printReadable(cmd, resp, time.Now(), &b); err == nil {
			_, _ = stdout.Write(b.Bytes())
			return 0
		}
		// An answer of a shape this CLI does not know: print it as it came.
	}
	printAnswer(cmd, resp, stdout)
	return 0
}

// adminRequest maps a command to its admin API call, or to an exit code (2)
// after telling the user what is missing.
func adminRequest(cmd string, fs *flag.FlagSet, f flags, stderr io.Writer) (method, path string, q url.Values, body []byte, code int) {
	method, q = "GET", url.Values{}
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
		if *f.state != "" {
			q.Set("state", *f.state)
		}
		if *f.runbook != "" {
			q.Set("runbook", *f.runbook)
		}
		q.Set("limit", fmt.Sprint(*f.limit))
	case "show":
		if !needID() {
			return "", "", nil, nil, 2
		}
		path = "/v1/executions/" + url.PathEscape(id)
	case "event":
		if !needID() {
			return "", "", nil, nil, 2
		}
		path = "/v1/events/" + url.PathEscape(id)
	case "approve", "reject", "rollback", "false":
		if !needID() {
			return "", "", nil, nil, 2
		}
		method, path = "POST", "/v1/executions/"+url.PathEscape(id)+"/"+cmd
	case "stats":
		path = "/v1/stats"
		q.Set("window", *f.since)
	case "ask":
		if fs.NArg() == 0 {
			fmt.Fprintln(stderr, "recoverbot ask: a question is required")
			return "", "", nil, nil, 2
		}
		method, path = "POST", "/v1/ask"
		body, _ = json.Marshal(map[string]string{"question": strings.Join(fs.Args(), " ")})
	case "pause", "resume":
		method, path = "POST", "/v1/"+cmd
	case "freeze":
		if fs.NArg() < 2 {
			fmt.Fprintf(stderr, "recoverbot freeze: a duration and a reason are required\nusage: recoverbot %s\n", commandUsage(cmd))
			return "", "", nil, nil, 2
		}
		if _, err := time.ParseDuration(fs.Arg(0)); err != nil {
			fmt.Fprintf(stderr, "recoverbot freeze: %q is not a duration (like 90m or 2h)\n", fs.Arg(0))
			return "", "", nil, nil, 2
		}
		method, path = "POST", "/v1/freeze"
		body, _ = json.Marshal(map[string]string{"duration": fs.Arg(0), "reason": strings.Join(fs.Args()[1:], " "),
			"runbook": *f.runbook, "target": *f.target})
	case "unfreeze":
		if (fs.NArg() == 1) == *f.all || fs.NArg() > 1 {
			fmt.Fprintf(stderr, "recoverbot unfreeze: give one freeze id or --all\nusage: recoverbot %s\n", commandUsage(cmd))
			return "", "", nil, nil, 2
		}
		method, path = "POST", "/v1/unfreeze"
		body, _ = json.Marshal(map[string]any{"id": fs.Arg(0), "all": *f.all})
	case "freezes":
		path = "/v1/freezes"
	case "audit":
		path = "/v1/audit"
		q.Set("since", *f.since)
	case "whoami":
		path = "/v1/whoami"
	case "quarantine", "deadletters":
		path = "/v1/" + cmd
	default:
		fmt.Fprintf(stderr, "recoverbot: unknown command %q\n\n%s", cmd, usage)
		return "", "", nil, nil, 2
	}
	return method, path, q, body, 0
}

// printAnswer prints an admin API answer as JSON: the audit as the JSON lines
// it is, any other JSON indented, anything else as it came.
func printAnswer(cmd string, resp []byte, stdout io.Writer) {
	if cmd == "audit" {
		_, _ = stdout.Write(resp) // already JSON lines
		return
	}
	var v any
	if json.Unmarshal(resp, &v) == nil {
		out, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(stdout, string(out))
		return
	}
	_, _ = stdout.Write(resp)
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
	if err := bot.CheckActions(set); err != nil {
		fmt.Fprintln(stderr, err)
		fmt.Fprintf(stderr, "%d error(s) in %s\n", strings.Count(err.Error(), "\n")+1, where)
		return 1
	}
	n := 0
	for _, rb := range set.All() {
		n += len(rb.Actions)
	}
	fmt.Fprintf(stdout, "ok: %d runbooks, %d actions in %s\n", len(set.All()), n, where)
	return 0
}
