// Package recovery is the engine: events become plans, plans become executions.
//
// A plan's life, in order:
//  1. Submit validates the event; an id seen before returns its first answer.
//  2. The planner (planner.go) builds every plan — from an event, Alertmanager,
//     /recover plan, an AI proposal (ai.go), and the read-only Evaluate and
//     Preview alike: the runbooks package matches it and renders the actions and
//     the verify query, and each action's driver validates it and names its
//     target (Drivers.Check). An unresolved, unsafe or driver-refused value
//     refuses the plan. An event no runbook matches may be handed to the AI
//     advisor in the background (ai.go), within its budget (aibudget.go); its
//     proposal is held to the runbook's trigger and always waits for a human.
//  3. The guards (guard.go, one type each, one list) run in a fixed order:
//     runbook, paused, duplicate, rate limit, confidence, never-auto, freeze
//     (freeze.go), blast-radius breaker (storm.go), dry-run. Each reason is kept on the plan;
//     duplicates fold into their plan's repeat count.
//  4. The decision, the plan, its audit record and its outbox message are committed
//     in one bbolt transaction before the sender gets an answer (persist, then act);
//     a write handed to the store is acted upon whatever happened to the caller.
//  5. Auto plans start at once; the rest wait for Approve (a compare-and-set: two
//     clicks run once) or their persisted deadline (EXPIRED). Approval and the
//     start of every run run the guards again with the current mode, runbook,
//     pause, freezes, breaker and rate limit; what they refuse is not run, and says why.
//  6. Each action runs through its Driver under a per-target lock, a step record
//     written before and after the call; a failure undoes the applied actions in
//     reverse with the state each driver observed before acting. Success may be
//     verified against Prometheus (verify.go) and may schedule a rollback. Only a
//     plan that changed something (Execution.Changed) starts a cooldown. An
//     automatic undo is checked again (undo.go): paused, a freeze, a changed
//     runbook or a never-auto action waits for a human; in dry-run no undo, not
//     even a person's, calls a driver. An alert's execution silences it in
//     Alertmanager while the bot works on it, for a bounded time (silence.go).
//  7. At start-up (or a takeover), executions caught mid-way become INTERRUPTED and
//     are reported, never re-run — except a rollback (ROLLING_BACK) no undo call
//     of which may have acted (every undo step ended well or was never called,
//     Step.NotCalled): that one is finished, once (resumableUndo); approved plans
//     not yet started start (admit);
//     deadlines and scheduled rollbacks are re-armed, verification resumes, plans
//     awaiting approval are checked again, silences the bot no longer works
//     under are expired. Under an election every driver call is bounded by the
//     leader's lease (leaseCtx); a call refused or cut off on it is not a failure:
//     the replica stops acting for that execution and gives up leadership
//     (leaseLost), leaving it to the next leader's start-up.
package recovery
