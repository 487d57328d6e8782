package bot

import (
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/recoverbot/recoverbot/recovery/backends"
	"github.com/recoverbot/recoverbot/recovery/kube/kubeop"
	"github.com/recoverbot/recoverbot/runbooks"
)

// A literal value a driver refuses stops the start-up, in every mode and with
// every driver set, with the action's file:line and the driver's reason;
// templated actions wait for plan time.
func TestStartUpChecksLiteralActions(t *testing.T) {
	const book = `name: bad
trigger:
  eventType: CAPACITY_WARNING
actions:
  - type: SCALE_RESOURCE
    resource: replicas
    target: {deployment: '{{context.app}}'}
    parameters: {to: 3}
  - type: RATE_LIMIT
    parameters: {target: 0.0.0.0/0, limit: 1, window: 60}
  - type: RESTART_POD
    target: {namespace: Prod, deployment: api}
safety:
  maxExecutionsPerHour: 1
`
	books, err := runbooks.LoadFS(fstest.MapFS{"books/a.yaml": {Data: []byte(book)}}, "books")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`books/a.yaml:9: runbook bad: actions[1] (RATE_LIMIT): parameters.target: "0.0.0.0/0" matches every client`,
		`books/a.yaml:11: runbook bad: actions[2] (RESTART_POD): invalid namespace name "Prod"`,
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"log drivers", Config{Drivers: "log", Mode: "full"}},
		{"real drivers, dry-run, no backend", Config{Drivers: "real", Mode: "dry-run"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, closeAll, err := buildDrivers(tc.cfg, books, func(string) string { return "" }, nil, slog.New(slog.DiscardHandler))
			closeAll()
			if err == nil {
				t.Fatal("buildDrivers: got nil, want the refused literal actions")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(want) {
				t.Fatalf("error:\n%s\nwant %d lines", err, len(want))
			}
			for i := range want {
				if !strings.HasPrefix(lines[i], want[i]) {
					t.Errorf("line %d:\n got %s\nwant %s…", i, lines[i], want[i])
				}
			}
		})
	}
}

// The shipped runbooks pass their drivers' rules.
func TestDefaultRunbooksPassTheDrivers(t *testing.T) {
	books, err := runbooks.LoadDefaults()
	if err != nil {
		t.Fatal(err)
	}
	r := &router{rules: backends.Rules{Namespace: kubeop.DefaultNamespace}}
	if err := checkActions(books, r); err != nil {
		t.Errorf("checkActions: %v", err)
	}
}
