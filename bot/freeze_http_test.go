package bot

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
)

// The admin API's freezes, on real HTTP and bbolt: approvers only (a refusal
// is audited), bad input is a 400 naming the field, a freeze holds an
// in-scope event for approval, shows in /v1/freezes and /v1/status, and is
// lifted by id or all at once.
func TestAdminAPIFreezes(t *testing.T) {
	h := newAPIWith(t, recovery.ModeFull, "", func(a *API) {
		a.AdminTokens = []AdminToken{{Name: "tester", SlackID: testApprover, Token: "ad-tok-approver-0001"},
			{Name: "intern", SlackID: "UINTERN", Token: "ad-tok-intern-000001"}}
	})
	const tok, intern = "ad-tok-approver-0001", "ad-tok-intern-000001"
	for _, c := range []struct {
		name, path, token, body string
		status                  int
		msg                     string
	}{
		{"not an approver", "/v1/freeze", intern, `{"duration":"1h","reason":"deploy"}`, 403, "slack:UINTERN is not an approver for recoverbot"},
		{"bad duration", "/v1/freeze", tok, `{"duration":"soon","reason":"deploy"}`, 400, `duration "soon" is not a Go duration`},
		{"no reason", "/v1/freeze", tok, `{"duration":"1h"}`, 400, "a freeze needs a reason"},
		{"too long", "/v1/freeze", tok, `{"duration":"200h","reason":"x"}`, 400, "at most 168h0m0s"},
		{"unknown runbook", "/v1/freeze", tok, `{"duration":"1h","reason":"x","runbook":"nope"}`, 404, `no runbook named \"nope\"`},
		{"unfreeze nothing", "/v1/unfreeze", tok, `{}`, 400, `give either \"id\"`},
		{"unfreeze both", "/v1/unfreeze", tok, `{"id":"fz_1","all":true}`, 400, `give either \"id\"`},
		{"unfreeze unknown", "/v1/unfreeze", tok, `{"id":"fz_nope"}`, 404, "no active freeze fz_nope"},
		{"unfreeze not an approver", "/v1/unfreeze", intern, `{"all":true}`, 403, "not an approver"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := h.do("POST", c.path, c.token, []byte(c.body))
			if r.status != c.status || !strings.Contains(r.raw, c.msg) {
				t.Errorf("got %d %s, want %d containing %q", r.status, r.raw, c.status, c.msg)
			}
		})
	}
	if fs := h.eng.Freezes(); len(fs) != 0 {
		t.Fatalf("a refused request froze: %+v", fs)
	}
	if recs, err := h.db.AuditPage(context.Background(), time.Time{}, 0, 100); err != nil || !strings.Contains(auditReasons(recs), "admin API freeze refused (admin token intern)") {
		t.Errorf("the refusal is not audited: %v %s", err, auditReasons(recs))
	}

	r := h.do("POST", "/v1/freeze", tok, []byte(`{"duration":"90m","reason":"deploying users","runbook":"clear-cache-on-stale-data"}`))
	if r.status != 201 {
		t.Fatalf("freeze: %d %s", r.status, r.raw)
	}
	f := r.body["freeze"].(map[string]any)
	id := f["id"].(string)
	if f["by"] != "slack:"+testApprover || f["end"] != "2026-11-27T04:30:00Z" {
		t.Errorf("freeze %v", f)
	}
	ans := h.do("POST", "/v1/events", "", event(t, "ERROR_RATE_SPIKE"))
	if ans.body["decision"] != "approval" || !strings.Contains(ans.raw, "frozen by "+id) {
		t.Fatalf("event during the freeze: %s", ans.raw)
	}
	for _, path := range []string{"/v1/freezes", "/v1/status"} {
		if got := h.do("GET", path, tok, nil); got.status != 200 || !strings.Contains(got.raw, `"id":"`+id+`"`) {
			t.Errorf("%s: %d %s", path, got.status, got.raw)
		}
	}
	if got := h.do("POST", "/v1/unfreeze", tok, []byte(`{"id":"`+id+`"}`)); got.status != 200 || !strings.Contains(got.raw, `"lifted_by":"slack:`+testApprover+`"`) {
		t.Fatalf("unfreeze: %d %s", got.status, got.raw)
	}
	if got := h.do("GET", "/v1/freezes", tok, nil); got.status != 200 || !strings.Contains(got.raw, `"freezes":[]`) {
		t.Errorf("after unfreeze: %d %s", got.status, got.raw)
	}
	if got := h.do("POST", "/v1/unfreeze", tok, []byte(`{"all":true}`)); got.status != 404 || !strings.Contains(got.raw, "no ad-hoc freeze is active") {
		t.Errorf("unfreeze all with none: %d %s", got.status, got.raw)
	}
}

func auditReasons(recs []recovery.AuditRecord) string {
	var b strings.Builder
	for _, r := range recs {
		b.WriteString(r.Actor + ": " + r.Reason + "\n")
	}
	return b.String()
}
