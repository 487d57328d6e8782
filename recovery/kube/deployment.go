package kube

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/recoverbot/recoverbot/recovery"
)

// attempts bounds the read-check-write loops that retry on a 409 Conflict.
const attempts = 3

func (d *Driver) getDeployment(ctx context.Context, ns, name string) (*appsv1.Deployment, error) {
	cctx, cancel := d.call(ctx, "get deployment "+ns+"/"+name)
	defer cancel()
	dep, err := d.client.AppsV1().Deployments(ns).Get(cctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get deployment %s/%s: %w", ns, name, err)
	}
	return dep, nil
}

func (d *Driver) patchDeployment(ctx context.Context, ns, name string, pt types.PatchType, body []byte) (*appsv1.Deployment, error) {
	cctx, cancel := d.call(ctx, "patch deployment "+ns+"/"+name)
	defer cancel()
	dep, err := d.client.AppsV1().Deployments(ns).Patch(cctx, name, pt, body, metav1.PatchOptions{})
	if err != nil {
		return nil, fmt.Errorf("patch deployment %s/%s: %w", ns, name, err)
	}
	return dep, nil
}

func (d *Driver) getScale(ctx context.Context, ns, name string) (*autoscalingv1.Scale, error) {
	cctx, cancel := d.call(ctx, "get scale of deployment "+ns+"/"+name)
	defer cancel()
	sc, err := d.client.AppsV1().Deployments(ns).GetScale(cctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get scale of deployment %s/%s: %w", ns, name, err)
	}
	return sc, nil
}

func (d *Driver) updateScale(ctx context.Context, ns, name string, sc *autoscalingv1.Scale) error {
	cctx, cancel := d.call(ctx, "update scale of deployment "+ns+"/"+name)
	defer cancel()
	_, err := d.client.AppsV1().Deployments(ns).UpdateScale(cctx, name, sc, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update scale of deployment %s/%s: %w", ns, name, err)
	}
	return nil
}

func specReplicas(dep *appsv1.Deployment) int32 {
	if dep.Spec.Replicas == nil {
		return 1 // the API server's default
	}
	return *dep.Spec.Replicas
}

// checkDeployment is the conflict check every deployment undo starts with: the
// same object (UID), and no spec change since this action's last write other
// than by our own later writes (generation).
func (d *Driver) checkDeployment(dep *appsv1.Deployment, st before) error {
	if string(dep.UID) != st.UID {
		return changed("deployment", st, "it was deleted and created again")
	}
	if dep.Generation < st.Generation || !d.ownedSince(st.UID, st.Generation, dep.Generation) {
		return changed("deployment", st, fmt.Sprintf("generation %d → %d", st.Generation, dep.Generation))
	}
	return nil
}

// ---- RESTART_POD ----

// applyRestart does what `kubectl rollout restart` does: a strategic merge patch
// of the pod template's restartedAt annotation. Then it waits for the rollout;
// a rollout that does not finish in time fails the action (with the state, so
// the engine's rollback restores the previous annotation: see undoRestart).
func (d *Driver) applyRestart(ctx context.Context, o op, report recovery.Reporter) (*before, error) {
	dep, err := d.getDeployment(ctx, o.Namespace, o.Name)
	if err != nil {
		return nil, err
	}
	rs := &restartState{Wrote: d.now().UTC().Format(time.RFC3339)}
	if v, ok := dep.Spec.Template.Annotations[RestartedAtAnnotation]; ok {
		rs.Previous = &v
	}
	body := mustJSON(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{RestartedAtAnnotation: rs.Wrote}}}}})
	dep, err = d.patchDeployment(ctx, o.Namespace, o.Name, types.StrategicMergePatchType, body)
	if err != nil {
		return nil, err
	}
	d.wrote(string(dep.UID), dep.Generation)
	st := &before{V: stateVersion, Kind: kindRestart, Namespace: o.Namespace, Name: o.Name,
		UID: string(dep.UID), Generation: dep.Generation, Restart: rs}
	report(fmt.Sprintf("deployment %s: rollout restart started (%s=%s)", o.Ref(), RestartedAtAnnotation, rs.Wrote))
	return st, d.waitRollout(ctx, o, dep.Generation, report)
}

