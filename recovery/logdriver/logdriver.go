// Package logdriver is the offline driver: it changes nothing, logs what it was
// asked to do, records every call, and reports a synthetic "before" state so the
// engine's rollback path runs end to end without a cluster.
//
// It names targets and refuses actions exactly as the real drivers would: its
// Check is theirs (backends.Rules, or the checker the bot passes in), so a plan
// made with RECOVERBOT_DRIVERS=log has the identity, dedup and refusals it
// would have in production.
package logdriver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/recovery/backends"
	"github.com/recoverbot/recoverbot/runbooks"
)

var _ recovery.Driver = (*Driver)(nil)

// Call is one recorded driver call.
type Call struct {
	Op     string // "apply" or "undo"
	Action runbooks.Action
	Before json.RawMessage
}

// Driver logs and records. FailApply and FailUndo, when set, make matching calls
// fail (tests use them to drive rollbacks); Block, when set, is called inside
// Apply and may wait (tests use it to hold an execution mid-way).
type Driver struct {
	Log *slog.Logger
	// Rules validates actions and names their targets; nil is the real
	// drivers' rules with Kubernetes' default namespace (backends.Rules{}).
	Rules recovery.Checker
	// Journal, when set, receives one JSON line per call (op, execution id,
	// action index, type, target, the wall-clock time "at", and "term" when
	// Term is set), written before the call returns: a durable record of what
	// would have been done, which the crash and HA tests count.
	Journal io.Writer
	// Term, when set, returns the leadership term the process acts under
	// (with etcd, its election key's create revision; 0 for none). It goes
	// into each journal line, so that a call made by a replica after it lost
	// leadership, or two leaders' calls interleaved, can be found.
	Term      func() int64
	FailApply func(a runbooks.Action) error
	FailUndo  func(a runbooks.Action) error
	Block     func(ctx context.Context, a runbooks.Action)

	mu    sync.Mutex
	calls []Call
}

// New returns a driver logging to log.
func New(log *slog.Logger) *Driver { return &Driver{Log: log} }

// Check implements recovery.Checker with the real drivers' rules.
func (d *Driver) Check(a runbooks.Action) (string, error) {
	if d.Rules == nil {
		return backends.Rules{}.Check(a)
	}
	return d.Rules.Check(a)
}

// Describe implements recovery.Driver.
func (d *Driver) Describe(a runbooks.Action) string {
	t, err := d.Check(a)
	if err != nil {
		return fmt.Sprintf("%s: refused: %v", a.Type, err)
	}
	s := string(a.Type)
	if a.Operation != "" {
		s += " " + a.Operation
	}
	if a.Resource != "" {
		s += " " + a.Resource
	}
	s += " on " + t
	if p := recovery.FormatParams(a.Parameters); p != "" {
		s += " (" + p + ")"
	}
	return s
}

// Apply implements recovery.Driver: it records the call and returns a before
// state naming the action, as a real driver would return what it observed. An
// action the real driver would refuse is refused, and not recorded.
func (d *Driver) Apply(ctx context.Context, a runbooks.Action, report recovery.Reporter) (json.RawMessage, error) {
	target, err := d.Check(a)
	if err != nil {
		return nil, fmt.Errorf("%s refused: %w", a.Type, err)
	}
	if d.Block != nil {
		d.Block(ctx, a)
	}
	if d.FailApply != nil {
		if err := d.FailApply(a); err != nil {
			d.record(ctx, Call{Op: "apply", Action: a}, target)
			return nil, err
		}
	}
	before, _ := json.Marshal(map[string]string{"driver": "log", "target": target, "note": "nothing was changed"})
	d.record(ctx, Call{Op: "apply", Action: a, Before: before}, target)
	d.logger().Info("log driver: would apply", "action", d.Describe(a))
	report(fmt.Sprintf("log driver: %s recorded, nothing changed", a.Type))
	return before, nil
}

// Undo implements recovery.Driver.
func (d *Driver) Undo(ctx context.Context, a runbooks.Action, before json.RawMessage, report recovery.Reporter) error {
	target, _ := d.Check(a) // an undo restores what Apply changed, whatever the rules say now
	d.record(ctx, Call{Op: "undo", Action: a, Before: before}, target)
	if d.FailUndo != nil {
		if err := d.FailUndo(a); err != nil {
			return err
		}
	}
	d.logger().Info("log driver: would undo", "action", d.Describe(a))
	report(fmt.Sprintf("log driver: undo of %s recorded", a.Type))
	return nil
}

// Calls returns a copy of the recorded calls, in order.
func (d *Driver) Calls() []Call {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Call(nil), d.calls...)
}

func (d *Driver) record(ctx context.Context, c Call, target string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, c)
	if d.Journal != nil {
		id, idx, _ := recovery.ExecutionOf(ctx)
		rec := map[string]any{"op": c.Op, "execution": id, "action": idx,
			"type": c.Action.Type, "target": target, "at": time.Now().UTC().Format(time.RFC3339Nano)}
		if d.Term != nil {
			rec["term"] = d.Term()
		}
		line, _ := json.Marshal(rec)
		_, _ = d.Journal.Write(append(line, '\n'))
		if f, ok := d.Journal.(interface{ Sync() error }); ok {
			_ = f.Sync()
		}
	}
}

func (d *Driver) logger() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

// All maps every action type to d.
func (d *Driver) All() recovery.DriverMap {
	m := recovery.DriverMap{}
	for _, t := range runbooks.ActionTypes {
		m[t] = d
	}
	return m
}
