package slacktest

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// exchangeTriggerLocked consumes a trigger_id: Slack accepts each once,
// within its lifetime, and only ids it issued.
func (s *Server) exchangeTriggerLocked(id string) (*trigger, *apiError) {
	t, ok := s.triggers[id]
	switch {
	case !ok:
		return nil, errCode("invalid_trigger_id")
	case t.used:
		return nil, errCode("exchanged_trigger_id")
	case s.cfg.triggerTTL > 0 && s.nowLocked().Sub(t.issued) > s.cfg.triggerTTL:
		return nil, errCode("expired_trigger_id")
	}
	t.used = true
	return t, nil
}

func (s *Server) issueTriggerLocked(userID string) string {
	n := s.nextSeqLocked()
	id := fmt.Sprintf("%d.%d.%032x", 1000000000000+n, 2000000000+n, s.nowLocked().UnixNano()+int64(n))
	s.triggers[id] = &trigger{user: userID, issued: s.nowLocked()}
	return id
}

// parseViewLocked validates a view the way views.open and friends do.
func (s *Server) parseViewLocked(raw string, wantType string) (*view, *apiError) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return nil, &apiError{code: "invalid_arguments", messages: []string{"[ERROR] failed to parse view [json-pointer:/view]"}}
	}
	var v struct {
		Type            string      `json:"type"`
		Title           *textObject `json:"title"`
		Submit          *textObject `json:"submit"`
		CallbackID      string      `json:"callback_id"`
		PrivateMetadata string      `json:"private_metadata"`
		ExternalID      string      `json:"external_id"`
		Blocks          []rawBlock  `json:"blocks"`
	}
	_ = json.Unmarshal([]byte(raw), &v)
	bad := func(msg string) *apiError {
		return &apiError{code: "invalid_arguments", messages: []string{"[ERROR] " + msg}}
	}
	if v.Type != wantType {
		return nil, bad(fmt.Sprintf("must be %q [json-pointer:/view/type]", wantType))
	}
	if wantType == "modal" {
		if v.Title == nil || v.Title.Text == "" {
			return nil, bad("missing required field: title [json-pointer:/view]")
		}
		if utf8.RuneCountInString(v.Title.Text) > maxViewTitle {
			return nil, bad(fmt.Sprintf("must be less than %d characters [json-pointer:/view/title/text]", maxViewTitle+1))
		}
		for _, b := range v.Blocks {
			if b.Type == "input" && v.Submit == nil {
				return nil, bad("submit is required when an input block is present [json-pointer:/view/submit]")
			}
		}
	}
	if len(v.CallbackID) > maxCallbackID {
		return nil, bad("callback_id too long [json-pointer:/view/callback_id]")
	}
	if len(v.PrivateMetadata) > maxPrivateMetadata {
		return nil, bad(fmt.Sprintf("must be less than %d characters [json-pointer:/view/private_metadata]", maxPrivateMetadata+1))
	}
	blocks := json.RawMessage("[]")
	if b, ok := m["blocks"]; ok && string(b) != "null" {
		nb, err := s.normalizeBlocksLocked(string(b), maxViewBlocks, false)
		if err != nil {
			err.code = "invalid_arguments"
			return nil, err
		}
		blocks = nb
	}
	m["blocks"] = blocks
	out := &view{raw: m}
	out.Type = v.Type
	out.CallbackID = v.CallbackID
	out.PrivateMetadata = v.PrivateMetadata
	out.ExternalID = v.ExternalID
	if v.Title != nil {
		out.Title = v.Title.Text
	}
	out.Blocks = blocks
	out.JSON = json.RawMessage(raw)
	return out, nil
}

func (s *Server) newHashLocked() string {
	return fmt.Sprintf("%d.%08x", s.nowLocked().Unix(), s.nextSeqLocked())
}