// waitRollout polls the deployment until the rollout of generation gen has
// finished (the same test as `kubectl rollout status`), failed, or o.Timeout passed.
func (d *Driver) waitRollout(ctx context.Context, o op, gen int64, report recovery.Reporter) error {
	deadline := d.now().Add(o.Timeout)
	for {
		dep, err := d.getDeployment(ctx, o.Namespace, o.Name)
		if err != nil {
			return fmt.Errorf("waiting for rollout: %w", err)
		}
		want := specReplicas(dep)
		s := dep.Status
		counts := fmt.Sprintf("%d/%d updated, %d available", s.UpdatedReplicas, want, s.AvailableReplicas)
		if s.ObservedGeneration >= gen && s.UpdatedReplicas == want &&
			s.Replicas == s.UpdatedReplicas && s.AvailableReplicas == s.UpdatedReplicas {
			report(fmt.Sprintf("deployment %s: rollout finished: %s", o.Ref(), counts))
			return nil
		}
		if s.ObservedGeneration >= gen {
			for _, c := range s.Conditions {
				if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
					msg := fmt.Sprintf("rollout failed: progress deadline exceeded: %s", counts)
					report(msg)
					return fmt.Errorf("deployment %s: %s", o.Ref(), msg)
				}
			}
		}
		now := d.now()
		if !now.Before(deadline) {
			msg := fmt.Sprintf("rollout not finished after %s: %s", formatSeconds(o.Timeout), counts)
			report(msg)
			return fmt.Errorf("deployment %s: %s", o.Ref(), msg)
		}
		if err := d.wait(ctx, min(d.poll, deadline.Sub(now))); err != nil {
			return fmt.Errorf("waiting for rollout of deployment %s: %w", o.Ref(), err)
		}
	}
}

// formatSeconds writes a timeout as "300s" (time.Duration would say "5m0s").
func formatSeconds(t time.Duration) string {
	return strconv.FormatFloat(t.Seconds(), 'f', -1, 64) + "s"
}

// undoRestart puts the restartedAt annotation back to its previous value, or
// removes it. This does not undo the restart (pods already replaced stay
// replaced): it makes the pod template identical to the one before, so the
// deployment controller rolls back to the previous ReplicaSet, which is another
// rollout. It is what a failed restart's rollback should do; after a successful
// restart it only costs a second restart.
func (d *Driver) undoRestart(ctx context.Context, st before, report recovery.Reporter) error {
	dep, err := d.getDeployment(ctx, st.Namespace, st.Name)
	if err != nil {
		return err
	}
	rs := st.Restart
	cur, has := dep.Spec.Template.Annotations[RestartedAtAnnotation]
	if string(dep.UID) == st.UID && ((rs.Previous == nil && !has) || (rs.Previous != nil && has && cur == *rs.Previous)) {
		report(fmt.Sprintf("deployment %s: %s is already back to its previous state: nothing to undo", st.ref(), RestartedAtAnnotation))
		return nil
	}
	if err := d.checkDeployment(dep, st); err != nil {
		report(err.Error())
		return err
	}
	if !has || cur != rs.Wrote {
		err := changed("deployment", st, fmt.Sprintf("%s is %s, we set %q", RestartedAtAnnotation, describe(cur, has), rs.Wrote))
		report(err.Error())
		return err
	}
	path := pointer("spec", "template", "metadata", "annotations", RestartedAtAnnotation)
	ops := []jsonOp{
		{Op: "test", Path: "/metadata/generation", Value: dep.Generation},
		{Op: "test", Path: path, Value: rs.Wrote},
	}
	if rs.Previous == nil {
		ops = append(ops, jsonOp{Op: "remove", Path: path})
	} else {
		ops = append(ops, jsonOp{Op: "replace", Path: path, Value: *rs.Previous})
	}
	gen := dep.Generation
	dep, err = d.patchDeployment(ctx, st.Namespace, st.Name, types.JSONPatchType, mustJSON(ops))
	if err != nil {
		return d.undoRefused(ctx, st, gen, err, report)
	}
	d.wrote(st.UID, dep.Generation)
	if rs.Previous == nil {
		report(fmt.Sprintf("deployment %s: %s removed again; this starts a rollout back to the previous pod template", st.ref(), RestartedAtAnnotation))
	} else {
		report(fmt.Sprintf("deployment %s: %s restored to %s; this starts a rollout back to the previous pod template", st.ref(), RestartedAtAnnotation, *rs.Previous))
	}
	return nil
}

