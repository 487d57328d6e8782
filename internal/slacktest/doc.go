// Package slacktest is a Slack Web API and Socket Mode server for tests. It
// speaks the wire protocol of slack-go v0.12.5 and slacker v2.0.0-alpha4, so
// the real bot runs against it unmodified:
//
//	s := slacktest.New()
//	defer s.Close()
//	s.AddUser("U1", "alice"); s.AddChannel("C1", "ops")
//	bot := slacker.NewClient(s.BotToken(), s.AppToken(), slacker.WithAPIURL(s.APIURL()))
//	go bot.Listen(ctx)
//	id := s.SlashCommand("U1", "C1", "/recover", "status p-1")
//	s.WaitAck(ctx, id)
//	s.WaitFor(ctx, func(s *slacktest.Server) bool { return len(s.Messages("C1")) == 1 })
//
// What the server does as Slack does: tokens are checked (invalid_auth,
// not_authed, not_allowed_token_type); apps.connections.open needs the xapp-
// token and returns a single-use ws:// URL; the socket gets hello, then
// envelopes, and periodic pings; Block Kit limits are enforced on
// chat.postMessage/update/postEphemeral and response_url (more than 50
// blocks or a section text over 3,000 characters: invalid_blocks with
// response_metadata; blocks JSON over 12,000 characters, checked after the
// per-block rules: msg_blocks_too_long); blocks without a block_id are
// stored with a generated one, which clicks then carry; trigger_ids are
// single-use and expire after 3s; a thread_ts naming a reply is moved to its
// parent; chat.update keeps fields it was not sent (an empty blocks array
// clears them). Where it departs from Slack, for tests' sake: an envelope
// sent while no live socket exists waits for the next one instead of
// failing; with several sockets open every envelope goes to the newest one
// (WithRandomDelivery draws one at random for each envelope, as Slack
// does); test-side helpers (SlashCommand, Click, ClickHome, SubmitView,
// AppMention, AppHomeOpened, Redeliver) panic on an unknown user, channel,
// message or envelope, which Slack could never deliver. Press (a click on a
// button the message shows, with its own value) and CloseView (a modal's
// Close) are what a person does in a client: they return errors instead, for
// internal/demo's page. Messages lists top-level messages (MessagesAfter,
// those after a ts); Thread lists a thread's replies without its parent.
//
// Acks are observable against the bot's state: WithOnAck runs a function on
// each ack before the server records it (a test reads the bot's store there:
// what was committed when the bot acknowledged), AckLog lists them with the
// delivery each answered. Crashes around an ack: LoseNextAck drops the next
// ack of a type together with every socket (the bot died before Slack read
// it), LoseDeliveries sends envelopes into no socket (the bot died before
// reading them), and RedeliverUnacked then retries every envelope without an
// ack, retry_attempt one more, as Slack does after a reconnect. WaitAck waits
// for an ack of the latest delivery.
//
// # How slacker v2.0.0-alpha4 drives Slack (read from its source)
//
// Options and start-up. The API URL option is slacker.WithAPIURL (it becomes
// slack.OptionAPIURL and must end in "/api/"). NewClient builds
// socketmode.New(api, socketmode.OptionDebug(debug)) and nothing else, so
// the socket's ping watchdog stays at slack-go's 30s and no dialer or HTTP
// client can be set. Listen calls apps.connections.open (JSON POST, empty
// body, Bearer xapp-) and dials the URL with Origin https://api.slack.com.
// It never calls auth.test; on hello it keeps connection_info.app_id (used
// only by BotModeIgnoreApp).
//
// Acks. Every events_api, slash_commands and interactive envelope is acked
// at once, with no payload, before any handler runs; handlers then run in
// their own goroutine with Listen's context. So a slash command cannot
// answer through its ack, and a view_submission cannot return
// response_action (errors/update/push): the modal always closes.
//
// Slash commands. The envelope is turned into text: command without its
// "/", a space, then the text ("/recover help" becomes "recover help";
// "/recover" alone becomes "recover "), and matched like a message. Before
// matching, every command (slash, app_mention or message) costs a
// conversations.info (channel) and a users.info (user) call, synchronously;
// failures are logged and the handler still runs with nil Channel and
// UserProfile. Patterns (shomali11/commander) are case-insensitive and
// unanchored: "(\s|^)recover\s+status\s+(.+?)(\s|$)", so a pattern matches
// anywhere in the text, and trailing parameters may be missing ("{id}" is a
// word, "<reason>" the rest of the line; a missing one is ""). The first
// match wins, in this order: the help command (prepended by Listen), then
// commands in AddCommand order, then command groups. The built-in help's
// pattern is the single word "help", so any text containing the word help
// ("/recover help", "/recover reject p-1 need help") goes to slacker's
// built-in help, never to a "recover help" command; replace it with
// bot.Help(&slacker.CommandDefinition{Command: "recover help", ...}).
// In the handler, Event().Data is *slack.SlashCommand (TriggerID,
// ResponseURL, UserName, ...) for slash commands, *slackevents.AppMentionEvent
// or *slackevents.MessageEvent otherwise; Event().TimeStamp is "" for slash
// commands, so replies go top-level.
//
// Replies. Reply/ReplyBlocks post with chat.postMessage and always send
// text, attachments=[] and blocks=[] (a WithReplace text reply therefore
// clears the blocks); WithEphemeral switches to chat.postEphemeral for the
// event's user, WithReplace(ts) to chat.update, WithSchedule to
// chat.scheduleMessage, WithInThread(true) sets thread_ts to the event's ts.
// ReplyError/PostError drop their options: an "ephemeral" error is posted to
// the whole channel as a danger attachment.
//
// Interactions. AddInteraction(&slacker.InteractionDefinition{BlockID: ...})
// routes on block_id only: the first definition whose BlockID equals the
// block_id of any action in a block_actions payload runs; action_id is not
// looked at, so the handler switches on
// Callback().ActionCallback.BlockActions[i].ActionID. Anything without block
// actions (view_submission, view_closed, shortcuts) goes to
// UnsupportedInteractionHandler, or is dropped when none is set.
// Interactions make no conversations.info/users.info calls. trigger_id and
// response_url are Callback().TriggerID and Callback().ResponseURL. The
// context's replier uses Callback().MessageTs, which Slack leaves empty for
// block_actions (it sends container.message_ts and message.ts), so
// WithInThread(true) posts top-level and WithReplace needs an explicit ts
// (Callback().Container.MessageTs); the thread of the clicked message is
// Callback().Container.ThreadTs.
//
// Events API. Only message and app_mention inner events are handled;
// retried envelopes (retry_attempt > 0) run the handler again: slacker does
// not deduplicate. With the default BotModeIgnoreAll, events with a bot_id
// are ignored; BotModeIgnoreApp calls bots.info for each. Every other inner
// event (app_home_opened among them) goes, already acked, to
// UnsupportedEventHandler, which slacker calls inline on its event loop
// (not in a goroutine of its own): a handler that calls Slack must start
// its own goroutine.
//
// App Home. views.publish stores one Home view per user (HomeTab);
// AppHomeOpened sends the app_home_opened event (with the Home view once one
// was published), and ClickHome a block_actions payload from it: container
// type "view", the view, no channel and no response_url, as Slack sends for
// Home tabs. Block ids must be unique within a view (block_id already
// exists), so a Home listing many plans needs per-plan block ids, which
// AddInteraction's exact match cannot route: they reach
// UnsupportedInteractionHandler.
//
// # slack-go v0.12.5 socketmode
//
// Reconnects: RunContext loops; a disconnect message (any reason), a read
// error or close, or the ping watchdog closes the socket and runs
// apps.connections.open again for a fresh URL. Failed opens retry with
// exponential backoff up to 5 minutes (a 429's Retry-After is the minimum);
// invalid_auth, not_authed, account_inactive, token_revoked and HTTP 404 end
// RunContext. The disconnect message is consumed internally and never
// emitted as EventTypeDisconnect (slacker's OnDisconnected never fires).
// Watchdog: yes. The client never pings; it answers the server's pings and,
// on a ticker of maxPingInterval (default 30s, socketmode.OptionPingInterval),
// reconnects when the last ping is older than that interval, so a half-open
// socket is noticed after one to two intervals. Acks are {"envelope_id",
// "payload"} frames written by one sender goroutine. Web API errors: ok:false
// becomes slack.SlackErrorResponse whose Error() is the code; HTTP 429
// becomes *slack.RateLimitedError with Retry-After parsed as whole seconds;
// other non-200 statuses become slack.StatusCodeError.
// MsgOptionBlocks() with no blocks sends no blocks field (chat.update keeps
// the old ones); MsgOptionBlocks([]slack.Block{}...) sends [] and clears
// them. Slash payloads carry is_enterprise_install as the string "false",
// as Slack sends it; v0.12.5 parses both forms (v0.12.4 could not).
package slacktest
