package bot

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

// amPayload is Alertmanager's webhook payload, version 4. Unknown fields are
// ignored: Alertmanager adds fields without changing the version.
type amPayload struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	Alerts            []amAlert         `json:"alerts"`
}

type amAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Fingerprint string            `json:"fingerprint"`
}

// amResult is the per-alert outcome in the webhook's answer.
type amResult struct {
	Fingerprint string `json:"fingerprint"`
	Status      string `json:"status"`
	recovery.Answer
	Error string `json:"error,omitempty"`
}

// The mapping from an alert to an event (README "Alertmanager"):
//   - type: label event_type (required);
//   - severity: label severity, any case (critical, warning, info);
//   - confidence: annotation confidence, else the configured default;
//   - summary: annotation summary, else description;
//   - context: every other label; data: every other annotation (numbers parsed);
//   - labels: every label as sent, for the silence while it is remediated
//     (recovery/silence.go; recovery/amsilence validates them for a matcher);
//   - id: am_<fingerprint>_<startsAt unix>_<status>, so a re-delivered alert is a
//     no-op; the fingerprint is the dedup key of the alert's plan.
func (a *API) alertEvent(al *amAlert) (recovery.Event, error) {
	if !validFingerprint(al.Fingerprint) {
		return recovery.Event{}, recovery.Errorf(recovery.CodeInvalid, "alert fingerprint %q is not 1-32 hex digits", al.Fingerprint)
	}
	ev := recovery.Event{
		ID:          fmt.Sprintf("am_%s_%d_%s", al.Fingerprint, al.StartsAt.Unix(), al.Status),
		Type:        runbooks.EventType(al.Labels["event_type"]),
		Severity:    runbooks.Severity(strings.ToUpper(al.Labels["severity"])),
		Summary:     al.Annotations["summary"],
		Confidence:  a.AlertmanagerConfidence,
		Source:      recovery.SourceAlertmanager,
		Fingerprint: al.Fingerprint,
		Context:     map[string]any{},
		Data:        map[string]any{},
		Labels:      maps.Clone(al.Labels),
	}
	if ev.Summary == "" {
		ev.Summary = al.Annotations["description"]
	}
	// Annotations are human text (a description may be a whole stack trace):
	// never a reason to lose an alert, which Alertmanager does not resend
	// after a 4xx. The engine cuts a long summary, marked; labels are
	// identities and are held to the bounds as they are (recovery.BoundEvent,
	// which Submit and Resolve both call).
	if s, ok := al.Annotations["confidence"]; ok {
		c, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return ev, recovery.Errorf(recovery.CodeInvalid, "alert %s: annotation confidence %q is not a number", al.Fingerprint, s)
		}
		ev.Confidence = c
	}
	for k, v := range al.Labels {
		if k != "event_type" && k != "severity" {
			ev.Context[k] = v
		}
	}
	for k, v := range al.Annotations {
		switch k {
		case "summary", "description", "confidence":
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			ev.Data[k] = f
		} else {
			ev.Data[k] = recovery.CutText(v, recovery.MaxDataString)
		}
	}
	return ev, nil
}

func validFingerprint(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// postAlertmanager answers 5xx only when a retry can help (Alertmanager retries
// only those), 4xx when the payload will never work, 200 otherwise with one
// result per alert (an alert with a bad label is reported, the others proceed).
func (a *API) postAlertmanager(w http.ResponseWriter, r *http.Request) {
	var p amPayload
	if err := decodeBody(r, &p); err != nil {
		a.writeError(w, r, err)
		return
	}
	if p.Version != "4" {
		a.writeError(w, r, recovery.Errorf(recovery.CodeInvalid, "Alertmanager payload version %q is not supported: expected \"4\"", p.Version))
		return
	}
	if len(p.Alerts) == 0 {
		a.writeError(w, r, recovery.Errorf(recovery.CodeInvalid, "the payload holds no alerts"))
		return
	}
	results := make([]amResult, len(p.Alerts))
	var retry error
	invalid := 0
	for i := range p.Alerts {
		al := &p.Alerts[i]
		res := &results[i]
		res.Fingerprint, res.Status = al.Fingerprint, al.Status
		ev, err := a.alertEvent(al)
		if err == nil {
			switch al.Status {
			case "firing":
				res.Answer, err = a.Engine.Submit(r.Context(), ev)
			case "resolved":
				res.Answer, err = a.Engine.Resolve(r.Context(), ev)
			default:
				err = recovery.Errorf(recovery.CodeInvalid, "alert status %q is not firing or resolved", al.Status)
			}
		}
		if err != nil {
			res.Error = recovery.ErrorMessage(err)
			if recovery.ErrorCode(err) == recovery.CodeUnavailable || recovery.ErrorCode(err) == "" {
				retry = errors.Join(retry, err)
			} else {
				invalid++
			}
		}
	}
	switch {
	case retry != nil:
		// Everything accepted so far is kept; the retry replays those as no-ops.
		a.writeError(w, r, &recovery.Error{Code: recovery.CodeUnavailable, Msg: "some alerts could not be persisted; retry", Err: retry})
	case invalid == len(p.Alerts):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": "invalid", "message": "no alert in the payload could be used", "results": results})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"results": results})
	}
}
