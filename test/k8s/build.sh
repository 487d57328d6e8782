#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from the tools
# module (test/k8s/tools/go.mod, never the project's) into test/k8s/bin
# (gitignored). Cold, this compiles most of Kubernetes: ~18 CPU-minutes, so ~9
# minutes on 2 idle cores, and up to ~2.4 GB per concurrent link; after that Go's
# build cache makes it seconds (go build leaves an up-to-date binary alone).
# One go build for all four, so that compiling and linking overlap on every core;
# -s -w (no symbol table, no DWARF) shortens the links. GO_BUILD_P=1 builds one
# package, and links one binary, at a time, for a machine short of memory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/bin"
mkdir -p "$bin"
cd "$here/tools"
export GOWORK=off
# The tools module's go.sum is the truth: never let a -mod=mod from the caller
# rewrite it.
export GOFLAGS="${GOFLAGS:-} -mod=readonly"
p=()
[ -n "${GO_BUILD_P:-}" ] && p=(-p "$GO_BUILD_P")
# `build.sh etcd` builds etcd alone (a few CPU-minutes cold): the unit tests
# of the etcd store and the election need it long before the rest is built.
pkgs=(go.etcd.io/etcd/server/v3 k8s.io/kubernetes/cmd/kube-apiserver
  k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
what="etcd, kube-apiserver, kube-controller-manager, kubectl"
if [ "${1:-}" = etcd ]; then
  pkgs=(go.etcd.io/etcd/server/v3)
  what=etcd
fi
start=$SECONDS
"${GO:-go}" build "${p[@]}" -trimpath -ldflags='-s -w' -o "$bin/" "${pkgs[@]}"
# go build names etcd's binary after its module path: go.etcd.io/etcd/server/v3.
ln -sf server "$bin/etcd"
echo "build.sh: $what in $bin ($((SECONDS - start))s)"
