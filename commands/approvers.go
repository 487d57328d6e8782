package commands

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

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
