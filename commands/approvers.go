package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

// GroupMembers lists the members of a Slack user group
// (usergroups.users.list); *slack.Client implements it.
type GroupMembers interface {
	GetUserGroupMembersContext(ctx context.Context, group string) ([]string, error)
}

// GroupTTL is how long a user group's member list is trusted before it is
// asked again: long enough that a burst of clicks costs one call, short enough
// that someone removed from the on-call group loses approval within minutes.
const GroupTTL = 3 * time.Minute

// Approvers decides who may approve, reject and roll back. The list is the
// runbook's own approvers when it has any, else the global list
// (RECOVERBOT_SLACK_APPROVERS). Entries are user ids (U…, W…) or user-group
// ids (S…), whose members are resolved through Slack and cached for TTL.
// An empty list means nobody: approvals are refused, never opened to all.
type Approvers struct {
	global []string
	groups GroupMembers
	ttl    time.Duration
	now    func() time.Time

	// LocalDecides lets the local operator (loopback, no admin tokens) take
	// decisions: set in offline mode only (see Permit).
	LocalDecides bool

	mu    sync.Mutex
	cache map[string]groupEntry
}

type groupEntry struct {
	members []string
	at      time.Time
}

// NewApprovers returns the approver policy. now may be nil (time.Now).
func NewApprovers(global []string, groups GroupMembers, ttl time.Duration, now func() time.Time) *Approvers {
	if now == nil {
		now = time.Now
	}
	if ttl <= 0 {
		ttl = GroupTTL
	}
	return &Approvers{global: slices.Clone(global), groups: groups, ttl: ttl, now: now, cache: map[string]groupEntry{}}
}

// ParseApprovers splits a comma-separated list of Slack user and user-group
// ids, refusing anything that is neither (a name like @alice is not an id).
func ParseApprovers(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !ValidApproverID(f) {
			return nil, fmt.Errorf("%q is not a Slack user id (U…/W…) or user-group id (S…)", f)
		}
		out = append(out, f)
	}
	return out, nil
}

// ValidApproverID reports whether id looks like a Slack user (U…, W…) or
// user-group (S…) id.
func ValidApproverID(id string) bool {
	if len(id) < 2 || len(id) > 24 || !strings.ContainsRune("UWS", rune(id[0])) {
		return false
	}
	for _, c := range id[1:] {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Global returns the global list.
func (a *Approvers) Global() []string { return slices.Clone(a.global) }

// For returns the approver list of a runbook (nil: the global list).
func (a *Approvers) For(rb *runbooks.Runbook) []string {
	if rb != nil && len(rb.Approvers) > 0 {
		return rb.Approvers
	}
	return a.global
}

// Allowed reports whether user is in list, directly or through a user group.
// A group that cannot be resolved is an error unless the user was found
// elsewhere: when the bot cannot tell, the caller refuses.
func (a *Approvers) Allowed(ctx context.Context, list []string, user string) (bool, error) {
	if slices.Contains(list, user) {
		return true, nil
	}
	var firstErr error
	for _, id := range list {
		if id == "" || id[0] != 'S' {
			continue
		}
		members, err := a.members(ctx, id)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("user group %s: %w", id, err)
			}
			continue
		}
		if slices.Contains(members, user) {
			return true, nil
		}
	}
	return false, firstErr
}

func (a *Approvers) members(ctx context.Context, group string) ([]string, error) {
	now := a.now()
	a.mu.Lock()
	e, ok := a.cache[group]
	a.mu.Unlock()
	if ok && now.Sub(e.at) < a.ttl {
		return e.members, nil
	}
	if a.groups == nil {
		return nil, fmt.Errorf("no Slack client to resolve user groups")
	}
	m, err := a.groups.GetUserGroupMembersContext(ctx, group)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.cache[group] = groupEntry{members: m, at: now}
	a.mu.Unlock()
	return m, nil
}

// Why Permit refused, for callers that word it their own way (errors.Is).
var (
	ErrRunbookGone = errors.New("the plan's runbook is no longer loaded: its approvers are unknown")
	ErrNotApprover = errors.New("not an approver")
)

