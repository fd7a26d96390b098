# One-command set-up: every target installs what it needs (virtualenv, Python
# packages, control-plane binaries) and skips what is already there.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MODELROLLOUT_CACHE ?= $(HOME)/.cache/modelrollout
PYTEST_ARGS ?=

.PHONY: help venv k8s-bins k8s-openapi crd prom-bins gateway-bins mlserver-bins kserve-bins wheelhouse lint test test-unit test-e2e chaos soak demo cluster-up cluster-down cluster-shell bench-serving bench-decisions bench-reconcile bench-operator kwok-bins images kind-up kind-e2e kind-down clean

help:
	@echo "make demo        - the main job on the built-in local cluster"
	@echo "make test        - install everything, lint, run unit + e2e tests"
	@echo "make test-unit   - the fast tier only (no cluster)"
	@echo "make chaos       - the operator SIGKILLed 20 times across rollouts (make test: 3)"
	@echo "make soak        - 30 minutes of back-to-back rollouts (make test: about 4 minutes)"
	@echo "make lint        - ruff + mypy"
	@echo "make crd         - regenerate the CRD (both copies) from hack/crd/ and docs/modelrollout.md"
	@echo "make cluster-up / cluster-down / cluster-shell - the local cluster"

$(STAMP): pyproject.toml constraints.txt
	@echo "[setup] creating virtualenv $(VENV) and installing Python packages..."
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	@# kserve's metadata pins python-dateutil<3, kubernetes needs >=3: its imports are in the test extra
	@$(BIN)/pip install -q --no-deps --no-warn-conflicts -c constraints.txt kserve
	@touch $@
	@echo "[setup] Python packages ready"

venv: $(STAMP)

k8s-bins:
	@hack/build-k8s.sh >/dev/null

# prometheus + promtool from Go modules (the Prometheus metric source's tests and `promtool check metrics`).
prom-bins:
	@hack/build-prometheus.sh >/dev/null

# The Gateway API data plane for the gatewayAPI router's e2e tests: Traefik built from Go modules and
# the Gateway API CRDs, cached under $(MODELROLLOUT_CACHE)/traefik-<version>.
gateway-bins:
	@hack/build-gateway.sh >/dev/null

# MLServer 1.7.1 + mlserver-sklearn in a virtualenv of their own under $(MODELROLLOUT_CACHE)/mlserver-<version>:
# the local cluster's seldonio/mlserver image (the serving.metrics mlserver preset's e2e test).
mlserver-bins:
	@hack/build-mlserver.sh >/dev/null

# kserve 0.21.0 + scikit-learn in a virtualenv of their own under $(MODELROLLOUT_CACHE)/kserve-<version>:
# the local cluster's modelrollout/kserve-sklearn-predictor image (the serving.metrics kserve preset's e2e test).
kserve-bins:
	@hack/build-kserve.sh >/dev/null

# The wheels of the images' package sets (operator/, serving/, serving/contract/ pyproject.toml), downloaded once
# under $(MODELROLLOUT_CACHE)/wheelhouse-<digest>: tests/e2e/test_image_sets.py installs each set offline from them.
wheelhouse:
	@hack/build-wheelhouse.sh >/dev/null

# Kubernetes' core/v1 OpenAPI document (from the Go module), which the CRD generator inlines types from.
k8s-openapi:
	@hack/k8s-openapi.sh >/dev/null

# The CRD and its chart copy: the schema in hack/crd/, descriptions from docs/modelrollout.md's tables,
# core/v1 types inlined (tests/unit/test_crd.py fails when the committed copies differ from this output).
crd: venv k8s-openapi
	MODELROLLOUT_K8S_OPENAPI=$$(hack/k8s-openapi.sh) $(BIN)/python -m modelrollout.crdgen

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

test-unit: venv k8s-openapi
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

