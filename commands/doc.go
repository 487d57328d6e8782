// Package commands is recoverbot's Slack vocabulary: the /recover
// sub-commands, the Block Kit messages and modal of a plan, the App Home view
// (HomeView), and the handlers of their buttons. It talks to the engine
// through the Engine interface and to Slack through a small Slack interface
// (and slacker's contexts for messages), so the bot package only wires it.
//
// The life of a click, in order (Router.Interact, then Handler.Click):
//  1. Router takes it unacknowledged; a redelivery of one it has (same
//     trigger id and action timestamp) is not handled again, only acked
//     with the first.
//  2. The button value must carry this bot's HMAC for that very action
//     (Signer): a forged, altered or borrowed value is refused and audited.
//  3. The click must come from the incident channel, or from the bot's App
//     Home (a view it published to that user: no channel; the plan buttons
//     there are the message's, under per-plan block ids).
//  4. Approve, Reject, Roll back and Mark as false action need an approver
//     (Approvers: the runbook's list, else the global one; user groups
//     resolved and cached).
//  5. The engine decides: its compare-and-set lets one approval through, and
//     it checks four-eyes and the deadline. Every refusal is audited and
//     explained privately; nothing runs unless every step said yes.
//  6. Router acks the envelope (the decision, or the refusal, is committed),
//     then replies. A bot that dies before the ack leaves the click to
//     Slack's redelivery, which step 5 decides from the store: once.
//
// The plan message itself is only ever written by the Slack notifier
// (package bot), from the execution as stored: one writer, so it never shows a
// state older than one it showed before. Message renders it for any state and
// keeps it within Block Kit's limits. The App Home is republished by package
// bot from LoadHome; what it shows as keeping the bot from acting on its own
// is rendered by suspensions alone.
package commands
