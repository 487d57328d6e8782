# recoverbot — every target works on a fresh machine with Go 1.26 on PATH.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
PKGS        ?= ./...

.PHONY: run build test test-long lint bench clean

# Offline, dry-run, embedded runbooks, bbolt under ./data, listening on 127.0.0.1:8080.
run:
	$(GO) run . serve

build:
	$(GO) build -o bin/recoverbot .

# Unit and integration tests (real bbolt, redis-server, Alertmanager, Prometheus
# where installed: .ci/run installs them; without them those tests skip and say how).
test:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

# Go benchmarks; figures go in the issue notes.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 $(PKGS)

clean:
	rm -rf bin data