# e2e tests run inside a private network + PID namespace (hack/in-netns): pods get 10.244.x
# addresses, no packet leaves the machine, and no process outlives the run.
test-e2e: venv k8s-bins prom-bins gateway-bins mlserver-bins kserve-bins wheelhouse
	hack/in-netns $(BIN)/pytest -m e2e $(PYTEST_ARGS)

# Every test, in SHARDS pytest processes side by side, each with its own namespace and local cluster
# (hack/run-shards; tests/sharding.py deals whole files out by the seconds in tests/durations.json).
# SHARDS=1 runs them in one process, as before.
SHARDS ?= 2
test: venv k8s-bins k8s-openapi prom-bins gateway-bins mlserver-bins kserve-bins wheelhouse lint
	$(BIN)/python hack/run-shards $(SHARDS) $(PYTEST_ARGS)

# The operator SIGKILLed at 20 seeded random moments across canary, blue-green and rollback under traffic
# (make test runs a 3-kill version). CHAOS_SEED=<printed seed> replays a run.
chaos: venv k8s-bins
	CHAOS_KILLS=$${CHAOS_KILLS:-20} hack/in-netns $(BIN)/pytest -s tests/e2e/test_chaos.py $(PYTEST_ARGS)

# 30 minutes of back-to-back rollouts under traffic: memory growth and leftovers (make test runs about 4 minutes).
soak: venv k8s-bins
	SOAK_SECONDS=$${SOAK_SECONDS:-1800} hack/in-netns $(BIN)/pytest -s tests/e2e/test_soak.py $(PYTEST_ARGS)

# The main job: local cluster, operator installed by Helm, a good model promoted and a bad one
# rolled back under live traffic, with a live view. Exit 0 only if both outcomes happened.
demo: venv k8s-bins
	hack/in-netns $(BIN)/python -m localcluster.demo $(DEMO_ARGS)

cluster-up: venv k8s-bins
	@$(BIN)/python -m localcluster up --state-dir .local/cluster

cluster-down: venv
	@$(BIN)/python -m localcluster down --state-dir .local/cluster

cluster-shell: venv
	@$(BIN)/python -m localcluster shell --state-dir .local/cluster

# Throughput/latency of the model server beside MLServer on the same models, then the cost of mirroring to a
# shadow candidate (loopback, bounded runs; BENCH_ONLY=mirror runs the second part alone).
bench-serving: venv
	$(BIN)/python bench/serving/run.py

# Decision quality, both sides (not timed): the rollback test vs threshold rules and a fixed-sample test, then the
# engine replayed through assess_tick per metric type. Bounded by default; BENCH_ARGS=--full rewrites docs/analysis.md.
bench-decisions: venv
	$(BIN)/python bench/decisions/run.py $(BENCH_ARGS)

# Reconcile latency with many rollouts in one operator (N=30 real serving pods by default; BENCH_ARGS=--rollouts N).
bench-reconcile: venv k8s-bins
	hack/in-netns $(BIN)/python bench/operator/run.py $(BENCH_ARGS)

# kwok (fake Nodes and Pods, no processes) from Go modules, cached under $(MODELROLLOUT_CACHE)/kwok-<version>.
kwok-bins:
	@hack/build-kwok.sh >/dev/null

# The operator at scale: N ModelRollouts (50, 200, 500, 1000) on kwok's simulated nodes and pods, one metrics
# simulator answering every pod IP, with and without --watch-cache; one JSON line per run
# (BENCH_ARGS="--rollouts 20 --watch-cache on" for a short one). Numbers: docs/benchmarks.md.
bench-operator: venv k8s-bins kwok-bins
	hack/in-netns $(BIN)/python bench/operator/scale.py $(BENCH_ARGS)

# The kind path, for machines with a Docker engine (it cannot run where this project is built).
images:
	@hack/kind-images.sh

kind-up: venv
	@hack/kind-up.sh

kind-e2e: venv
	@hack/kind-e2e.sh

kind-down:
	@hack/kind-down.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
