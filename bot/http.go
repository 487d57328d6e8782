package bot

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/recoverbot/recoverbot/commands"
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
	// AdminTokens are the admin API's credentials, each naming the person or
	// system it belongs to (RECOVERBOT_ADMIN_TOKENS). None: the admin API
	// answers loopback clients only, as the local operator.
	AdminTokens []AdminToken
	// Approvers decides who may approve, reject, roll back, mark false, pause
	// and resume through the admin API: the same policy as Slack
	// (commands.Approvers.Permit). nil: nobody may.
	Approvers *commands.Approvers
	// AllowedHosts are the Host names (besides loopback ones) requests may be
	// addressed to: a reverse proxy's name (RECOVERBOT_ALLOWED_HOSTS).
	AllowedHosts []string
	// AlertmanagerConfidence is the confidence of an alert without a
	// confidence annotation.
	AlertmanagerConfidence float64
	Log                    *slog.Logger
	// Metrics, when set, is served at /metrics (no auth: loopback or a scraper).
	Metrics *Metrics
	// Leading says whether this replica leads (nil: it always does). A
	// follower serves reads and answers writes with 503 (mayWrite).
	Leading func() bool
	// Leader names the replica that leads, for /readyz (nil: not shown).
	Leader func(ctx context.Context) (string, error)

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
	mux.HandleFunc("POST /v1/freeze", a.admin(a.freeze))
	mux.HandleFunc("POST /v1/unfreeze", a.admin(a.unfreeze))
	mux.HandleFunc("GET /v1/freezes", a.admin(a.listFreezes))
	mux.HandleFunc("GET /v1/status", a.admin(a.status))
	mux.HandleFunc("GET /v1/stats", a.admin(a.stats))
	mux.HandleFunc("POST /v1/ask", a.admin(a.ask))
	mux.HandleFunc("GET /v1/whoami", a.admin(a.whoami))
	if a.Metrics != nil {
		mux.Handle("GET /metrics", a.Metrics.Handler())
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		body := map[string]any{"status": "ready"}
		status := http.StatusOK
		if !a.ready.Load() {
			body["status"], status = "not ready", http.StatusServiceUnavailable
		}
		if a.Leader != nil {
			// Readiness is not leadership (a rollout would stall on the
			// followers); the body says who leads.
			body["leading"] = a.leading()
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			l, err := a.Leader(ctx)
			cancel()
			if err != nil {
				l = "unknown: " + recovery.CutText(err.Error(), 200)
			}
			body["leader"] = l
		}
		writeJSON(w, status, body)
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
		case recovery.CodeUnknownType, recovery.CodeTooLarge:
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
	switch {
	case he.Code == codeNotLeader:
		// Expected on every follower (clients retry, until they reach the
		// leader): not an error, and at the intake's rate it would flood.
		a.Log.Debug("write refused: this replica follows", "method", r.Method, "path", r.URL.Path)
	case he.Status >= 500:
		a.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	default:
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

// intake and admin wrap a route: first the browser checks (fromBrowser), then
// the credential, then the body bound.
func (a *API) intake(h http.HandlerFunc) http.HandlerFunc {
	intake := []AdminToken{{Name: "intake", Token: a.IntakeToken}}
	return a.guard(func(w http.ResponseWriter, r *http.Request) {
		if a.IntakeToken != "" {
			if _, ok := a.bearer(w, r, "intake", intake); !ok {
				return
			}
		}
		h(w, r)
	})
}

// admin finds who is asking from the credential alone: the named admin token
// presented, or, on a bot without admin tokens (loopback only: Config.Validate
// refuses otherwise), the local operator, from loopback peers only.
func (a *API) admin(h http.HandlerFunc) http.HandlerFunc {
	return a.guard(func(w http.ResponseWriter, r *http.Request) {
		var p commands.Person
		if len(a.AdminTokens) == 0 {
			if !loopbackPeer(r) {
				a.writeError(w, r, &httpError{http.StatusUnauthorized, "unauthorized", "the admin API without RECOVERBOT_ADMIN_TOKENS answers loopback clients only"})
				return
			}
			p = commands.Person{Name: commands.LocalActor, Local: true}
		} else {
			t, ok := a.bearer(w, r, "admin", a.AdminTokens)
			if !ok {
				return
			}
			p = commands.Person{Name: t.Name, SlackID: t.SlackID}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), personKey{}, p)))
	})
}