func (s *Server) viewJSONLocked(v *view) map[string]any {
	out := map[string]any{}
	for k, val := range v.raw {
		out[k] = val
	}
	var prev any
	if v.PreviousViewID != "" {
		prev = v.PreviousViewID
	}
	for k, val := range map[string]any{
		"id": v.ID, "team_id": teamID, "type": v.Type, "blocks": v.Blocks,
		"private_metadata": v.PrivateMetadata, "callback_id": v.CallbackID,
		"state": map[string]any{"values": map[string]any{}}, "hash": v.Hash,
		"previous_view_id": prev, "root_view_id": v.RootViewID, "app_id": appID,
		"external_id": v.ExternalID, "app_installed_team_id": teamID, "bot_id": botID,
	} {
		out[k] = val
	}
	return out
}

func (s *Server) viewsOpen(r *request) (map[string]any, *apiError) {
	t, err := s.exchangeTriggerLocked(r.params["trigger_id"])
	if err != nil {
		return nil, err
	}
	v, err := s.parseViewLocked(r.params["view"], "modal")
	if err != nil {
		return nil, err
	}
	v.ID = s.idLocked("V")
	v.RootViewID = v.ID
	v.User = t.user
	v.TriggerID = r.params["trigger_id"]
	v.Hash = s.newHashLocked()
	s.views = append(s.views, v)
	return map[string]any{"view": s.viewJSONLocked(v)}, nil
}

func (s *Server) viewsPush(r *request) (map[string]any, *apiError) {
	t, err := s.exchangeTriggerLocked(r.params["trigger_id"])
	if err != nil {
		return nil, err
	}
	var top *view
	for _, v := range s.views {
		if v.User == t.user && !v.Closed {
			top = v
		}
	}
	if top == nil {
		return nil, errCode("not_found")
	}
	v, err := s.parseViewLocked(r.params["view"], "modal")
	if err != nil {
		return nil, err
	}
	v.ID = s.idLocked("V")
	v.RootViewID = top.RootViewID
	v.PreviousViewID = top.ID
	v.User = t.user
	v.TriggerID = r.params["trigger_id"]
	v.Hash = s.newHashLocked()
	s.views = append(s.views, v)
	return map[string]any{"view": s.viewJSONLocked(v)}, nil
}

func (s *Server) viewsUpdate(r *request) (map[string]any, *apiError) {
	var target *view
	for _, v := range s.views {
		if (r.params["view_id"] != "" && v.ID == r.params["view_id"]) ||
			(r.params["external_id"] != "" && v.ExternalID == r.params["external_id"]) {
			target = v
		}
	}
	if target == nil {
		return nil, errCode("not_found")
	}
	if h := r.params["hash"]; h != "" && h != target.Hash {
		return nil, errCode("hash_conflict")
	}
	v, err := s.parseViewLocked(r.params["view"], "modal")
	if err != nil {
		return nil, err
	}
	target.raw = v.raw
	target.Blocks, target.JSON, target.Title = v.Blocks, v.JSON, v.Title
	target.CallbackID, target.PrivateMetadata = v.CallbackID, v.PrivateMetadata
	if v.ExternalID != "" {
		target.ExternalID = v.ExternalID
	}
	target.Hash = s.newHashLocked()
	target.Updates++
	return map[string]any{"view": s.viewJSONLocked(target)}, nil
}

func (s *Server) viewsPublish(r *request) (map[string]any, *apiError) {
	userID := r.params["user_id"]
	if _, ok := s.users[userID]; !ok {
		return nil, errCode("user_not_found")
	}
	v, err := s.parseViewLocked(r.params["view"], "home")
	if err != nil {
		return nil, err
	}
	if old, ok := s.homeTabs[userID]; ok {
		if h := r.params["hash"]; h != "" && h != old.Hash {
			return nil, errCode("hash_conflict")
		}
		v.ID, v.Updates = old.ID, old.Updates+1
	} else {
		v.ID = s.idLocked("V")
	}
	v.RootViewID = v.ID
	v.User = userID
	v.Hash = s.newHashLocked()
	s.homeTabs[userID] = v
	return map[string]any{"view": s.viewJSONLocked(v)}, nil
}
