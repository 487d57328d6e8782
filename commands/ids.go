package commands

import "strings"

// Block and action ids shared by the renderer and the router. Block ids are
// static because slacker v2 routes an interaction on block_id alone (the
// first InteractionDefinition whose BlockID equals a clicked action's
// block_id runs); the router then switches on the action id. A message holds
// at most one of each block, so static ids never collide. The App Home lists
// many plans in one view, where Slack wants every block_id unique, so there
// a plan's buttons carry HomeBlockID (see HomeBlock).
const (
	// BlockApproval holds Approve & Execute / Reject / View Details on a plan
	// that awaits approval.
	BlockApproval = "recovery_approval"
	// BlockOutcome holds Roll back (when something can be undone), Keep as
	// is (when an automatic rollback awaits approval), Mark as false action
	// (when it ran and is not marked yet) and View Details on a finished
	// execution.
	BlockOutcome = "recovery_outcome"

	ActionApprove   = "approve_recovery"
	ActionReject    = "reject_recovery"
	ActionDetails   = "view_recovery_details"
	ActionRollback  = "rollback_recovery"
	ActionMarkFalse = "mark_false_action"
	ActionKeep      = "keep_as_is" // decline an automatic rollback awaiting approval
)

// homeBlockSep joins a message block id and a plan id in the App Home.
const homeBlockSep = ":"

// HomeBlockID is the block_id of planID's buttons in the App Home: the
// message's block id (BlockApproval, BlockOutcome) and the plan id.
func HomeBlockID(block, planID string) string { return block + homeBlockSep + planID }

// HomeBlock reports whether blockID is a plan's button block in the App Home.
func HomeBlock(blockID string) bool {
	for _, b := range []string{BlockApproval, BlockOutcome} {
		if id, ok := strings.CutPrefix(blockID, b+homeBlockSep); ok && id != "" {
			return true
		}
	}
	return false
}

// Settings keys this package and the Slack notifier keep in the store.
const (
	// SettingSigningKey holds the generated HMAC key for button values when
	// RECOVERBOT_SIGNING_KEY is unset.
	SettingSigningKey = "slack:signing_key"
	// SettingMessagePrefix + execution id holds where that execution's root
	// message is (channel, ts) and the last outbox seq delivered for it.
	SettingMessagePrefix = "slack:ts:"
)

// ActorPrefix marks actors who are Slack users in the audit trail
// ("slack:U0123"), whether they acted in Slack or through an admin token
// configured with their Slack user id (Person.Actor).
const ActorPrefix = "slack:"

// TokenPrefix marks actors who acted through an admin token that names no
// Slack user ("token:deploy-bot"); LocalActor is the local operator of a bot
// without admin tokens.
const (
	TokenPrefix = "token:"
	LocalActor  = "local"
)

// Actor is the audit actor for a Slack user id.
func Actor(userID string) string { return ActorPrefix + userID }
