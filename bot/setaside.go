package bot

import (
	"context"
	"net/http"

	"github.com/recoverbot/recoverbot/recovery"
	"github.com/recoverbot/recoverbot/store"
)

// setAside is what the store keeps of records it could not use (*store.DB):
// records that cannot be decoded, notifications given up on.
type setAside interface {
	Quarantine(ctx context.Context) ([]store.Quarantined, error)
	DeadLetters(ctx context.Context) ([]store.DeadLetter, error)
}

// getQuarantine serves GET /v1/quarantine: the records set aside because they
// cannot be decoded, without their bytes.
func (a *API) getQuarantine(w http.ResponseWriter, r *http.Request) {
	s, ok := unwrapStore(a.Engine.Store()).(setAside)
	if !ok {
		a.writeError(w, r, recovery.Errorf(recovery.CodeNotFound, "this store keeps no quarantine"))
		return
	}
	qs, err := s.Quarantine(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"quarantined": nonNil(qs)})
}

// getDeadLetters serves GET /v1/deadletters: the notifications given up on.
func (a *API) getDeadLetters(w http.ResponseWriter, r *http.Request) {
	s, ok := unwrapStore(a.Engine.Store()).(setAside)
	if !ok {
		a.writeError(w, r, recovery.Errorf(recovery.CodeNotFound, "this store keeps no dead letters"))
		return
	}
	ds, err := s.DeadLetters(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": nonNil(ds)})
}

// unwrapStore is the store under the leader's fencing wrapper (fencedStore),
// whose own methods the wrapper does not carry.
func unwrapStore(s recovery.Store) recovery.Store {
	if f, ok := s.(*fencedStore); ok {
		return f.Store
	}
	return s
}

func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}
