package kube

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// serviceAccountNamespace is where a pod finds its own namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Config finds the cluster to talk to and the default namespace.
//
// An explicit kubeconfigPath always wins: passing one is a deliberate choice,
// even inside a pod. Otherwise, in a pod, the in-cluster config (service
// account token) and the pod's own namespace; outside a pod, the kubeconfig
// files named by KUBECONFIG, else ~/.kube/config, with the namespace of the
// current context ("default" when the context has none).
func Config(kubeconfigPath string) (*rest.Config, string, error) {
	return config(kubeconfigPath, rest.InClusterConfig, serviceAccountNamespace, clientcmd.RecommendedHomeFile)
}

// config is Config with its environment injected; homeFile is ~/.kube/config
// (clientcmd computes it once, at init, from $HOME).
func config(path string, inCluster func() (*rest.Config, error), namespaceFile, homeFile string) (*rest.Config, string, error) {
	if path == "" {
		cfg, err := inCluster()
		switch {
		case err == nil:
			b, err := os.ReadFile(namespaceFile)
			if err != nil {
				return nil, "", fmt.Errorf("in-cluster namespace: %w", err)
			}
			ns := strings.TrimSpace(string(b))
			if ns == "" {
				return nil, "", fmt.Errorf("in-cluster namespace: %s is empty", namespaceFile)
			}
			return cfg, ns, nil
		case !errors.Is(err, rest.ErrNotInCluster):
			return nil, "", fmt.Errorf("in-cluster config: %w", err)
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules() // KUBECONFIG, else ~/.kube/config
	if os.Getenv(clientcmd.RecommendedConfigPathEnvVar) == "" {
		rules.Precedence = []string{homeFile}
	}
	rules.ExplicitPath = path
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace() // "default" when the context names none
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig namespace: %w", err)
	}
	return cfg, ns, nil
}
