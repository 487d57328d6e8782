package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The TARGETS column shows each plan's targets as the drivers name them,
// namespace included; a long list is cut with a marker, never refused, and
// the row keeps its columns.
func TestExecutionsTableTargets(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var many []string
	for _, n := range []string{"api-gateway", "payments", "checkout", "search", "inventory"} {
		many = append(many, "deployment/shop/"+n)
	}
	resp, _ := json.Marshal(map[string]any{"executions": []map[string]any{
		{"id": "01A", "state": "PENDING_APPROVAL", "runbook": "rb", "decision": "approval", "event_id": "ev1",
			"targets": []string{"deployment/default/api-gateway"}, "created_at": now.Add(-90 * time.Second).Format(time.RFC3339Nano)},
		{"id": "01B", "state": "SUCCEEDED", "runbook": "rb", "decision": "auto", "event_id": "ev2",
			"targets": many, "created_at": now.Add(-3 * time.Minute).Format(time.RFC3339Nano)},
		{"id": "01C", "state": "SUPPRESSED", "runbook": "rb", "decision": "suppressed", "event_id": "ev3",
			"targets": nil, "created_at": now.Add(-time.Hour).Format(time.RFC3339Nano)},
		{"id": "01D", "state": "FAILED", "runbook": "rb", "decision": "auto", "event_id": "ev4",
			"targets": []string{"pod/default/a\tb\nc"}, "created_at": now.Add(-time.Hour).Format(time.RFC3339Nano)},
	}})
	var out bytes.Buffer
	if err := printReadable("executions", resp, now, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	for i, re := range []string{
		`^ID +STATE +RUNBOOK +DECISION +TARGETS +EVENT +AGE$`,
		`^01A +PENDING_APPROVAL +rb +approval +deployment/default/api-gateway +ev1 +1m$`,
		`^01B +SUCCEEDED +rb +auto +deployment/shop/api-gateway,deployment/shop/… \[cut 82 bytes\] +ev2 +3m$`,
		`^01C +SUPPRESSED +rb +suppressed +- +ev3 +1h$`,
		`^01D +FAILED +rb +auto +pod/default/a b c +ev4 +1h$`,
	} {
		if i >= len(lines) || !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("line %d does not match %s:\n%s", i, re, out.String())
		}
	}
	if strings.Contains(out.String(), "//") {
		t.Errorf("a target without its namespace:\n%s", out.String())
	}
}