func describe(v string, ok bool) string {
	if !ok {
		return "unset"
	}
	return strconv.Quote(v)
}

// ---- SCALE_RESOURCE replicas ----

// applyReplicas reads the deployment (generation, UID) and its scale, and
// updates the scale with the resourceVersion it read: the scale's
// resourceVersion is the deployment's, so the update succeeds only if nothing
// wrote the deployment since our GET, and the API server then bumps the
// generation by exactly one (a spec change). A 409 Conflict, usually a status
// update by the controller, restarts the loop.
func (d *Driver) applyReplicas(ctx context.Context, o op, report recovery.Reporter) (*before, error) {
	for attempt := 1; ; attempt++ {
		dep, err := d.getDeployment(ctx, o.Namespace, o.Name)
		if err != nil {
			return nil, err
		}
		sc, err := d.getScale(ctx, o.Namespace, o.Name)
		if err != nil {
			return nil, err
		}
		if sc.ResourceVersion != dep.ResourceVersion {
			if attempt < attempts {
				continue
			}
			return nil, fmt.Errorf("deployment %s kept changing while being read", o.Ref())
		}
		prev := sc.Spec.Replicas
		if prev == o.Replicas {
			report(fmt.Sprintf("deployment %s already has %d replicas: nothing changed", o.Ref(), prev))
			return nil, nil
		}
		upd := sc.DeepCopy()
		upd.Spec.Replicas = o.Replicas
		if err := d.updateScale(ctx, o.Namespace, o.Name, upd); err != nil {
			if apierrors.IsConflict(err) && attempt < attempts {
				continue
			}
			return nil, err
		}
		d.wrote(string(dep.UID), dep.Generation+1)
		report(fmt.Sprintf("deployment %s: replicas %d → %d", o.Ref(), prev, o.Replicas))
		return &before{V: stateVersion, Kind: kindReplicas, Namespace: o.Namespace, Name: o.Name,
			UID: string(dep.UID), Generation: dep.Generation + 1,
			Replicas: &replicasState{Previous: prev, Wrote: o.Replicas}}, nil
	}
}

// undoReplicas is applyReplicas backwards, with the conflict checks first.
func (d *Driver) undoReplicas(ctx context.Context, st before, report recovery.Reporter) error {
	rs := st.Replicas
	for attempt := 1; ; attempt++ {
		dep, err := d.getDeployment(ctx, st.Namespace, st.Name)
		if err != nil {
			return err
		}
		cur := specReplicas(dep)
		if string(dep.UID) == st.UID && cur == rs.Previous {
			report(fmt.Sprintf("deployment %s already has %d replicas again: nothing to undo", st.ref(), cur))
			return nil
		}
		if err := d.checkDeployment(dep, st); err != nil {
			report(err.Error())
			return err
		}
		if cur != rs.Wrote {
			err := changed("deployment", st, fmt.Sprintf("replicas %d, we set %d", cur, rs.Wrote))
			report(err.Error())
			return err
		}
		sc, err := d.getScale(ctx, st.Namespace, st.Name)
		if err != nil {
			return err
		}
		if sc.ResourceVersion != dep.ResourceVersion || sc.Spec.Replicas != rs.Wrote {
			if attempt < attempts {
				continue // written between our two reads: check again
			}
			return fmt.Errorf("deployment %s kept changing while being read: not rolled back", st.ref())
		}
		upd := sc.DeepCopy()
		upd.Spec.Replicas = rs.Previous
		if err := d.updateScale(ctx, st.Namespace, st.Name, upd); err != nil {
			if apierrors.IsConflict(err) && attempt < attempts {
				continue
			}
			return err
		}
		d.wrote(st.UID, dep.Generation+1)
		report(fmt.Sprintf("deployment %s: replicas %d → %d (restored)", st.ref(), rs.Wrote, rs.Previous))
		return nil
	}
}

