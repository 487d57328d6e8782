package bot

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

// FreezeWindow is a recurring freeze declared in the config file
// (freeze_windows): from each activation of Cron, in TimeZone, plans in its
// scope wait for approval for Duration (recovery.FreezeGuard).
type FreezeWindow struct {
	Name     string        `yaml:"name"`
	Cron     string        `yaml:"cron"`      // five fields: minute hour day-of-month month day-of-week
	Duration time.Duration `yaml:"duration"`  // like 2h
	TimeZone string        `yaml:"time_zone"` // IANA, like Europe/Paris; default UTC
	Runbook  string        `yaml:"runbook"`   // scope; empty: every runbook
	Target   string        `yaml:"target"`    // scope, as plans name targets; empty: every target
	Reason   string        `yaml:"reason"`

	line  int               // where it is in the file (0: not from a file)
	sched recovery.Schedule // set by check
}

var windowKeys = []string{"name", "cron", "duration", "time_zone", "runbook", "target", "reason"}

// UnmarshalYAML decodes one window strictly (a node's Decode does not inherit
// the file's KnownFields) and remembers its line.
func (w *FreezeWindow) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a freeze window is a mapping with the keys %s", n.Line, strings.Join(windowKeys, ", "))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !slices.Contains(windowKeys, k.Value) {
			return fmt.Errorf("line %d: field %s not found in a freeze window (keys: %s)", k.Line, k.Value, strings.Join(windowKeys, ", "))
		}
	}
	type plain FreezeWindow
	if err := n.Decode((*plain)(w)); err != nil {
		return err
	}
	w.line = n.Line
	return nil
}

// windowParser reads the standard five-field cron expressions and the
// @daily-style descriptors.
var windowParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// check validates the window and parses its schedule; the error names the
// field.
func (w *FreezeWindow) check(names map[string]bool) error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
	}
	switch {
	case w.Name == "" || len(w.Name) > 64 || !printable(w.Name):
		return bad("name", "%q must be 1 to 64 printable characters without spaces", w.Name)
	case names[w.Name]:
		return bad("name", "%q is used by another window", w.Name)
	case w.Duration < time.Minute || w.Duration > recovery.MaxFreeze:
		return bad("duration", "%s is outside 1m..%s", w.Duration, recovery.MaxFreeze)
	case strings.TrimSpace(w.Reason) == "" || len(w.Reason) > recovery.MaxFreezeReason:
		return bad("reason", "is required (at most %d characters): it is shown on every plan the window holds", recovery.MaxFreezeReason)
	case len(w.Target) > 256 || !printable(w.Target):
		return bad("target", "%q must be a target as plans name it (like deployment/payments/api), without spaces", w.Target)
	case strings.HasPrefix(strings.TrimSpace(w.Cron), "@every"), strings.Contains(w.Cron, "TZ="):
		return bad("cron", "%q: use a cron expression or @daily-style descriptor, and time_zone for the zone", w.Cron)
	}
	tz := w.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	loc, err := time.LoadLocation(tz)
	if err != nil || tz == "Local" {
		return bad("time_zone", "%q is not an IANA time zone (like Europe/Paris or UTC)", w.TimeZone)
	}
	s, err := windowParser.Parse(w.Cron)
	if err != nil {
		return bad("cron", "%q: %v (five fields: minute hour day-of-month month day-of-week)", w.Cron, err)
	}
	spec := s.(*cron.SpecSchedule)
	spec.Location = loc
	w.sched = spec
	names[w.Name] = true
	return nil
}

// checkWindows validates every window of file and prefixes each error with
// file:line, as runbook errors are.
func checkWindows(file string, ws []FreezeWindow) error {
	var errs []error
	names := map[string]bool{}
	for i := range ws {
		if err := ws[i].check(names); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: freeze_windows[%d].%w", file, ws[i].line, i, err))
		}
	}
	return errors.Join(errs...)
}

// checkWindowRunbooks refuses a window scoped to a runbook that is not
// loaded: it would hold nothing, silently.
func checkWindowRunbooks(ws []FreezeWindow, books *runbooks.Set) error {
	var errs []error
	for i, w := range ws {
		if w.Runbook != "" && books.Get(w.Runbook) == nil {
			errs = append(errs, fmt.Errorf("config freeze_windows[%d] (%s, line %d).runbook: no runbook named %q is loaded", i, w.Name, w.line, w.Runbook))
		}
	}
	return errors.Join(errs...)
}

// engineWindows are the windows as the engine takes them.
func engineWindows(ws []FreezeWindow) []recovery.FreezeWindow {
	var out []recovery.FreezeWindow
	for _, w := range ws {
		tz := w.TimeZone
		if tz == "" {
			tz = "UTC"
		}
		out = append(out, recovery.FreezeWindow{Name: w.Name, Spec: w.Cron + " " + tz, Schedule: w.sched, Duration: w.Duration,
			Runbook: w.Runbook, Target: w.Target, Reason: strings.TrimSpace(w.Reason)})
	}
	return out
}
