package kube

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

func writeKubeconfig(t *testing.T, dir, server, namespace string) string {
	t.Helper()
	ns := ""
	if namespace != "" {
		ns = "\n    namespace: " + namespace
	}
	body := `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: ` + server + `
users:
- name: u
  user:
    token: not-a-real-token
contexts:
- name: ctx
  context:
    cluster: c
    user: u` + ns + `
current-context: ctx
`
	path := filepath.Join(dir, "config")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func notInCluster() (*rest.Config, error) { return nil, rest.ErrNotInCluster }

func TestConfig(t *testing.T) {
	t.Run("explicit path with the context's namespace", func(t *testing.T) {
		t.Setenv("KUBECONFIG", "")
		path := writeKubeconfig(t, t.TempDir(), "https://explicit.example:6443", "payments")
		// An explicit path wins even in a pod.
		inPod := func() (*rest.Config, error) { return &rest.Config{Host: "https://in-cluster"}, nil }
		cfg, ns, err := config(path, inPod, "/nonexistent", "/nonexistent")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Host != "https://explicit.example:6443" || ns != "payments" {
			t.Errorf("got host %q namespace %q", cfg.Host, ns)
		}
	})
	t.Run("KUBECONFIG, context without namespace means default", func(t *testing.T) {
		t.Setenv("KUBECONFIG", writeKubeconfig(t, t.TempDir(), "https://env.example", ""))
		cfg, ns, err := config("", notInCluster, "/nonexistent", "/nonexistent")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Host != "https://env.example" || ns != "default" {
			t.Errorf("got host %q namespace %q", cfg.Host, ns)
		}
	})
	t.Run("home kubeconfig", func(t *testing.T) {
		home := t.TempDir()
		if err := os.Mkdir(filepath.Join(home, ".kube"), 0o700); err != nil {
			t.Fatal(err)
		}
		homeFile := writeKubeconfig(t, filepath.Join(home, ".kube"), "https://home.example", "ops")
		t.Setenv("KUBECONFIG", "")
		cfg, ns, err := config("", notInCluster, "/nonexistent", homeFile)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Host != "https://home.example" || ns != "ops" {
			t.Errorf("got host %q namespace %q", cfg.Host, ns)
		}
	})
	t.Run("in a pod", func(t *testing.T) {
		nsFile := filepath.Join(t.TempDir(), "namespace")
		if err := os.WriteFile(nsFile, []byte("recoverbot\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		inPod := func() (*rest.Config, error) { return &rest.Config{Host: "https://10.0.0.1:443"}, nil }
		cfg, ns, err := config("", inPod, nsFile, "/nonexistent")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Host != "https://10.0.0.1:443" || ns != "recoverbot" {
			t.Errorf("got host %q namespace %q", cfg.Host, ns)
		}
	})
	t.Run("in a pod without a namespace file", func(t *testing.T) {
		inPod := func() (*rest.Config, error) { return &rest.Config{}, nil }
		if _, _, err := config("", inPod, filepath.Join(t.TempDir(), "missing"), "/nonexistent"); err == nil || !strings.Contains(err.Error(), "in-cluster namespace") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("broken in-cluster config is not hidden", func(t *testing.T) {
		broken := func() (*rest.Config, error) { return nil, errors.New("open token: permission denied") }
		if _, _, err := config("", broken, "/nonexistent", "/nonexistent"); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("nothing configured", func(t *testing.T) {
		t.Setenv("KUBECONFIG", "")
		if _, _, err := config("", notInCluster, "/nonexistent", filepath.Join(t.TempDir(), "config")); err == nil {
			t.Error("no error without any configuration")
		}
	})
	t.Run("Config outside a pod uses the kubeconfig", func(t *testing.T) {
		t.Setenv("KUBERNETES_SERVICE_HOST", "")
		t.Setenv("KUBECONFIG", writeKubeconfig(t, t.TempDir(), "https://public.example", "edge"))
		cfg, ns, err := Config("")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Host != "https://public.example" || ns != "edge" {
			t.Errorf("got host %q namespace %q", cfg.Host, ns)
		}
	})
}
