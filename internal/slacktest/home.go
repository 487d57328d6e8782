package slacktest

import (
	"encoding/json"
	"fmt"
)

// HomeTab returns the App Home view last published for user
// (views.publish), and whether there is one. Its Updates counts the
// publishes after the first.
func (s *Server) HomeTab(user string) (View, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.homeTabs[user]
	if !ok {
		return View{}, false
	}
	return v.clone(), true
}

// AppHomeOpened delivers the app_home_opened event Slack sends when user
// opens the app's Home tab: an events_api envelope whose event names the
// user, the app's direct-message channel with them, the tab and, once the
// app has published one, the Home view as Slack holds it. It panics if the
// user is unknown.
func (s *Server) AppHomeOpened(user string) (envelopeID string) {
	s.mu.Lock()
	u := s.mustUserLocked(user)
	ev := map[string]any{
		"type":     "app_home_opened",
		"user":     u.id,
		"channel":  s.imLocked(u.id).id,
		"tab":      "home",
		"event_ts": s.nextTSLocked(),
	}
	if v, ok := s.homeTabs[u.id]; ok {
		ev["view"] = s.viewJSONLocked(v)
	}
	inner, _ := json.Marshal(ev)
	e := s.newEnvelopeLocked("events_api", s.callbackLocked(inner), false)
	s.mu.Unlock()
	return s.send(e, "")
}

// ClickHome delivers the block_actions envelope Slack sends when user
// presses a button in the Home view published for them: a "view" container
// and the view itself, no channel, no message and no response_url (Slack
// gives none for Home tabs). It panics if the user has no Home, or the Home
// has no such button: Slack could not send that click.
func (s *Server) ClickHome(user, actionID, blockID, value string) (envelopeID string) {
	s.mu.Lock()
	u := s.mustUserLocked(user)
	v, ok := s.homeTabs[u.id]
	if !ok {
		s.mu.Unlock()
		panic(fmt.Sprintf("slacktest: %s has no Home tab to click in", user))
	}
	el := findElement(v.Blocks, blockID, actionID)
	if el == nil {
		s.mu.Unlock()
		panic(fmt.Sprintf("slacktest: no button %s in block %s of %s's Home tab", actionID, blockID, user))
	}
	action := map[string]any{
		"action_id": actionID,
		"block_id":  blockID,
		"value":     value,
		"action_ts": s.nextTSLocked(),
	}
	for _, k := range []string{"type", "text", "style"} {
		if x, ok := el[k]; ok {
			action[k] = x
		}
	}
	payload := map[string]any{
		"type":                  "block_actions",
		"user":                  userRef(u),
		"api_app_id":            appID,
		"token":                 verifyToken,
		"container":             map[string]any{"type": "view", "view_id": v.ID},
		"trigger_id":            s.issueTriggerLocked(u.id),
		"team":                  teamRef(),
		"enterprise":            nil,
		"is_enterprise_install": false,
		"view":                  s.viewJSONLocked(v),
		"actions":               []any{action},
	}
	e := s.newEnvelopeLocked("interactive", payload, false)
	s.mu.Unlock()
	return s.send(e, "")
}