// ---- SCALE_RESOURCE environment variable ----

// envAt returns the index of variable name in c.Env, -1 if absent. A variable
// set from valueFrom, or listed twice, is refused: we would not know what to
// restore.
func envAt(c corev1.Container, name string) (int, error) {
	at := -1
	for j, e := range c.Env {
		if e.Name != name {
			continue
		}
		if at >= 0 {
			return 0, fmt.Errorf("container %s lists %s twice", c.Name, name)
		}
		if e.ValueFrom != nil {
			return 0, fmt.Errorf("container %s sets %s from valueFrom (a secret, config map or field): refusing to overwrite it", c.Name, name)
		}
		at = j
	}
	return at, nil
}

func containerPath(i int, rest ...string) string {
	return pointer(append([]string{"spec", "template", "spec", "containers", strconv.Itoa(i)}, rest...)...)
}

// setEnvPatch builds the JSON patch that sets name to value on every container
// of dep. It tests the generation we last saw, each container's name at its
// index and each current entry, so it fails rather than writes over a change
// made since we read dep. The value is written with "add", which replaces an
// existing member and also works when an empty value was omitted from the JSON.
func setEnvPatch(dep *appsv1.Deployment, name, value string) ([]byte, error) {
	ops := []jsonOp{{Op: "test", Path: "/metadata/generation", Value: dep.Generation}}
	for i, c := range dep.Spec.Template.Spec.Containers {
		j, err := envAt(c, name)
		if err != nil {
			return nil, err
		}
		ops = append(ops, jsonOp{Op: "test", Path: containerPath(i, "name"), Value: c.Name})
		entry := corev1.EnvVar{Name: name, Value: value}
		switch {
		case j >= 0:
			ops = append(ops,
				jsonOp{Op: "test", Path: containerPath(i, "env", strconv.Itoa(j)), Value: c.Env[j]},
				jsonOp{Op: "add", Path: containerPath(i, "env", strconv.Itoa(j), "value"), Value: value})
		case len(c.Env) == 0:
			ops = append(ops, jsonOp{Op: "add", Path: containerPath(i, "env"), Value: []corev1.EnvVar{entry}})
		default:
			ops = append(ops, jsonOp{Op: "add", Path: containerPath(i, "env", "-"), Value: entry})
		}
	}
	return mustJSON(ops), nil
}

// applyEnv sets o.Env on every container, in one patch per step, pausing
// o.Interval between steps. A failure after a step returns the state so far.
func (d *Driver) applyEnv(ctx context.Context, o op, report recovery.Reporter) (*before, error) {
	dep, err := d.getDeployment(ctx, o.Namespace, o.Name)
	if err != nil {
		return nil, err
	}
	if len(dep.Spec.Template.Spec.Containers) == 0 {
		return nil, fmt.Errorf("deployment %s has no containers", o.Ref())
	}
	es, same, err := readEnv(dep, o)
	if err != nil {
		return nil, err
	}
	if same {
		report(fmt.Sprintf("deployment %s: %s is already %s on every container: nothing changed", o.Ref(), o.Env, o.Steps[len(o.Steps)-1]))
		return nil, nil
	}
	from := expectedFrom(o, es, report)
	return d.stepEnv(ctx, o, dep, es, from, report)
}

