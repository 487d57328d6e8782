package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const token = "tok-3f9a7c"

// req is one request the fake gateway received.
type req struct {
	Method string
	Path   string // escaped, as sent
	Body   string
	Auth   string
}

func (r req) String() string {
	if r.Body == "" {
		return r.Method + " " + r.Path
	}
	return r.Method + " " + r.Path + " " + r.Body
}

// fake is an in-memory gateway that follows docs/gateway-api.md: GET answers
// the stored body and its ETag, or 404; PUT stores the body as sent, DELETE
// removes (204), each only under a precondition that holds (If-Match: the
// current ETag, or If-None-Match: * for a resource that does not exist):
// 412 when it does not, 428 when the request carries none. Every change,
// set's included, makes a new ETag. fail, when set, may answer a request
// instead (n counts requests from 1).
type fake struct {
	t     *testing.T
	srv   *httptest.Server
	mu    sync.Mutex
	state map[string]string // escaped path → body
	etags map[string]string // escaped path → the ETag of its body
	ver   int               // the last ETag's number
	reqs  []req
	fail  func(n int, r req, w http.ResponseWriter, hr *http.Request) bool
}

func newFake(t *testing.T, state map[string]string) *fake {
	f := &fake{t: t, state: map[string]string{}, etags: map[string]string{}}
	for k, v := range state {
		f.store(k, v)
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) serve(w http.ResponseWriter, hr *http.Request) {
	b, _ := io.ReadAll(hr.Body)
	r := req{Method: hr.Method, Path: hr.URL.EscapedPath(), Body: string(b), Auth: hr.Header.Get("Authorization")}
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	n, fail := len(f.reqs), f.fail
	f.mu.Unlock()
	if fail != nil && fail(n, r, w, hr) {
		return
	}
	if r.Auth != "Bearer "+token {
		http.Error(w, `{"error":"bad token"}`, http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		body, ok := f.state[r.Path]
		if !ok {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", f.etags[r.Path])
		io.WriteString(w, body)
	case http.MethodPut:
		if hr.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want application/json", http.StatusUnsupportedMediaType)
			return
		}
		if !f.precondition(w, hr, r.Path) {
			return
		}
		f.store(r.Path, r.Body)
		w.Header().Set("ETag", f.etags[r.Path])
		io.WriteString(w, r.Body)
	case http.MethodDelete:
		if !f.precondition(w, hr, r.Path) {
			return
		}
		f.store(r.Path, "")
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// precondition answers 428 or 412 unless the request's If-Match or
// If-None-Match: * holds for path; called with f.mu held.
func (f *fake) precondition(w http.ResponseWriter, hr *http.Request, path string) bool {
	match, noneMatch := hr.Header.Get("If-Match"), hr.Header.Get("If-None-Match")
	_, exists := f.state[path]
	switch {
	case match == "" && noneMatch == "":
		http.Error(w, `{"error":"a write needs If-Match or If-None-Match"}`, http.StatusPreconditionRequired)
	case match != "" && (!exists || match != f.etags[path]), noneMatch == "*" && exists:
		http.Error(w, `{"error":"precondition failed"}`, http.StatusPreconditionFailed)
	default:
		return true
	}
	return false
}

// store sets path's body ("" deletes) with a new ETag; called with f.mu held.
func (f *fake) store(path, body string) {
	if body == "" {
		delete(f.state, path)
		delete(f.etags, path)
		return
	}
	f.ver++
	f.state[path] = body
	f.etags[path] = fmt.Sprintf(`"v%d"`, f.ver)
}

// take returns the requests received since the last take.
func (f *fake) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.reqs {
		if r.Auth != "Bearer "+token {
			f.t.Errorf("%s: Authorization %q, want the bearer token", r, r.Auth)
		}
		out = append(out, r.String())
	}
	f.reqs = nil
	return out
}

func (f *fake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

// set changes the gateway behind the driver's back ("" deletes).
func (f *fake) set(path, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.store(path, body)
}

func (f *fake) snapshot() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for k, v := range f.state {
		out[k] = v
	}
	return out
}

// waits records the driver's waits between retries instead of sleeping.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return ctx.Err()
}

func (w *waits) all() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...)
}

// newDriver builds a driver for f that records its waits instead of sleeping.
func newDriver(t *testing.T, f *fake, opts ...Option) (*Driver, *waits) {
	t.Helper()
	d, err := New(f.srv.URL+"/", token, opts...)
	if err != nil {
		t.Fatal(err)
	}
	w := &waits{}
	d.sleep = w.sleep
	return d, w
}

// lines collects a driver's report.
type lines []string

func (l *lines) report(s string) { *l = append(*l, s) }

func (l lines) String() string { return fmt.Sprintf("%q", []string(l)) }

func (l lines) has(sub string) bool {
	for _, s := range l {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
