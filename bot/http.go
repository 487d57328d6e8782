package bot

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/runbooks"
)

// maxBody bounds every request body: an event is small; anything larger is a
// mistake or an attack.
const maxBody = 1 << 20

// API serves the intake, the Alertmanager webhook, the admin API and health.
type API struct {
	Engine      *recovery.Engine
	IntakeToken string
	AdminToken  string
	// AlertmanagerConfidence is the confidence of an alert without a
	// confidence annotation.
	AlertmanagerConfidence float64
	Log                    *slog.Logger
	// Metrics, when set, is served at /metrics (no auth: loopback or a scraper).
	Metrics *Metrics

	ready atomic.Bool
}

// SetReady flips /readyz.
func (a *API) SetReady(v bool) { a.ready.Store(v) }

// Handler returns the routes.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", a.intake(a.postEvent))
	mux.HandleFunc("POST /v1/alertmanager", a.intake(a.postAlertmanager))
	mux.HandleFunc("GET /v1/executions", a.admin(a.listExecutions))
	mux.HandleFunc("GET /v1/executions/{id}", a.admin(a.getExecution))
	mux.HandleFunc("GET /v1/events/{id}", a.admin(a.getEvent))
	mux.HandleFunc("GET /v1/audit", a.admin(a.getAudit))
	mux.HandleFunc("GET /v1/quarantine", a.admin(a.getQuarantine))
	mux.HandleFunc("GET /v1/deadletters", a.admin(a.getDeadLetters))
	mux.HandleFunc("POST /v1/executions/{id}/{verb}", a.admin(a.act))
	mux.HandleFunc("POST /v1/pause", a.admin(a.pause(true)))
	mux.HandleFunc("POST /v1/resume", a.admin(a.pause(false)))
	mux.HandleFunc("GET /v1/status", a.admin(a.status))
	mux.HandleFunc("GET /v1/stats", a.admin(a.stats))
	mux.HandleFunc("POST /v1/ask", a.admin(a.ask))
	if a.Metrics != nil {
		mux.Handle("GET /metrics", a.Metrics.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !a.ready.Load() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	return mux
}

// httpError is what a client sees: a status, a code and a sentence.
type httpError struct {
	Status int    `json:"-"`
	Code   string `json:"error"`
	Msg    string `json:"message"`
}

// writeError is the one place an error becomes an HTTP answer; the wrapped
// chain goes to the log, the sentence to the client.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		he = &httpError{Code: string(recovery.ErrorCode(err)), Msg: recovery.ErrorMessage(err)}
		switch recovery.ErrorCode(err) {
		case recovery.CodeInvalid:
			he.Status = http.StatusBadRequest
		case recovery.CodeUnknownType:
			he.Status = http.StatusUnprocessableEntity
		case recovery.CodeNotFound:
			he.Status = http.StatusNotFound
		case recovery.CodeConflict:
			he.Status = http.StatusConflict
		case recovery.CodeForbidden:
			he.Status = http.StatusForbidden
		case recovery.CodeUnavailable:
			he.Status = http.StatusServiceUnavailable
		default:
			he.Status, he.Code = http.StatusInternalServerError, "internal"
		}
	}
	if he.Status >= 500 {
		a.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		a.Log.Info("request refused", "method", r.Method, "path", r.URL.Path, "status", he.Status, "err", err)
	}
	writeJSON(w, he.Status, he)
}

func (e *httpError) Error() string { return e.Msg }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *API) intake(h http.HandlerFunc) http.HandlerFunc { return a.auth(a.IntakeToken, "intake", h) }
func (a *API) admin(h http.HandlerFunc) http.HandlerFunc  { return a.auth(a.AdminToken, "admin", h) }

