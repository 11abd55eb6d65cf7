# Trine: every command a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
FUZZ_SECONDS ?= 20
SIM_SEEDS ?= 20
export CARGO_TERM_COLOR ?= never

.PHONY: help deps build test lint bench fuzz fuzz-build demo demo-memory testnet-up testnet-down gui bench-net sim sim-bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

build: ## Build every crate, test and benchmark
	$(CARGO) build --workspace --all-targets

test: ## Everything CI runs after lint: unit, property, vector and in-memory network tests; fuzz targets compile
	$(CARGO) test --workspace
	$(MAKE) fuzz-build

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: ## Criterion benchmarks; each figure is reported against a baseline from the same run
	$(CARGO) bench -p trine-circuit --bench circuit
	$(CARGO) bench -p trine-directory --bench consensus

fuzz-build: ## Check that the fuzz targets compile (no fuzzing)
	$(CARGO) build --manifest-path circuit/fuzz/Cargo.toml --target-dir target/fuzz-check
	$(CARGO) build --manifest-path directory/fuzz/Cargo.toml --target-dir target/fuzz-check

fuzz: ## Run every fuzz target for FUZZ_SECONDS (default 20) each; needs cargo-fuzz (installed if missing)
	FUZZ_SECONDS=$(FUZZ_SECONDS) circuit/fuzz/run-all.sh

deps: ## Install the Debian packages builds and network commands need (as root; says what it installs)
	scripts/install-deps.sh

demo: deps ## The main job: a whole Trine network in namespaces (root); fetch a page through a real circuit, show who saw what, tear down
	$(CARGO) build --workspace --bins
	$(CARGO) run -q -p trine-testnet --bin trine-testnet -- demo

demo-memory: ## A 3-hop circuit in one process (in-memory queues), real packets both ways
	$(CARGO) run --release -p trine-circuit --example demo

testnet-up: deps ## Bring a test network up and leave it running (root; see docs/testnet.md)
	$(CARGO) build --workspace --bins
	$(CARGO) run -q -p trine-testnet --bin trine-testnet -- up

bench-net: ## Side by side in namespaces (root): direct, WireGuard 1 hop and 3 nested, Trine 3 hops; release builds; BENCH_ARGS="--delay 5" shapes links
	scripts/install-deps.sh bench
	$(CARGO) build --release --workspace --bins
	$(CARGO) run -q --release -p trine-testnet --bin trine-testnet -- bench-net $(BENCH_ARGS)

gui: ## Build and start the desktop app (needs a display; talks to the daemon at TRINE_SOCKET or /run/trine/control.sock)
	$(CARGO) run -p trine-gui --bin trine-gui

sim: ## The example scenario end to end (release): SIM_SEEDS seeds (default 20), tables and figures in sim-out/
	mkdir -p sim-out
	$(CARGO) run -q --release -p trine-sim -- example > sim-out/example.toml
	$(CARGO) run -q --release -p trine-sim -- run sim-out/example.toml --seed 1 --seeds $(SIM_SEEDS) --out sim-out

sim-bench: ## trine-sim Engine 1 at scale (10k relays, 100k clients, 30 days): wall time, memory, circuits per second
	scripts/install-deps.sh
	$(CARGO) build -q --release -p trine-sim
	/usr/bin/time -f 'wall %e s, user %U s, max RSS %M KiB' target/release/trine-sim run simulations/scenarios/scale.toml --out target/sim-bench

testnet-down: ## Remove the test network (idempotent)
	$(CARGO) run -q -p trine-testnet --bin trine-testnet -- down

clean: ## Remove build output
	$(CARGO) clean
