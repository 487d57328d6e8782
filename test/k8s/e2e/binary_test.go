package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/recoverbot/recoverbot/internal/testutil"
	"github.com/recoverbot/recoverbot/recovery/kube"
)

// TestBinaryRestartsADeployment is the whole path with the real binary: built
// with go build, started with RECOVERBOT_KUBECONFIG (the bot's ServiceAccount
// token) and the restart-pod runbook; the runbook's sample event posted to the
// intake, approved through the admin API, and the deployment's pod template
// annotation seen changing through the Kubernetes API, written by the bot. A
// rollback through the admin API then removes it again.
//
// The runbook's deployment, api-gateway, has 0 replicas here, so the rollout
// the driver waits for really finishes without a kubelet.
func TestBinaryRestartsADeployment(t *testing.T) {
	c := connect(t)
	const name = "api-gateway" // named by runbooks/defaults/40-restart-pod-memory-leak.yaml
	gone(t, c, name)
	c.deployment(t, c.ns, name, 0)
	c.observed(t, name)

	dir := t.TempDir()
	bin := filepath.Join(dir, "recoverbot")
	build := exec.CommandContext(t.Context(), goCommand(), "build", "-o", bin, "github.com/recoverbot/recoverbot")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	books := filepath.Join(dir, "runbooks")
	if err := os.Mkdir(books, 0o700); err != nil {
		t.Fatal(err)
	}
	rb, err := os.ReadFile("../../../runbooks/defaults/40-restart-pod-memory-leak.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(books, "restart.yaml"), rb, 0o600); err != nil {
		t.Fatal(err)
	}

	addr := testutil.FreePort(t)
	srv := exec.Command(bin, "serve")
	srv.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"RECOVERBOT_KUBECONFIG=" + os.Getenv("RECOVERBOT_TEST_KUBECONFIG"),
		"RECOVERBOT_MODE=full",
		"RECOVERBOT_LISTEN=" + addr,
		"RECOVERBOT_DATA=" + filepath.Join(dir, "bot.db"),
		"RECOVERBOT_RUNBOOKS=" + books,
	}
	var logs testutil.SyncBuffer
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = srv.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("recoverbot log:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	eventually(t, "recoverbot to be ready", func(ctx context.Context) (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("recoverbot exited: %v\n%s", err, logs.String())
		default:
		}
		code, _, _ := call(ctx, http.MethodGet, base+"/readyz", nil)
		return code == http.StatusOK, nil
	})
	if !strings.Contains(logs.String(), "kubernetes driver ready") {
		t.Errorf("the log does not say the kubernetes driver is ready:\n%s", logs.String())
	}

	event, err := os.ReadFile("../../../examples/events/restart-pod-memory-leak.json")
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		PlanID   string   `json:"plan_id"`
		Decision string   `json:"decision"`
		Reasons  []string `json:"reasons"`
	}
	mustCall(t, http.MethodPost, base+"/v1/events", event, http.StatusAccepted, &answer)
	if answer.Decision != "approval" || answer.PlanID == "" {
		t.Fatalf("answer %+v, want a plan awaiting approval", answer)
	}
	if _, ok := c.get(t, name).Spec.Template.Annotations[kube.RestartedAtAnnotation]; ok {
		t.Fatal("the deployment was restarted before the approval")
	}

	mustCall(t, http.MethodPost, base+"/v1/executions/"+answer.PlanID+"/approve", nil, http.StatusOK, nil)
	var wrote string
	eventually(t, "the pod template's "+kube.RestartedAtAnnotation+" annotation", func(ctx context.Context) (bool, error) {
		d, err := c.admin.AppsV1().Deployments(c.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		wrote = d.Spec.Template.Annotations[kube.RestartedAtAnnotation]
		if wrote == "" {
			return false, nil
		}
		// Who wrote it: the field manager is the writer's user agent.
		var managers []string
		for _, m := range d.ManagedFields {
			if m.FieldsV1 != nil && strings.Contains(m.FieldsV1.GetRawString(), kube.RestartedAtAnnotation) {
				managers = append(managers, m.Manager)
			}
		}
		if len(managers) != 1 || managers[0] != "recoverbot" {
			return false, fmt.Errorf("%s is managed by %q, want the recoverbot binary only", kube.RestartedAtAnnotation, managers)
		}
		return true, nil
	})
	waitState(t, base, answer.PlanID, "SUCCEEDED")

	mustCall(t, http.MethodPost, base+"/v1/executions/"+answer.PlanID+"/rollback", nil, http.StatusOK, nil)
	waitState(t, base, answer.PlanID, "ROLLED_BACK")
	if v, ok := c.get(t, name).Spec.Template.Annotations[kube.RestartedAtAnnotation]; ok {
		t.Fatalf("after the rollback %s is still %q", kube.RestartedAtAnnotation, v)
	}
}

// gone deletes a deployment an earlier run left behind and waits until it is gone.
func gone(t *testing.T, c *cluster, name string) {
	t.Helper()
	err := c.admin.AppsV1().Deployments(c.ns).Delete(t.Context(), name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "deployment "+name+" to be gone", func(ctx context.Context) (bool, error) {
		_, err := c.admin.AppsV1().Deployments(c.ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

func waitState(t *testing.T, base, id, want string) {
	t.Helper()
	var got struct {
		Execution struct {
			State string `json:"state"`
			Error string `json:"error"`
		} `json:"execution"`
	}
	eventually(t, "execution "+id+" to be "+want, func(ctx context.Context) (bool, error) {
		code, body, err := call(ctx, http.MethodGet, base+"/v1/executions/"+id, nil)
		if err != nil || code != http.StatusOK {
			return false, fmt.Errorf("GET execution: %d %v %s", code, err, body)
		}
		if err := json.Unmarshal(body, &got); err != nil {
			return false, err
		}
		switch got.Execution.State {
		case want:
			return true, nil
		case "FAILED", "ROLLBACK_FAILED", "INTERRUPTED":
			return false, fmt.Errorf("state %s: %s", got.Execution.State, got.Execution.Error)
		}
		return false, nil
	})
}

// call makes one request to the bot, as a loopback admin client.
func call(ctx context.Context, method, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Recoverbot-Actor", "e2e")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func mustCall(t *testing.T, method, url string, body []byte, wantCode int, into any) {
	t.Helper()
	code, b, err := call(t.Context(), method, url, body)
	if err != nil || code != wantCode {
		t.Fatalf("%s %s: %d %v %s, want %d", method, url, code, err, b, wantCode)
	}
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, b)
		}
	}
}

// goCommand is the go command running these tests, else the one on PATH.
func goCommand() string {
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		return p
	}
	return "go"
}
