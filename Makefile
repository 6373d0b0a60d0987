# millrace: one command for the demo (`make run`), one for every test (`make test`).
# Both set up everything they need on a fresh machine; downloads and builds
# are cached under $(MILLRACE_HOME) (default ~/.cache/millrace).

SHELL := /bin/bash
export MILLRACE_HOME ?= $(HOME)/.cache/millrace
# Builds live outside the repository so a fresh clone reuses them.
export CARGO_TARGET_DIR ?= $(MILLRACE_HOME)/cargo-target
export PATH := /usr/local/go/bin:$(HOME)/.cargo/bin:$(PATH)

.PHONY: help run test test-unit lint fmt up down status crds images kind test-kind bench test-faults

help:
	@echo "make run     bring up the test world and show how to reach it"
	@echo "make test    fmt check, clippy, unit and integration tests against the real test world"
	@echo "make test-faults  the fault-injection suite in worlds of its own, single- then multi-node (~25-40 min; not in CI)"
	@echo "make up | down | status   manage the test world (tests/env)"
	@echo "make crds    regenerate crds/ from the Rust types"
	@echo "make images  build the runner and operator images (docker, podman or buildah)"
	@echo "make bench   benchmarks against the test world; writes bench/REPORT.md"
	@echo "make kind    the seed pipeline on a kind cluster: scripts/kind-demo with Docker (or KIND_EXPERIMENTAL_PROVIDER=podman);"
	@echo "             without a Docker engine, tests/kind/up: podman, node and back-end images built here (tests/kind/down)"
	@echo "make test-kind  the scenario tests against that kind cluster (tests/kind/test; skipped ones and why: tests/kind/e2e-tests)"

run:
	@scripts/install-system-packages
	@tests/env/up
	@tests/run-demo

test:
	@scripts/install-system-packages
	@tests/run-all

test-faults:
	@scripts/install-system-packages
	@tests/faults/run

test-unit:
	cargo test --workspace --lib --bins

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/check-module-cycles operator/src api/src

fmt:
	cargo fmt --all

up:
	@tests/env/up

down:
	@tests/env/down

status:
	@tests/env/status

crds:
	cargo run --quiet -p millrace-api --bin crdgen > crds/millrace.io_streampipelines.yaml
	cp crds/millrace.io_streampipelines.yaml charts/millrace/crds/

images:
	images/build

# With a Docker engine, or a provider chosen with kind's own
# KIND_EXPERIMENTAL_PROVIDER, the users' path. Otherwise (our machines: no
# Docker engine, no registry) the same script on kind's podman provider with
# images built here (tests/kind/README.md).
test-kind:
	@scripts/install-system-packages && tests/kind/test

kind:
	@if docker info >/dev/null 2>&1 || [[ -n "$${KIND_EXPERIMENTAL_PROVIDER:-}" ]]; then scripts/kind-demo; else scripts/install-system-packages && tests/kind/up; fi

bench:
	@tests/env/status --check || tests/env/up
	bench/run