// readEnv records each container's current value of o.Env; same is true when
// every container already holds the final value.
func readEnv(dep *appsv1.Deployment, o op) (es *envState, same bool, err error) {
	es = &envState{Name: o.Env}
	same = true
	for _, c := range dep.Spec.Template.Spec.Containers {
		j, err := envAt(c, o.Env)
		if err != nil {
			return nil, false, fmt.Errorf("deployment %s: %w", o.Ref(), err)
		}
		ce := containerEnv{Container: c.Name}
		if j >= 0 {
			v := c.Env[j].Value
			ce.Previous = &v
			ce.Wrote = v
		}
		same = same && j >= 0 && c.Env[j].Value == o.Steps[len(o.Steps)-1]
		es.Containers = append(es.Containers, ce)
	}
	return es, same, nil
}

// expectedFrom returns the value the first report line starts from: o.From if
// the runbook gave one (noting each container that held something else), else
// the containers' previous value.
func expectedFrom(o op, es *envState, report recovery.Reporter) string {
	if o.From == "" {
		return commonPrevious(es.Containers)
	}
	for _, ce := range es.Containers {
		if ce.Previous == nil || *ce.Previous != o.From {
			report(fmt.Sprintf("note: container %s had %s %s, the runbook expected %s",
				ce.Container, o.Env, describe(deref(ce.Previous), ce.Previous != nil), o.From))
		}
	}
	return o.From
}