// Person is who takes a decision, as a credential shows it: a Slack user
// (SlackID), a named admin token (Name, and SlackID when the token is
// configured with its owner's Slack user id), or the local operator of a bot
// without admin tokens (Local). Never a name a request chose for itself.
type Person struct {
	Name    string // the admin token's name, or LocalActor; empty for a Slack user
	SlackID string // U…/W…: the same person in Slack and through a token
	Local   bool
}

// SlackUser is the person behind a Slack user id.
func SlackUser(id string) Person { return Person{SlackID: id} }

// Actor is the person's canonical id: what the audit records, what a plan's
// RequestedBy and ApprovedBy hold and what four-eyes (recovery.Engine.Approve)
// compares. A token that belongs to a Slack user acts as that user
// ("slack:U0123", as Slack does), so the same person is the same actor
// whichever way they come; other tokens are "token:<name>"; the local
// operator is "local".
func (p Person) Actor() string {
	switch {
	case p.SlackID != "":
		return Actor(p.SlackID)
	case p.Local:
		return LocalActor
	}
	return TokenPrefix + p.Name
}

// Permit is the one answer to "may p approve, reject, roll back, mark false
// (verb) plan x, or pause or resume (x nil)?" for every way in: Slack buttons
// and commands (through Allowed) and the admin API. It returns nil, or a
// *recovery.Error: CodeForbidden with the sentence to show, CodeUnavailable
// when a user group could not be resolved (the caller refuses; a retry may
// help).
//
//   - The list is the plan's runbook's approvers, else the global list; for
//     pause and resume the global list. Approving a plan whose runbook is no
//     longer loaded is refused: its approvers are unknown.
//   - A person with a Slack user id must be on the list (Allowed).
//   - A token without a Slack user id is on no list: it may read and ask,
//     not decide.
//   - The local operator (loopback, no admin tokens) decides only when
//     LocalDecides is set — offline mode, where nobody else can — and never
//     approves a four-eyes plan someone requested: it cannot show it is not
//     the requester.
func (a *Approvers) Permit(ctx context.Context, p Person, verb string, x *recovery.Execution, rb *runbooks.Runbook) error {
	list, what := a.global, "recoverbot"
	if x != nil {
		what = x.Runbook
		if rb == nil && verb == "approve" {
			return &recovery.Error{Code: recovery.CodeForbidden, Msg: "Runbook " + x.Runbook + " is no longer loaded, so nobody can approve this plan", Err: ErrRunbookGone}
		}
		list = a.For(rb)
	}
	switch {
	case p.SlackID != "":
		ok, err := a.Allowed(ctx, list, p.SlackID)
		if err != nil {
			return &recovery.Error{Code: recovery.CodeUnavailable, Msg: "Could not check whether " + p.Actor() + " is an approver for " + what + ": nothing was done. Try again.", Err: err}
		}
		if !ok {
			return &recovery.Error{Code: recovery.CodeForbidden, Msg: p.Actor() + " is not an approver for " + what, Err: ErrNotApprover}
		}
		return nil
	case p.Local:
		if !a.LocalDecides {
			return recovery.Errorf(recovery.CodeForbidden, "the local operator (no admin token) may not %s here: Slack approvers decide; use an admin token that names your Slack user id (RECOVERBOT_ADMIN_TOKENS)", verb)
		}
		if x != nil && verb == "approve" && x.FourEyes && x.RequestedBy != "" {
			return recovery.Errorf(recovery.CodeForbidden, "four-eyes: the local operator cannot approve a plan someone requested (it cannot show it is not the requester); approve it with an admin token that names your Slack user id")
		}
		return nil
	}
	return recovery.Errorf(recovery.CodeForbidden, "admin token %q names no Slack user id, so it is not an approver for %s (approver lists hold Slack users)", p.Name, what)
}

// permitCause is what stands behind a Permit refusal, for logs and the audit:
// the wrapped error (a user group Slack did not resolve), else err itself.
func permitCause(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}
