package kube

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/recoverbot/recoverbot/recovery"
)

func (d *Driver) getService(ctx context.Context, ns, name string) (*corev1.Service, error) {
	cctx, cancel := d.call(ctx, "get service "+ns+"/"+name)
	defer cancel()
	svc, err := d.client.CoreV1().Services(ns).Get(cctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get service %s/%s: %w", ns, name, err)
	}
	return svc, nil
}

// patchSelector sends a JSON patch that tests the whole selector is still want
// and then writes one key (key != "") or the whole selector (key == "").
// Services have no generation that tracks spec changes, so the test on the
// selector is the compare-and-set.
func (d *Driver) patchSelector(ctx context.Context, ns, name string, want map[string]string, key string, value any) (*corev1.Service, error) {
	path := "/spec/selector"
	if key != "" {
		path = pointer("spec", "selector", key)
	}
	body := mustJSON([]jsonOp{
		{Op: "test", Path: "/spec/selector", Value: want},
		{Op: "replace", Path: path, Value: value},
	})
	cctx, cancel := d.call(ctx, "patch service "+ns+"/"+name)
	defer cancel()
	svc, err := d.client.CoreV1().Services(ns).Patch(cctx, name, types.JSONPatchType, body, metav1.PatchOptions{})
	if err != nil {
		return nil, fmt.Errorf("patch service %s/%s: %w", ns, name, err)
	}
	return svc, nil
}

// applySelector switches the service's selector key from o.FromValue to
// o.ToValue. It refuses a service whose selector does not hold o.FromValue: the
// runbook's idea of the primary is wrong, and guessing could route to nothing.
func (d *Driver) applySelector(ctx context.Context, o op, report recovery.Reporter) (*before, error) {
	svc, err := d.getService(ctx, o.Namespace, o.Name)
	if err != nil {
		return nil, err
	}
	sel := svc.Spec.Selector
	cur, has := sel[o.Key]
	if has && cur == o.ToValue {
		report(fmt.Sprintf("service %s already selects %s=%s: nothing changed", o.Ref(), o.Key, o.ToValue))
		return nil, nil
	}
	if !has || cur != o.FromValue {
		return nil, fmt.Errorf("service %s selector has %s %s, expected %q: not switched",
			o.Ref(), o.Key, describe(cur, has), o.FromValue)
	}
	svc, err = d.patchSelector(ctx, o.Namespace, o.Name, sel, o.Key, o.ToValue)
	if err != nil {
		return nil, err
	}
	report(fmt.Sprintf("service %s: selector %s=%s → %s=%s", o.Ref(), o.Key, o.FromValue, o.Key, o.ToValue))
	return &before{V: stateVersion, Kind: kindSelector, Namespace: o.Namespace, Name: o.Name, UID: string(svc.UID),
		Selector: &selectorState{Key: o.Key, Previous: maps.Clone(sel), Wrote: maps.Clone(svc.Spec.Selector)}}, nil
}

// undoSelector puts the whole previous selector back if the selector is still
// exactly the one we wrote.
func (d *Driver) undoSelector(ctx context.Context, st before, report recovery.Reporter) error {
	svc, err := d.getService(ctx, st.Namespace, st.Name)
	if err != nil {
		return err
	}
	ss := st.Selector
	cur := svc.Spec.Selector
	if string(svc.UID) != st.UID {
		err := changed("service", st, "it was deleted and created again")
		report(err.Error())
		return err
	}
	if maps.Equal(cur, ss.Previous) {
		report(fmt.Sprintf("service %s selector is already %s: nothing to undo", st.ref(), formatSelector(cur)))
		return nil
	}
	if !maps.Equal(cur, ss.Wrote) {
		err := changed("service", st, fmt.Sprintf("selector %s, we set %s", formatSelector(cur), formatSelector(ss.Wrote)))
		report(err.Error())
		return err
	}
	if _, err := d.patchSelector(ctx, st.Namespace, st.Name, ss.Wrote, "", ss.Previous); err != nil {
		return d.selectorUndoRefused(ctx, st, err, report)
	}
	report(fmt.Sprintf("service %s: selector restored to %s", st.ref(), formatSelector(ss.Previous)))
	return nil
}

func formatSelector(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}