// auth checks the bearer token when one is configured. Without one the server
// only listens on loopback (Config.Validate refuses otherwise), and the admin API
// additionally refuses non-loopback peers.
func (a *API) auth(token, what string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if token == "" {
			if what == "admin" && !loopbackPeer(r) {
				a.writeError(w, r, &httpError{http.StatusUnauthorized, "unauthorized", "the admin API without RECOVERBOT_ADMIN_TOKEN answers loopback clients only"})
				return
			}
		} else {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="recoverbot"`)
				msg := "missing bearer token"
				if ok {
					msg = "wrong bearer token"
				}
				a.writeError(w, r, &httpError{http.StatusUnauthorized, "unauthorized", msg + " for the " + what + " API"})
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h(w, r)
	}
}

func loopbackPeer(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	return err == nil && isLoopback(host)
}

// decodeBody reads JSON into v and turns every failure into a specific 400/413.
func decodeBody(r *http.Request, v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &httpError{http.StatusBadRequest, "malformed_json", jsonProblem(err)}
	}
	return nil
}

// readBody reads a whole body (bounded by auth's MaxBytesReader): 413 when too
// large, 400 when empty.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &httpError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body is larger than %d bytes", mbe.Limit)}
		}
		return nil, &httpError{http.StatusBadRequest, "bad_body", "could not read the body: " + err.Error()}
	}
	if len(b) == 0 {
		return nil, &httpError{http.StatusBadRequest, "malformed_json", "the body is empty: expected a JSON object"}
	}
	return b, nil
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "the body"
		}
		return fmt.Sprintf("malformed JSON: %s must be %s, not %s", field, te.Type, te.Value)
	}
	return "malformed JSON: " + err.Error()
}

// eventJSON is the intake's wire format (the reference playbook's event).
// Unknown fields are ignored: senders add their own (timestamp, source …).
type eventJSON struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	Severity   string         `json:"severity"`
	Summary    string         `json:"summary"`
	Confidence *float64       `json:"confidence"`
	Data       map[string]any `json:"data"`
	Context    map[string]any `json:"context"`
}

func (ej *eventJSON) event(source string) (recovery.Event, error) {
	if ej.Confidence == nil {
		return recovery.Event{}, recovery.Errorf(recovery.CodeInvalid, "confidence is required (a number between 0 and 1)")
	}
	return recovery.Event{ID: ej.ID, Type: runbooks.EventType(ej.Type), Severity: runbooks.Severity(ej.Severity),
		Summary: ej.Summary, Confidence: *ej.Confidence, Data: ej.Data, Context: ej.Context, Source: source}, nil
}

func (a *API) postEvent(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	var ej eventJSON
	if err := decodeEvent(b, &ej); err != nil {
		a.writeError(w, r, &httpError{http.StatusBadRequest, "malformed_json", jsonProblem(err)})
		return
	}
	ev, err := ej.event("api")
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	ans, err := a.Engine.Submit(r.Context(), ev)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	status := http.StatusAccepted
	if ans.Decision == recovery.DecideNoRunbook {
		status = http.StatusOK
	}
	writeJSON(w, status, ans)
}

func (a *API) listExecutions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := recovery.ExecutionFilter{State: recovery.State(q.Get("state")), Runbook: q.Get("runbook"), Limit: 50}
	if f.State != "" && !f.State.Valid() {
		a.writeError(w, r, recovery.Errorf(recovery.CodeInvalid, "unknown state %q", f.State))
		return
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			a.writeError(w, r, recovery.Errorf(recovery.CodeInvalid, "limit must be 1..1000, not %q", s))
			return
		}
		f.Limit = n
	}
	xs, err := a.Engine.Store().Executions(r.Context(), f)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	out := make([]executionSummary, len(xs))
	for i := range xs {
		out[i] = summarize(&xs[i])
	}
	writeJSON(w, http.StatusOK, map[string]any{"executions": out})
}

type executionSummary struct {
	ID        string            `json:"id"`
	Runbook   string            `json:"runbook"`
	State     recovery.State    `json:"state"`
	Decision  recovery.Decision `json:"decision"`
	Reasons   []string          `json:"reasons"`
	EventID   string            `json:"event_id"`
	CreatedAt string            `json:"created_at"`
	UpdatedAt string            `json:"updated_at"`
}

func summarize(x *recovery.Execution) executionSummary {
	return executionSummary{ID: x.ID, Runbook: x.Runbook, State: x.State, Decision: x.Decision,
		Reasons: x.Reasons, EventID: x.EventID,
		CreatedAt: x.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		UpdatedAt: x.UpdatedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00")}
}

func (a *API) getExecution(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	x, err := a.Engine.Store().Execution(r.Context(), id)
	if err != nil {
		a.writeError(w, r, notFound(err, "execution "+id))
		return
	}
	audit, err := a.Engine.Store().Audit(r.Context(), id)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"execution": x, "audit": audit})
}

func (a *API) getEvent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rec, err := a.Engine.Store().EventRecord(r.Context(), id)
	if err != nil {
		a.writeError(w, r, notFound(err, "event "+id))
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func notFound(err error, what string) error {
	if errors.Is(err, recovery.ErrNotFound) {
		return &recovery.Error{Code: recovery.CodeNotFound, Msg: what + " not found", Err: err}
	}
	return err
}

// actor names who acted through the admin API: the X-Recoverbot-Actor header
// (the CLI sends the OS user), validated, prefixed so the audit shows the path.
func actor(r *http.Request) (string, error) {
	name := r.Header.Get("X-Recoverbot-Actor")
	if name == "" {
		return "admin-api", nil
	}
	if len(name) > 64 {
		return "", recovery.Errorf(recovery.CodeInvalid, "X-Recoverbot-Actor is longer than 64 characters")
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@') {
			return "", recovery.Errorf(recovery.CodeInvalid, "X-Recoverbot-Actor may hold letters, digits and . _ - @ only")
		}
	}
	return "cli:" + name, nil
}

func (a *API) act(w http.ResponseWriter, r *http.Request) {
	id, verb := r.PathValue("id"), r.PathValue("verb")
	who, err := actor(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	var x recovery.Execution
	switch verb {
	case "approve":
		x, err = a.Engine.Approve(r.Context(), id, who)
	case "reject":
		x, err = a.Engine.Reject(r.Context(), id, who)
	case "rollback":
		x, err = a.Engine.Rollback(r.Context(), id, who)
	case "false":
		x, err = a.Engine.MarkFalse(r.Context(), id, who)
	default:
		a.writeError(w, r, &httpError{http.StatusNotFound, "not_found", "unknown action " + strconv.Quote(verb) + ": use approve, reject, rollback or false"})
		return
	}
	if err != nil {
		a.writeError(w, r, notFound(err, "execution "+id))
		return
	}
	writeJSON(w, http.StatusOK, summarize(&x))
}

func (a *API) pause(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, err := actor(r)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		if on {
			err = a.Engine.Pause(r.Context(), who)
		} else {
			err = a.Engine.Resume(r.Context(), who)
		}
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"paused": on})
	}
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	cfg := a.Engine.Config()
	writeJSON(w, http.StatusOK, map[string]any{"paused": a.Engine.Paused(), "mode": cfg.Mode,
		"auto_threshold": cfg.AutoThreshold, "approval_timeout": cfg.ApprovalTimeout.String(),
		"runbooks": len(a.Engine.Runbooks().All()), "breaker": a.Engine.Breaker()})
}

func (a *API) getAudit(w http.ResponseWriter, r *http.Request) {
	since, err := parseSince(r.URL.Query().Get("since"), a.Engine.Config().Clock)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	// Streamed page by page: the range may be larger than memory.
	const pageSize = 500
	page, err := a.Engine.Store().AuditPage(r.Context(), since, 0, pageSize)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	for len(page) > 0 {
		for _, rec := range page {
			if enc.Encode(rec) != nil {
				return // the client left
			}
		}
		_ = rc.Flush()
		if page, err = a.Engine.Store().AuditPage(r.Context(), since, page[len(page)-1].Seq, pageSize); err != nil {
			// The status is sent: the export ends short, and says so in the log.
			a.Log.Warn("audit export cut short", "err", err)
			return
		}
	}
}

func (a *API) stats(w http.ResponseWriter, r *http.Request) {
	window := 24 * time.Hour
	if s := r.URL.Query().Get("window"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > 90*24*time.Hour {
			a.writeError(w, r, recovery.Errorf(recovery.CodeInvalid, "window %q must be a Go duration between 0 and 2160h (like 24h)", s))
			return
		}
		window = d
	}
	st, err := a.Engine.Stats(r.Context(), window)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"stats": st, "text": st.Text(window.String())})
}

// ask turns a free-text question into an AI plan awaiting approval.
func (a *API) ask(w http.ResponseWriter, r *http.Request) {
	who, err := actor(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	var body struct {
		Question string `json:"question"`
	}
	if err := decodeBody(r, &body); err != nil {
		a.writeError(w, r, err)
		return
	}
	ans, err := a.Engine.Ask(r.Context(), body.Question, who)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, ans)
}
