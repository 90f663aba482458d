# wabulk — `make help` lists the targets.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Pinned so a new release cannot fail (or pass) a build that did not change.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOVULNCHECK := golang.org/x/vuln/cmd/govulncheck@v1.9.0

.PHONY: help build test deps deploy-check lint vuln bench soak fuzz clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

build: ## build bin/wabulk (static, version stamped)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/wabulk ./cmd/wabulk

deps: ## install what the tests need (redis-server, chromium, prometheus) when missing
	@scripts/ensure-deps

test: deps lint deploy-check ## lint, deploy-check, then every test with the race detector against real redis-servers
	$(GO) test -race -count=1 -timeout 15m ./...

deploy-check: deps ## build every kustomize overlay and decode it strictly, check compose and the Dockerfile, promtool the alert rules
	cd deploy/check && $(GO) test -count=1 ./...
	$(GO) test -count=1 -run '^Test(AlertRules|ComposePrometheusConfig|Dashboard)' ./internal/monitoring

lint: ## gofmt, vet and staticcheck; any finding fails
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	cd examples && $(GO) vet ./...
	cd deploy/check && $(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd examples && $(GO) run $(STATICCHECK) ./...
	cd deploy/check && $(GO) run $(STATICCHECK) ./...

vuln: ## govulncheck: needs network to fetch the vulnerability database, so not part of lint or test
	$(GO) run $(GOVULNCHECK) ./...

bench: deps ## throughput, rate accuracy, enqueue cost, latency, lanes, callback intake against baselines; writes bench/RESULTS.md
	$(GO) run ./bench

soak: deps ## long fault runs (not in CI)
	WABULK_SOAK=1 $(GO) test -race -count=1 -timeout 60m -run Soak ./...

fuzz: ## run each fuzz target for 30s
	@for p in $$($(GO) list ./...); do for f in $$($(GO) test -list 'Fuzz.*' $$p | grep ^Fuzz); do $(GO) test -run XXX -fuzz "^$$f$$" -fuzztime 30s $$p || exit 1; done; done

clean: ## remove build output
	rm -rf bin
