package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

// Output for people. executions, show, audit and stats print aligned columns or
// readable text by default, like `kubectl get`; -o json prints the admin API's
// JSON as the CLI always has, for scripts.

// readableCommands are the commands with a readable default and -o json.
var readableCommands = map[string]bool{"executions": true, "show": true, "audit": true, "stats": true,
	"freeze": true, "unfreeze": true, "freezes": true}

// printReadable prints an admin API answer for people; now ages the rows. An
// answer of an unexpected shape is an error: the caller prints it as it came.
func printReadable(cmd string, resp []byte, now time.Time, w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	switch cmd {
	case "executions":
		var v struct {
			Executions []struct {
				ID        string   `json:"id"`
				State     string   `json:"state"`
				Runbook   string   `json:"runbook"`
				Decision  string   `json:"decision"`
				Targets   []string `json:"targets"`
				EventID   string   `json:"event_id"`
				CreatedAt string   `json:"created_at"`
			}
		}
		if err := decodeExecutions(resp, &v.Executions); err != nil {
			return err
		}
		fmt.Fprintln(tw, "ID\tSTATE\tRUNBOOK\tDECISION\tTARGETS\tEVENT\tAGE")
		for _, x := range v.Executions {
			created, _ := time.Parse(time.RFC3339Nano, x.CreatedAt)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.ID, x.State, x.Runbook, dash(x.Decision),
				targetsCell(x.Targets), dash(x.EventID), age(now, created))
		}
		if len(v.Executions) == 0 {
			fmt.Fprintln(tw, "(none)")
		}
	case "show":
		var v struct {
			Execution recovery.Execution     `json:"execution"`
			Audit     []recovery.AuditRecord `json:"audit"`
		}
		if err := json.Unmarshal(resp, &v); err != nil || v.Execution.ID == "" {
			return fmt.Errorf("not an execution: %v", err)
		}
		x := &v.Execution
		fmt.Fprintf(tw, "ID:\t%s\n", x.ID)
		fmt.Fprintf(tw, "State:\t%s\n", x.State)
		fmt.Fprintf(tw, "Runbook:\t%s\n", x.Runbook)
		fmt.Fprintf(tw, "Decision:\t%s\n", dash(string(x.Decision)))
		fmt.Fprintf(tw, "Targets:\t%s\n", dash(strings.Join(x.Targets, ", ")))
		fmt.Fprintf(tw, "Event:\t%s %s\n", x.Event.Type, x.EventID)
		fmt.Fprintf(tw, "Created:\t%s (%s ago)\n", x.CreatedAt.UTC().Format(time.RFC3339), age(now, x.CreatedAt))
		if x.ApprovedBy != "" {
			fmt.Fprintf(tw, "Approved by:\t%s\n", x.ApprovedBy)
		}
		for i, r := range x.Reasons {
			label := ""
			if i == 0 {
				label = "Reasons:"
			}
			fmt.Fprintf(tw, "%s\t%s\n", label, r)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w, "\nAudit:")
		auditTable(tw, v.Audit, now, false)
	case "audit":
		var recs []recovery.AuditRecord
		sc := bufio.NewScanner(bytes.NewReader(resp))
		sc.Buffer(nil, 16<<20) // a record carries its plan snapshot
		for sc.Scan() {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			var r recovery.AuditRecord
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				return err
			}
			recs = append(recs, r)
		}
		if err := sc.Err(); err != nil {
			return err
		}
		auditTable(tw, recs, now, true)
	case "freezes", "freeze", "unfreeze":
		var v struct {
			Freezes []recovery.Freeze `json:"freezes"`
			Freeze  *recovery.Freeze  `json:"freeze"`
			Ended   []recovery.Freeze `json:"ended"`
		}
		if err := json.Unmarshal(resp, &v); err != nil {
			return err
		}
		switch {
		case cmd == "freeze" && v.Freeze != nil:
			fmt.Fprintf(w, "Frozen: %s until %s (%s). Plans in scope wait for approval.\n", v.Freeze.Scope(), v.Freeze.End.UTC().Format(time.RFC3339), v.Freeze.ID)
			v.Freezes = []recovery.Freeze{*v.Freeze}
		case cmd == "unfreeze" && v.Ended != nil:
			fmt.Fprintf(w, "Lifted %d freeze%s.\n", len(v.Ended), map[bool]string{true: "", false: "s"}[len(v.Ended) == 1])
			v.Freezes = v.Ended
		case cmd == "freezes" && v.Freezes != nil:
		default:
			return fmt.Errorf("not a freeze answer")
		}
		freezeTable(tw, v.Freezes, now)
	case "stats":
		var v struct{ Text string }
		if err := json.Unmarshal(resp, &v); err != nil {
			return err
		}
		fmt.Fprint(w, v.Text) // already laid out by the bot
		return nil
	}
	return tw.Flush()
}

// decodeExecutions reads the executions list's answer.
func decodeExecutions(resp []byte, into any) error {
	var v struct {
		Executions json.RawMessage `json:"executions"`
	}
	if err := json.Unmarshal(resp, &v); err != nil {
		return err
	}
	if v.Executions == nil {
		return fmt.Errorf("no executions in the answer")
	}
	return json.Unmarshal(v.Executions, into)
}

func auditTable(tw io.Writer, recs []recovery.AuditRecord, now time.Time, withExecution bool) {
	if withExecution {
		fmt.Fprintln(tw, "AGE\tEXECUTION\tACTOR\tMOVE\tREASON")
	} else {
		fmt.Fprintln(tw, "AGE\tACTOR\tMOVE\tREASON")
	}
	for _, r := range recs {
		move := "-"
		if r.From != "" || r.To != "" {
			move = fmt.Sprintf("%s→%s", dash(string(r.From)), dash(string(r.To)))
		}
		if withExecution {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", age(now, r.At), dash(r.ExecutionID), r.Actor, move, r.Reason)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", age(now, r.At), r.Actor, move, r.Reason)
		}
	}
	if len(recs) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
}

// maxTargetsCell bounds the TARGETS column so one plan touching many
// targets does not push the rest of the row off the screen; `show` lists
// them all.
const maxTargetsCell = 60

// targetsCell is a plan's targets, comma-separated, cut with "…" when long
// (recovery.CutChars: the one way text is cut); "-" when it has none.
// Tabs and newlines, which would break the columns, become spaces.
func targetsCell(targets []string) string {
	s := strings.Join(targets, ",")
	s = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
	return dash(recovery.CutChars(s, maxTargetsCell))
}

// freezeTable lists freezes: id, scope, when they end, how long is left, who, why.
func freezeTable(tw io.Writer, fs []recovery.Freeze, now time.Time) {
	fmt.Fprintln(tw, "ID\tSCOPE\tUNTIL\tLEFT\tBY\tREASON")
	for _, f := range fs {
		left, by := "-", f.By
		if f.End.After(now) {
			left = f.End.Sub(now).Round(time.Second).String()
		}
		if f.Lifted != "" {
			by += ", lifted by " + f.Lifted
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.ID, f.Scope(), f.End.UTC().Format(time.RFC3339), left, by, f.Reason)
	}
	if len(fs) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age is how long ago t was, in kubectl's style: 45s, 12m, 3h, 9d.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d/time.Second)))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}
