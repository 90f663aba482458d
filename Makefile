# wabulk — `make help` lists the targets.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: help build test deps lint bench soak fuzz clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build bin/wabulk (static, version stamped)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/wabulk ./cmd/wabulk

deps: ## install what the tests need (redis-server, chromium) when missing
	@scripts/ensure-deps

test: deps ## vet, then every test with the race detector against real redis-servers
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 9m ./...

lint: ## gofmt, vet, staticcheck and govulncheck when they can be installed
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	@$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./... || echo "lint: staticcheck unavailable or failed (see above)"
	@$(GO) run golang.org/x/vuln/cmd/govulncheck@latest ./... || echo "lint: govulncheck unavailable or failed (see above)"

bench: deps ## throughput, rate accuracy, enqueue cost, latency against baselines; writes bench/RESULTS.md
	$(GO) run ./bench

soak: deps ## long fault runs (not in CI)
	WABULK_SOAK=1 $(GO) test -race -count=1 -timeout 60m -run Soak ./...

fuzz: ## run each fuzz target for 30s
	@for p in $$($(GO) list ./...); do for f in $$($(GO) test -list 'Fuzz.*' $$p | grep ^Fuzz); do $(GO) test -run XXX -fuzz "^$$f$$" -fuzztime 30s $$p || exit 1; done; done

clean: ## remove build output
	rm -rf bin