// stepEnv writes o.Steps in order, one patch each, reporting every step and
// waiting o.Interval between steps. The state is nil until the first patch
// went through; after that a failure returns it with the error.
func (d *Driver) stepEnv(ctx context.Context, o op, dep *appsv1.Deployment, es *envState, from string, report recovery.Reporter) (*before, error) {
	var st *before
	for k, value := range o.Steps {
		body, err := setEnvPatch(dep, o.Env, value)
		if err != nil { // someone switched a container to valueFrom between steps
			return st, fmt.Errorf("deployment %s: %w", o.Ref(), err)
		}
		dep, err = d.patchDeployment(ctx, o.Namespace, o.Name, types.JSONPatchType, body)
		if err != nil {
			return st, err
		}
		if st == nil {
			st = &before{V: stateVersion, Kind: kindEnv, Namespace: o.Namespace, Name: o.Name, UID: string(dep.UID), Env: es}
		}
		st.Generation = dep.Generation
		d.wrote(st.UID, dep.Generation)
		for i := range es.Containers {
			es.Containers[i].Wrote = value
		}
		if len(o.Steps) > 1 {
			report(fmt.Sprintf("%s %s → %s (step %d/%d)", o.Env, from, value, k+1, len(o.Steps)))
		} else {
			report(fmt.Sprintf("%s %s → %s", o.Env, from, value))
		}
		from = value
		if k < len(o.Steps)-1 {
			if err := d.wait(ctx, o.Interval); err != nil {
				return st, fmt.Errorf("gradual change of %s on deployment %s stopped after step %d/%d: %w",
					o.Env, o.Ref(), k+1, len(o.Steps), err)
			}
		}
	}
	return st, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// commonPrevious names the containers' previous value for a report line.
func commonPrevious(cs []containerEnv) string {
	first := cs[0].Previous
	for _, c := range cs[1:] {
		if (c.Previous == nil) != (first == nil) || (first != nil && *c.Previous != *first) {
			return "(mixed)"
		}
	}
	if first == nil {
		return "(unset)"
	}
	return *first
}

// undoEnv restores every container's previous value, or removes the variable
// where it did not exist, in one JSON patch that tests generation and our values.
func (d *Driver) undoEnv(ctx context.Context, st before, report recovery.Reporter) error {
	dep, err := d.getDeployment(ctx, st.Namespace, st.Name)
	if err != nil {
		return err
	}
	es := st.Env
	where, restored, err := findEnv(dep, st)
	if err != nil {
		report(err.Error())
		return err
	}
	if restored {
		report(fmt.Sprintf("deployment %s: %s is already back to its previous state: nothing to undo", st.ref(), es.Name))
		return nil
	}
	if err := d.checkDeployment(dep, st); err != nil {
		report(err.Error())
		return err
	}
	ops, done, err := restoreEnvPatch(dep, st, where)
	if err != nil {
		report(err.Error())
		return err
	}
	gen := dep.Generation
	if dep, err = d.patchDeployment(ctx, st.Namespace, st.Name, types.JSONPatchType, mustJSON(ops)); err != nil {
		return d.undoRefused(ctx, st, gen, err, report)
	}
	d.wrote(st.UID, dep.Generation)
	report(fmt.Sprintf("deployment %s: %s restored: %s", st.ref(), es.Name, strings.Join(done, ", ")))
	return nil
}

// envSlot is where a recorded container's variable is now.
type envSlot struct {
	index, at int // container index (-1: gone), entry index (-1: absent)
}

// findEnv locates each container of st.Env in dep, in the recorded order;
// restored is true when dep is the same deployment and every container holds
// its previous value again.
func findEnv(dep *appsv1.Deployment, st before) (where []envSlot, restored bool, err error) {
	es := st.Env
	restored = string(dep.UID) == st.UID
	for _, ce := range es.Containers {
		i := containerIndex(dep, ce.Container)
		at := -1
		if i >= 0 {
			j, err := envAt(dep.Spec.Template.Spec.Containers[i], es.Name)
			if err != nil {
				return nil, false, changed("deployment", st, err.Error())
			}
			at = j
		}
		where = append(where, envSlot{i, at})
		if i < 0 {
			restored = false
			continue
		}
		c := dep.Spec.Template.Spec.Containers[i]
		if ce.Previous == nil {
			restored = restored && at < 0
		} else {
			restored = restored && at >= 0 && c.Env[at].Value == *ce.Previous
		}
	}
	return where, restored, nil
}

// restoreEnvPatch builds the JSON patch that puts back every container's
// previous value, testing the generation, each container's name and the
// value we wrote; done lists each container's outcome for the report. It
// refuses when a container is gone or its value is no longer ours.
func restoreEnvPatch(dep *appsv1.Deployment, st before, where []envSlot) (ops []jsonOp, done []string, err error) {
	es := st.Env
	ops = []jsonOp{{Op: "test", Path: "/metadata/generation", Value: dep.Generation}}
	for n, ce := range es.Containers {
		i, at := where[n].index, where[n].at
		if i < 0 {
			return nil, nil, changed("deployment", st, fmt.Sprintf("container %s is gone", ce.Container))
		}
		c := dep.Spec.Template.Spec.Containers[i]
		if at < 0 || c.Env[at].Value != ce.Wrote {
			var cur string
			if at >= 0 {
				cur = c.Env[at].Value
			}
			return nil, nil, changed("deployment", st, fmt.Sprintf("%s in container %s is %s, we set %q",
				es.Name, ce.Container, describe(cur, at >= 0), ce.Wrote))
		}
		entry := containerPath(i, "env", strconv.Itoa(at))
		ops = append(ops,
			jsonOp{Op: "test", Path: containerPath(i, "name"), Value: c.Name},
			jsonOp{Op: "test", Path: entry, Value: c.Env[at]})
		if ce.Previous == nil {
			ops = append(ops, jsonOp{Op: "remove", Path: entry})
			done = append(done, c.Name+" (removed)")
		} else {
			ops = append(ops, jsonOp{Op: "add", Path: entry + "/value", Value: *ce.Previous})
			done = append(done, c.Name+" "+*ce.Previous)
		}
	}
	return ops, done, nil
}

func containerIndex(dep *appsv1.Deployment, name string) int {
	for i, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == name {
			return i
		}
	}
	return -1
}
