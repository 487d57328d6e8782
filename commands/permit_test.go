package commands

import (
	"context"
	"errors"
	"testing"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

// Permit is the one rule for Slack and the admin API: every kind of person
// against a runbook with its own list, a runbook gone, four-eyes and the
// global list.
func TestPermit(t *testing.T) {
	rb := &runbooks.Runbook{Name: "guarded", Approvers: []string{"UALICE"}}
	plan := &recovery.Execution{Plan: recovery.Plan{ID: "p1", Runbook: "guarded"}}
	fourEyes := &recovery.Execution{Plan: recovery.Plan{ID: "p2", Runbook: "guarded", FourEyes: true, RequestedBy: "slack:UALICE"}}
	alice, bob := SlackUser("UALICE"), Person{Name: "bob", SlackID: "UBOB"}
	bot, local := Person{Name: "deploy-bot"}, Person{Name: LocalActor, Local: true}
	for _, c := range []struct {
		name     string
		p        Person
		verb     string
		x        *recovery.Execution
		rb       *runbooks.Runbook
		offline  bool
		want     recovery.Code
		sentinel error
	}{
		{"on the runbook's list", alice, "approve", plan, rb, false, "", nil},
		{"a token of a Slack user on the global list only", bob, "approve", plan, rb, false, recovery.CodeForbidden, ErrNotApprover},
		{"the global list when the runbook has none", bob, "approve", plan, &runbooks.Runbook{Name: "guarded"}, false, "", nil},
		{"the global list for pause", bob, "pause", nil, nil, false, "", nil},
		{"not on the global list for pause", alice, "pause", nil, nil, false, recovery.CodeForbidden, ErrNotApprover},
		{"approve a plan whose runbook is gone", alice, "approve", plan, nil, false, recovery.CodeForbidden, ErrRunbookGone},
		{"reject a plan whose runbook is gone: the global list", bob, "reject", plan, nil, false, "", nil},
		{"a token of no Slack user", bot, "reject", plan, rb, false, recovery.CodeForbidden, nil},
		{"the local operator with Slack on", local, "reject", plan, rb, false, recovery.CodeForbidden, nil},
		{"the local operator offline", local, "approve", plan, rb, true, "", nil},
		{"the local operator offline, a four-eyes plan", local, "approve", fourEyes, rb, true, recovery.CodeForbidden, nil},
		{"the local operator offline rejects a four-eyes plan", local, "reject", fourEyes, rb, true, "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := NewApprovers([]string{"UBOB"}, nil, 0, nil)
			a.LocalDecides = c.offline
			err := a.Permit(context.Background(), c.p, c.verb, c.x, c.rb)
			if got := recovery.ErrorCode(err); got != c.want || (c.sentinel != nil && !errors.Is(err, c.sentinel)) {
				t.Errorf("Permit = %v (code %q), want code %q (%v)", err, got, c.want, c.sentinel)
			}
		})
	}
	if got := (Person{Name: "alice", SlackID: "UALICE"}).Actor(); got != SlackUser("UALICE").Actor() || got != "slack:UALICE" {
		t.Errorf("a token of UALICE acts as %q, want slack:UALICE, as in Slack", got)
	}
	if bot.Actor() != "token:deploy-bot" || local.Actor() != "local" {
		t.Errorf("actors %q, %q", bot.Actor(), local.Actor())
	}
}