type personKey struct{}

// personOf is who the admin wrapper found behind r.
func personOf(r *http.Request) commands.Person {
	p, _ := r.Context().Value(personKey{}).(commands.Person)
	return p
}

// bearer finds the token r presents among ts, comparing with each in
// constant time, or answers 401.
func (a *API) bearer(w http.ResponseWriter, r *http.Request, what string, ts []AdminToken) (AdminToken, bool) {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	found := -1
	for i := range ts {
		if subtle.ConstantTimeCompare([]byte(got), []byte(ts[i].Token)) == 1 && ok {
			found = i
		}
	}
	if found < 0 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="recoverbot"`)
		msg := "missing bearer token"
		if ok {
			msg = "wrong bearer token"
		}
		a.writeError(w, r, &httpError{http.StatusUnauthorized, "unauthorized", msg + " for the " + what + " API"})
		return AdminToken{}, false
	}
	return ts[found], true
}

// guard refuses what a web page could send (see fromBrowser), then bounds
// the body.
func (a *API) guard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := a.fromBrowser(r); err != nil {
			a.writeError(w, r, err)
			return
		}
		if err := a.mayWrite(r); err != nil {
			// Alertmanager and the CLI retry a 5xx; by then a leader answers.
			w.Header().Set("Retry-After", strconv.Itoa(followerRetryAfter))
			a.writeError(w, r, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h(w, r)
	}
}

// BrowserGuard wraps h in the same checks as the bot's own routes (guard,
// with loopback names only): for another loopback server of this
// repository that people use with a browser, the demo page (internal/demo),
// whose actions no other page may trigger. Refusals are logged to log.
func BrowserGuard(log *slog.Logger, h http.HandlerFunc) http.HandlerFunc {
	return (&API{Log: log}).guard(h)
}

// codeNotLeader is the error code of a follower's 503 to a write.
const codeNotLeader = "not_leader"

// followerRetryAfter is the Retry-After (seconds) of a follower's 503: about
// the time a takeover takes (the leader's lease, RECOVERBOT_LEADER_TTL).
const followerRetryAfter = 5

func (a *API) leading() bool { return a.Leading == nil || a.Leading() }

// mayWrite is the one rule for whether this replica may take a request that
// writes: every POST (intake, Alertmanager webhook, admin writes) needs the
// leader, whose engine runs; reads are served by every replica.
func (a *API) mayWrite(r *http.Request) error {
	if r.Method == http.MethodGet || a.leading() {
		return nil
	}
	who := "another replica"
	if a.Leader != nil {
		if l, err := a.Leader(r.Context()); err == nil && l != "" {
			who = l
		}
	}
	return &httpError{http.StatusServiceUnavailable, codeNotLeader, "this replica follows; " + who + " leads and takes writes: retry (the recoverbot Service that selects " + LeaderLabel + "=true reaches it)"}
}

// fromBrowser refuses a request a web page in someone's browser could have
// made, since without tokens (the loopback default) nothing else stands
// between a page and the bot:
//   - Host must be a loopback name or an allowed one: a DNS-rebinding page
//     (evil.example resolving to 127.0.0.1) reaches the port with its own name;
//   - an Origin header, which browsers add to cross-origin requests, must name
//     an allowed host too;
//   - a POST must say Content-Type: application/json, which a page can send
//     cross-origin only after a CORS preflight this server never grants (a
//     form or text/plain POST needs none). Bodyless POSTs too: a bare POST
//     used to approve.
//
// Health and /metrics are not wrapped: probes and scrapers address the pod by
// IP, and they carry nothing a page could use.
func (a *API) fromBrowser(r *http.Request) error {
	if !a.hostAllowed(hostOnly(r.Host)) {
		return &httpError{http.StatusForbidden, "host_not_allowed", fmt.Sprintf("Host %q is not a loopback name or one of RECOVERBOT_ALLOWED_HOSTS: refused (a page that rebinds its DNS name to this bot sends its own name)", cutHeader(r.Host))}
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !a.hostAllowed(u.Hostname()) {
			return &httpError{http.StatusForbidden, "origin_not_allowed", fmt.Sprintf("Origin %q is not a loopback name or one of RECOVERBOT_ALLOWED_HOSTS: requests from web pages are refused", cutHeader(o))}
		}
	}
	if ct := r.Header.Get("Content-Type"); r.Method == http.MethodPost && ct != "application/json" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &httpError{http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Sprintf("POST needs Content-Type: application/json, not %q (also without a body)", cutHeader(r.Header.Get("Content-Type")))}
		}
	}
	return nil
}

// hostAllowed is the one rule for which names the bot answers to: loopback
// names (localhost, 127.0.0.0/8, ::1) and AllowedHosts, case-insensitively.
func (a *API) hostAllowed(host string) bool {
	if host == "" {
		return false
	}
	if isLoopback(host) {
		return true
	}
	for _, h := range a.AllowedHosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// hostOnly strips the port and IPv6 brackets from a Host header.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

func cutHeader(s string) string { return recovery.CutText(s, 100) }

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
	// A long summary is cut, marked, by the engine (recovery.BoundEvent).
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
	ID       string            `json:"id"`
	Runbook  string            `json:"runbook"`
	State    recovery.State    `json:"state"`
	Decision recovery.Decision `json:"decision"`
	Reasons  []string          `json:"reasons"`
	// Targets are what each action touches as its driver names it
	// (namespace resolved: deployment/default/api-gateway), in action order.
	Targets   []string `json:"targets"`
	EventID   string   `json:"event_id"`
	CreatedAt string   `json:"created_at"`
	UpdatedAt string   `json:"updated_at"`
}

func summarize(x *recovery.Execution) executionSummary {
	return executionSummary{ID: x.ID, Runbook: x.Runbook, State: x.State, Decision: x.Decision,
		Reasons: x.Reasons, Targets: x.Targets, EventID: x.EventID,
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

// permit asks the approver policy (the same as Slack's) whether the person
// behind r may take verb on x (nil: pause, resume); a refusal is audited, as
// Slack audits its refusals.
func (a *API) permit(r *http.Request, verb string, x *recovery.Execution) error {
	p := personOf(r)
	pol := a.Approvers
	if pol == nil {
		pol = commands.NewApprovers(nil, nil, 0, nil) // nobody
	}
	var rb *runbooks.Runbook
	id := ""
	if x != nil {
		rb, id = a.Engine.Runbooks().Get(x.Runbook), x.ID
	}
	err := pol.Permit(r.Context(), p, verb, x, rb)
	if err != nil {
		a.refused(r, id, verb, err)
		return err
	}
	// The audit names the person (a Slack user for a token that has one);
	// which credential acted is in this line.
	a.Log.Info("admin API decision", "verb", verb, "plan", id, "actor", p.Actor(), "token", p.Name)
	return nil
}

// refused audits a decision refused to the person behind r (by the approver
// policy or by the engine: four-eyes, deadline, state), as Slack does.
func (a *API) refused(r *http.Request, id, verb string, err error) {
	p := personOf(r)
	actor, via := p.Actor(), "admin token "+p.Name
	if p.Local {
		via = "no admin token, loopback"
	}
	if aerr := a.Engine.RecordRefusal(r.Context(), id, actor, "admin API "+verb+" refused ("+via+"): "+recovery.ErrorMessage(err)); aerr != nil {
		a.Log.Error("audit refusal", "plan", id, "actor", actor, "err", aerr)
	}
}

// whoami says who the admin API takes the caller for.
func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	p := personOf(r)
	writeJSON(w, http.StatusOK, map[string]any{"actor": p.Actor(), "name": p.Name, "slack_user": p.SlackID, "local": p.Local})
}

func (a *API) act(w http.ResponseWriter, r *http.Request) {
	id, verb := r.PathValue("id"), r.PathValue("verb")
	who := personOf(r).Actor()
	switch verb {
	case "approve", "reject", "rollback", "false":
	default:
		a.writeError(w, r, &httpError{http.StatusNotFound, "not_found", "unknown action " + strconv.Quote(verb) + ": use approve, reject, rollback or false"})
		return
	}
	x, err := a.Engine.Store().Execution(r.Context(), id)
	if err != nil {
		a.writeError(w, r, notFound(err, "execution "+id))
		return
	}
	if err := a.permit(r, verb, &x); err != nil {
		a.writeError(w, r, err)
		return
	}
	switch verb {
	case "approve":
		x, err = a.Engine.Approve(r.Context(), id, who)
	case "reject":
		x, err = a.Engine.Reject(r.Context(), id, who)
	case "rollback":
		x, err = a.Engine.Rollback(r.Context(), id, who)
	case "false":
		x, err = a.Engine.MarkFalse(r.Context(), id, who)
	}
	if err != nil && recovery.ErrorCode(err) != "" {
		a.refused(r, id, verb, err)
	}
	if err != nil {
		a.writeError(w, r, notFound(err, "execution "+id))
		return
	}
	writeJSON(w, http.StatusOK, summarize(&x))
}

func (a *API) pause(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		verb := map[bool]string{true: "pause", false: "resume"}[on]
		if err := a.permit(r, verb, nil); err != nil {
			a.writeError(w, r, err)
			return
		}
		who := personOf(r).Actor()
		var err error
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

// freeze starts an ad-hoc freeze: {"duration": "1h", "reason": "…",
// "runbook": "…", "target": "…"} (scope optional). Approvers only, like pause.
func (a *API) freeze(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Duration string `json:"duration"`
		Reason   string `json:"reason"`
		Runbook  string `json:"runbook"`
		Target   string `json:"target"`
	}
	if err := decodeBody(r, &body); err != nil {
		a.writeError(w, r, err)
		return
	}
	d, err := time.ParseDuration(body.Duration)
	if err != nil {
		a.writeError(w, r, recovery.Errorf(recovery.CodeInvalid, "duration %q is not a Go duration (like 90m or 2h)", body.Duration))
		return
	}
	if err := a.permit(r, "freeze", nil); err != nil {
		a.writeError(w, r, err)
		return
	}
	f, err := a.Engine.Freeze(r.Context(), recovery.FreezeRequest{Duration: d, Reason: body.Reason,
		Runbook: body.Runbook, Target: body.Target, Actor: personOf(r).Actor()})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"freeze": f})
}

// unfreeze ends a freeze early: {"id": "fz_…"} or {"all": true}.
func (a *API) unfreeze(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ID  string `json:"id"`
		All bool   `json:"all"`
	}
	if err := decodeBody(r, &body); err != nil {
		a.writeError(w, r, err)
		return
	}
	if (body.ID == "") == !body.All {
		a.writeError(w, r, recovery.Errorf(recovery.CodeInvalid, `give either "id" (a freeze id) or "all": true`))
		return
	}
	if err := a.permit(r, "unfreeze", nil); err != nil {
		a.writeError(w, r, err)
		return
	}
	ended, err := a.Engine.Unfreeze(r.Context(), body.ID, body.All, personOf(r).Actor())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ended": ended})
}

// listFreezes lists the freezes holding now, ad-hoc ones and recurring windows.
func (a *API) listFreezes(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"freezes": freezesJSON(a.Engine.Freezes())})
}

// freezesJSON is never null: an empty list reads [].
func freezesJSON(fs []recovery.Freeze) []recovery.Freeze {
	if fs == nil {
		return []recovery.Freeze{}
	}
	return fs
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	cfg := a.Engine.Config()
	writeJSON(w, http.StatusOK, map[string]any{"paused": a.Engine.Paused(), "mode": cfg.Mode,
		"auto_threshold": cfg.AutoThreshold, "approval_timeout": cfg.ApprovalTimeout.String(),
		"runbooks": len(a.Engine.Runbooks().All()), "breaker": a.Engine.Breaker(),
		"freezes": freezesJSON(a.Engine.Freezes())})
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
	who := personOf(r).Actor()
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
