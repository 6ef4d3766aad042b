# Murmuration — the two commands that matter: `make run` and `make test`.
CARGO ?= cargo
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: help run cluster build build-release test test-unit test-clients lint fmt tools clean

# Where cargo puts its output (make run starts the binary `make build` made).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
MURMUR_BIN := $(abspath $(TARGET_DIR))/debug/murmur
SDK := clients/typescript

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

run: build ## one node, development mode, everything in memory (public :8080, internal :9090; chat demo at /demo/)
	MURMUR_DEV=1 exec $(MURMUR_BIN) serve

cluster: ## 3 nodes on one Redis (own redis-server unless MURMUR_REDIS_URL is set); Ctrl-C stops
	@scripts/cluster.sh

build: ## debug build of every crate and the murmur binary
	$(CARGO) build --workspace

build-release: ## release build: target/release/murmur
	$(CARGO) build --release -p murmur-gateway --bin murmur

certs: ## development CA, Sink TLS server and client certificates in target/dev-certs (CLIENTS="id ...")
	@scripts/dev-certs.sh $(CLIENTS)

tools: ## install what the tests need (redis-server, chromium; checks node and npm) when missing
	@scripts/ensure-tools.sh

test: tools build ## the whole suite: unit, conformance, black-box over real processes
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --no-fail-fast
else
	$(CARGO) test --workspace --no-fail-fast
endif
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory test-clients

test-clients: build ## the TypeScript SDK's tests and the browser test of the chat demo (real nodes, redis, chromium)
	@if [ ! -f $(SDK)/node_modules/.package-lock.json ] || [ $(SDK)/package-lock.json -nt $(SDK)/node_modules/.package-lock.json ]; then \
	  echo "npm ci in $(SDK)"; cd $(SDK) && npm ci --no-audit --no-fund; fi
	cd $(SDK) && npm run build
	cd $(SDK) && MURMUR_BIN=$(MURMUR_BIN) npm test
	cd $(SDK) && MURMUR_BIN=$(MURMUR_BIN) npm run test:browser

test-unit: ## unit tests only (no processes)
	$(CARGO) test --workspace --lib

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format everything
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

# ---- deployment artifacts (deploy/, helm/murmur) -------------------------------------
COMPOSE ?= docker compose
COMPOSE_FILE := deploy/docker-compose.yml

.PHONY: helm-check compose-up compose-down

helm-check: ## lint, render and validate the Helm chart and check deploy/ (no cluster, no Docker)
	@scripts/helm-check.sh

compose-up: ## Redis + 3 nodes + Prometheus in Docker (public 8081-8083, internal 9091-9093, Prometheus 9090)
	$(COMPOSE) -f $(COMPOSE_FILE) up --build -d

compose-down: ## stop the compose cluster and delete its volumes
	$(COMPOSE) -f $(COMPOSE_FILE) down -v

.PHONY: bench bench-smoke

bench: ## release build, Redis + 2 nodes, Socket.IO and NATS peers, standard scenarios -> BENCHMARKS.md (~15 min)
	@scripts/bench.sh

bench-smoke: ## the bench pipeline for a few seconds each -> target/bench-smoke/BENCHMARKS.md
	@BENCH_MODE=smoke scripts/bench.sh

.PHONY: soak

soak: ## 10-minute soak on 3 nodes: RSS and fd slope per node
	@scripts/soak.sh

# ---- fuzzing (fuzz/, nightly + cargo-fuzz; see docs/fuzzing.md) ----------------------
.PHONY: fuzz fuzz-smoke
FUZZ_TIME ?= 600

fuzz-smoke: ## every fuzz target for a few seconds
	@FUZZ_TIME=3 FUZZ_KEEP=0 scripts/fuzz-smoke.sh

fuzz: ## every fuzz target for FUZZ_TIME seconds each (600), growing and minimising fuzz/corpus
	@FUZZ_TIME=$(FUZZ_TIME) FUZZ_KEEP=1 scripts/fuzz-smoke.sh
