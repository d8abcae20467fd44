# ce-operator developer entry points. `make help` lists them.
SHELL := /bin/bash
KUBECONFIG_LOCAL := $(CURDIR)/.local/cluster/kubeconfig
KUBECTL := $(CURDIR)/.local/bin/kubectl

.PHONY: help tools cluster-up cluster-down crds dev test e2e image bench bench-authz negative-controls mutants lint fmt

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

tools: ## Build (once, cached) etcd, the Kubernetes binaries, containerd, crane, helm, promtool, kstatus, etcdctl and etcdutl
	@hack/ensure-deps.sh
	@hack/build-tools.sh

cluster-up: tools ## Start the local cluster (NODE=1: with a real node that runs Pods); kubeconfig at .local/cluster/kubeconfig
	@hack/cluster.sh up $(if $(NODE),--node)

cluster-down: ## Stop the local cluster (and the operator `make dev` started)
	@if [[ -f .local/dev/operator.pid ]]; then kill $$(cat .local/dev/operator.pid) 2>/dev/null || true; rm -f .local/dev/operator.pid; fi
	@hack/cluster.sh down

crds: ## Regenerate crds/, the chart's copy and docs/api.md from the Rust types
	cargo run --quiet -- crdgen --out crds --docs docs/api.md
	cargo run --quiet -- crdgen --out charts/ce-operator/crds

dev: cluster-up ## Local cluster + CRDs + the operator running + examples applied (from a fresh clone)
	@hack/dev.sh

test: ## The whole test suite (what CI runs), the real-node e2e included
	@hack/test.sh

image: tools ## The operator's OCI image, without a Docker engine (.local/image/ce-operator.tar)
	@hack/image.sh

e2e: tools ## The chart as a user installs it, on a fresh cluster with a real node (part of make test)
	@hack/e2e.sh

# The scale benchmark starts from a fresh cluster: on one that had served a 100k run (API
# server RSS 9 GiB), a 10k run converged in 84 s against 53 s on a fresh one.
bench: cluster-down tools ## Scale benchmark: the operator and the honest floor, each on a fresh local cluster (replaces it; ARGS="--quick" for a small run, RUNS=3 for the median and spread of three, the order alternating)
	cargo build --release --bin ce-operator
	@RUNS="$(RUNS)" ARGS="$(ARGS)" hack/bench.sh

# The authorization benchmark, too, starts from a fresh cluster: one still holding an earlier
# run's load stalls the machine now and then (an open-loop run fell from 5,245 to 1,560
# requests sent per second).
bench-authz: cluster-down cluster-up ## Authorization endpoint vs OPA on the same data, on a fresh local cluster (wrk and vegeta; builds OPA and vegeta once)
	@hack/ensure-bench-deps.sh
	cargo build --release --bin ce-operator
	cargo bench --bench authz -- $(ARGS)

negative-controls: tools ## Break the product on purpose, control by control, and check the named test fails (not in make test; NAMES="a b" for some)
	@hack/negative-controls.sh $(NAMES)

mutants: ## Mutation testing of src/model over its unit tests (cargo-mutants, built once; not in make test; SHARD=1/4 for a quarter)
	@hack/build-tools.sh cargo_mutants
	CARGO_TARGET_DIR=$(HOME)/.cache/ce-operator/mutants-target .local/bin/cargo-mutants mutants --file 'src/model/**' \
	  --cargo-arg=--lib $(if $(SHARD),--shard $(SHARD) --sharding round-robin) -- -- model::

lint: ## cargo fmt --check and clippy
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

fmt: ## Format the code
	cargo fmt --all
