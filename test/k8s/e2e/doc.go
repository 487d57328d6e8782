// Package e2e holds the Kubernetes driver's integration tests: recovery/kube
// against a real kube-apiserver, etcd and kube-controller-manager (real
// admission, RBAC, patch semantics, resourceVersion conflicts and deployment
// controller; no scheduler or kubelet, so pods stay Pending), acting as the
// bot's own ServiceAccount under deploy/rbac.yaml. install_test.go applies the
// whole install, kubectl kustomize deploy/, and checks what Pod Security
// admission and RBAC make of it.
//
// `make test-k8s` builds and starts that control plane (test/k8s/up.sh) and
// runs them; without it they skip and say so, unless RECOVERBOT_REQUIRE_K8S=1.
package e2e
