# recoverbot — every target works on a fresh machine with Go 1.26 on PATH.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
PKGS        ?= ./...

.PHONY: run demo build image test test-image test-long test-ha test-k8s lint bench bench-decide clean

# Offline, dry-run, embedded runbooks, bbolt under ./data, listening on 127.0.0.1:8080.
run:
	$(GO) run . serve

# The bot's Slack face in a browser, without a Slack workspace: the real bot
# (full mode, log driver: nothing is changed) on the in-repo Slack server, and a
# page on RECOVERBOT_DEMO_LISTEN (default 127.0.0.1:8090, loopback only) that
# shows #incident as alice (an approver) or bob (not one). It prints the address.
demo:
	$(GO) run ./internal/demo

build:
	$(GO) build -o bin/recoverbot .

# The container image, as an OCI tarball (docker load, podman load, kind load
# image-archive), built without a Docker daemon or a registry; prints its digest.
# The same commit builds the same digest (deploy/image/build.sh says how).
image:
	GO=$(GO) deploy/image/build.sh bin/recoverbot-image.tar

# Unit and integration tests (real bbolt, redis-server, Alertmanager, Prometheus
# where installed: .ci/run installs them; without them those tests skip and say how).
test:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# The image built twice (the same bytes?) and opened: config, layer contents,
# and the binary's build settings and `version` (deploy/image_test.go).
test-image:
	RECOVERBOT_IMAGE_TEST=1 GO=$(GO) $(GO) test -count=1 -timeout 15m -v -run '^TestImage$$' ./deploy/

# The long tests, against the binary built from this tree (test/long): 50
# kill -9 restarts of a running scenario, then 60 s of sustained intake load.
# About ten minutes; .ci/run runs them after make test.
test-long:
	RECOVERBOT_LONG=1 GO=$(GO) $(GO) test -count=1 -timeout 30m -v ./test/long/

# The HA fault test (test/ha): 3 replicas of the binary built from this tree
# on a 3-member etcd cluster (test/k8s/bin/etcd, v3.7.0: test/k8s/build.sh etcd,
# a no-op once built), under load, through 30 kill -9s and 10 SIGSTOPs of the
# leader and 5 kill -9s of etcd's leader. About ten minutes.
test-ha:
	GO=$(GO) test/k8s/build.sh etcd
	RECOVERBOT_HA=1 GO=$(GO) $(GO) test -count=1 -timeout 20m -v ./test/ha/

# The Kubernetes driver against a real control plane (etcd, kube-apiserver,
# kube-controller-manager built from test/k8s/tools, cached in test/k8s/bin) on
# 127.0.0.1, as the bot's own ServiceAccount under deploy/rbac.yaml. Whatever the
# outcome, everything up.sh started is stopped by its PID (trap).
test-k8s:
	GO=$(GO) test/k8s/build.sh
	@state=$$(mktemp -d "$${TMPDIR:-/tmp}/recoverbot-k8s.XXXXXX"); \
	trap 'test/k8s/down.sh "$$state"' EXIT; trap 'exit 130' INT TERM; \
	test/k8s/up.sh "$$state" && . "$$state/env" && \
	RECOVERBOT_REQUIRE_K8S=1 $(GO) test -race -count=1 -timeout 10m ./test/k8s/e2e/...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)
	cd deploy/image && GOWORK=off $(GO) vet ./... && GOWORK=off $(GO) run $(STATICCHECK) ./...

# Go benchmarks; the README's figures come from these (Benchmarks section).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 $(PKGS)

# BenchmarkDecide per core (-cpu 1: GOMAXPROCS=1) and on every core, beside the
# reference engine, which runs on one core: with REFERENCE set to its directory
# (make bench-decide REFERENCE=../shared/reference/engine-bench) `node bench.js`
# runs right before and after, so the two are compared side by side.
REFERENCE ?=
bench-decide:
	@if [ -n "$(REFERENCE)" ]; then (cd "$(REFERENCE)" && node bench.js 1000000); fi
	GOMAXPROCS=1 $(GO) test -run '^$$' -bench '^BenchmarkDecide$$' -benchmem -count=3 -cpu 1 ./bot/
	@if [ -n "$(REFERENCE)" ]; then (cd "$(REFERENCE)" && node bench.js 1000000); fi
	$(GO) test -run '^$$' -bench '^BenchmarkDecide$$' -benchmem -count=3 -cpu $$(nproc) ./bot/

clean:
	rm -rf bin data
