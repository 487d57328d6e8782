// Package runbooks holds the runbook model, its strict YAML loader, the
// event→runbook matcher and parameter templating. It imports only the standard
// library and yaml.v3; the engine (package recovery) builds on it.
//
// # Loading
//
// Load reads every *.yaml and *.yml file of a directory in file name order, each
// file holding one or more runbooks separated by "---"; LoadDefaults returns the
// six runbooks of the reference playbook embedded from defaults/. Loading is
// strict, so a mistake stops start-up instead of silently never matching: unknown
// fields (anywhere but inside parameters and trigger.conditions), wrong types,
// unknown event or action types, duplicate names, missing required fields,
// unknown template variables and invalid literal names are all reported, every
// one of them, as Errors in the form "file:line: path: msg". Numbers in
// parameters become float64, as encoding/json would decode them.
//
// # Matching
//
// Set.Match returns the first runbook in load order whose trigger matches: the
// event type must be equal, and every condition must hold. "confidence" tests the
// event's confidence against {min, max}; "severity" tests its severity (one value
// or a list). Any other key is looked up with Event.Lookup, in data and then in
// context, and a key the event lacks never matches (the reference playbook let it
// match). A {min, max} condition is inclusive and needs a number (a numeric string
// such as "95" counts); a scalar is equality of like with like, where a number may
// also equal a numeric string; a list matches any of its values. Put specific
// runbooks in earlier files (10-…, 20-…) than general ones.
//
// # Templating
//
// Render copies a runbook's actions for one event, replacing in every string of
// parameters (at any depth) and of target:
//
//	{{upstream}} {{route}} {{client}} {{backup_service}}   Event.Lookup: data, then context
//	{{data.KEY}}  {{context.KEY}}                          that map only
//
// Every occurrence is replaced; numbers and booleans are written as in JSON. It
// refuses the whole plan, with a *RenderError, rather than guess: a variable that
// is missing, null or empty (the reference turned "{{route}}:*" into ":*" and
// cleared every key), a map or list, or a value that is not 1 to 253 bytes of
// printable ASCII without spaces, or that holds any of * ? [ ] { } \ ` ' " $ ; | & < >
// or "..". Those are the template safety rules (check.go). What a field may hold
// for its action type, and which target an action touches, are the rules of the
// driver that performs it (recovery.Drivers.Check): the bot checks literal values
// with them at start-up, the engine rendered values at plan time.
package runbooks
