package kube

import (
	"context"
	"fmt"
	"maps"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/recoverbot/recoverbot/recovery"
)

// A real API server refuses a JSON patch whose "test" op fails with a bare 422
// Invalid, "the server rejected our request due to an error in our request"
// (the JSON patch library's own message is not passed on), which is also its
// answer to a patch that does not apply for any other reason. So when an
// undo's compare-and-set patch is refused, the target is read again: if it
// moved since the read the patch was built from, someone changed it between
// our read and our write, and that is reported like any other change (the
// object was left alone: that is the point of the test ops). Otherwise the
// refusal is returned as it is.

// undoRefused handles a refused undo patch of deployment st built from generation gen.
func (d *Driver) undoRefused(ctx context.Context, st before, gen int64, perr error, report recovery.Reporter) error {
	if !apierrors.IsInvalid(perr) {
		return perr
	}
	dep, err := d.getDeployment(ctx, st.Namespace, st.Name)
	if err != nil || (string(dep.UID) == st.UID && dep.Generation == gen) {
		return perr
	}
	err = changed("deployment", st, fmt.Sprintf("generation %d → %d between the undo's read and its write", gen, dep.Generation))
	report(err.Error())
	return err
}

// selectorUndoRefused handles a refused undo patch of service st, which tested
// that the selector was still the one we wrote.
func (d *Driver) selectorUndoRefused(ctx context.Context, st before, perr error, report recovery.Reporter) error {
	if !apierrors.IsInvalid(perr) {
		return perr
	}
	svc, err := d.getService(ctx, st.Namespace, st.Name)
	if err != nil || (string(svc.UID) == st.UID && maps.Equal(svc.Spec.Selector, st.Selector.Wrote)) {
		return perr
	}
	err = changed("service", st, fmt.Sprintf("selector %s, we set %s, between the undo's read and its write",
		formatSelector(svc.Spec.Selector), formatSelector(st.Selector.Wrote)))
	report(err.Error())
	return err
}
