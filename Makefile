# StreamPulse — every command a developer or CI needs. `make help` lists them.
# Everything heavy (venv packages, Kafka jars, binaries, models) is fetched or built on first use
# into $(CACHE_DIR) and reused afterwards.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export STREAMPULSE_CACHE_DIR ?= $(HOME)/.cache/streampulse
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# mypy's cache is shared by every clone: it checks a file again when its content changed
export MYPY_CACHE_DIR ?= $(STREAMPULSE_CACHE_DIR)/mypy
UV_VERSION := 0.13.9

# Test data and upstream CRDs live outside the repository; point at them with these settings.
SHARED_DIR ?= $(abspath ../shared)
export STREAMPULSE_REPLAY__DATA_DIR ?= $(SHARED_DIR)/data/jetstream
export STREAMPULSE_JETSTREAM__ZSTD_DICTIONARY ?= $(STREAMPULSE_REPLAY__DATA_DIR)/zstd_dictionary_v1.bin
export STREAMPULSE_TEST_K8S_CRDS_DIR ?= $(SHARED_DIR)/k8s-crds
# Strimzi's supported Kafka versions (kafka-versions.yaml of the Strimzi release the operator targets)
export STREAMPULSE_TEST_UPSTREAM_DIR ?= $(SHARED_DIR)/upstream
# The Gateway API CRDs (HTTPRoute), fetched from the Go module proxy by `make kube`
export STREAMPULSE_TEST_GATEWAY_API_CRDS_DIR ?= $(STREAMPULSE_CACHE_DIR)/gateway-api-v1.6.3/crds

PYTEST := $(BIN)/pytest
PACKAGES := workers/streampulse operator/streampulse_operator

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# uv installs the same resolution as pip from its cache in seconds (pip: about 110 s warm)
$(BIN)/.installed: pyproject.toml workers/pyproject.toml operator/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip install -q --python $(BIN)/python \
		-e "workers[serving,export,lakehouse]" -e operator --group dev
	touch $@

.PHONY: venv
venv: $(BIN)/.installed ## Create the Python environment (.venv) with the packages and dev tools

.PHONY: kafka
kafka: venv ## Fetch Apache Kafka from Maven Central into the cache
	$(BIN)/streampulse local fetch-kafka

.PHONY: trino
trino: venv ## Fetch Trino and build the Iceberg REST catalog (Maven Central) into the cache; prints progress
	$(BIN)/streampulse local fetch-trino

.PHONY: kube
kube: venv ## Build etcd, kube-apiserver, -controller-manager, -scheduler, kwok and helm v4 (and fetch the Gateway API CRDs) into the cache
	$(BIN)/python -m tests.harness.kube

.PHONY: flink-env
flink-env: ## Build the Flink job's own venv and fetch its connector jars (Kafka, Paimon) into the cache
	$(PYTHON) flink/environment.py > /dev/null

.PHONY: crds
crds: ## Copy the StreamPulse CRD (crds/) into the operator chart
	cp crds/*.yaml charts/streampulse-operator/crds/

.PHONY: chart-lint
chart-lint: kube crds ## helm lint --strict the operator chart
	$(STREAMPULSE_CACHE_DIR)/kube-1.37.2/bin/helm lint --strict charts/streampulse-operator

.PHONY: up
up: venv kafka flink-env ## Run the whole pipeline locally (Ctrl-C or `streampulse down` stops it)
	$(BIN)/streampulse up

.PHONY: lint
lint: venv ## ruff, ruff format --check, mypy --strict, import-linter
	$(BIN)/ruff check workers operator tests flink
	$(BIN)/ruff format --check workers operator tests flink
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: fmt
fmt: venv ## Format and auto-fix
	$(BIN)/ruff format workers operator tests flink
	$(BIN)/ruff check --fix workers operator tests flink

.PHONY: test-unit
test-unit: venv kube ## Unit tests (no network; the Gateway API CRDs come with `make kube`)
	$(PYTEST) tests/unit -m unit

.PHONY: browser
browser: ## Install Chromium (Debian's package) for the dashboard's browser tests, if missing
	@if [ ! -x /usr/bin/chromium ]; then \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q chromium; \
	fi

.PHONY: s3
s3: venv ## Build versitygw (an S3-compatible server for the tests) from the Go module proxy into the cache
	$(BIN)/python -m tests.harness.s3 > /dev/null

.PHONY: deps
deps: venv ## Fetch and build every engine the tests use, in parallel (each is cached once built)
	$(MAKE) --no-print-directory -j5 --output-sync=target kafka kube flink-env s3 browser trino

.PHONY: test-integration
test-integration: venv kafka kube flink-env s3 browser trino ## Integration tests against real local services
	$(PYTEST) --durations=15 tests/integration -m integration

.PHONY: test-e2e
test-e2e: venv kafka kube flink-env browser ## End-to-end tests
	$(PYTEST) --durations=10 tests/e2e -m e2e

.PHONY: test-faults
test-faults: venv kafka kube flink-env s3 browser ## The fault matrix (docs/reliability.md): two tables and one JSON line
	rm -rf test-artifacts/faults
	$(PYTEST) --durations=10 tests/faults -m faults
	$(BIN)/python -m tests.faults.report

.PHONY: test
test: lint deps ## Lint, then every test tier (what CI runs)
	$(MAKE) --no-print-directory test-unit test-integration test-e2e test-faults

.PHONY: bench
bench: bench-ingest bench-models bench-enrich bench-flink bench-operator bench-trino ## Every benchmark

.PHONY: bench-models
bench-models: venv ## Model server: micro-batched HTTP vs in-process ceiling vs unbatched
	$(BIN)/python -m tests.bench.bench_models

.PHONY: bench-enrich
bench-enrich: venv kafka ## Raw -> enrich -> model server -> enriched: tiny models flat out, MiniLM at 70 posts/s
	$(BIN)/python -m tests.bench.bench_enrich

.PHONY: bench-operator
bench-operator: venv kube ## The operator against a real control plane: apply latency, 50 resources, RSS
	$(BIN)/python -m tests.bench.bench_operator

.PHONY: bench-ingest
bench-ingest: venv kafka ## Replay at full speed -> ingest -> real Kafka
	$(BIN)/python -m tests.bench.bench_ingest

.PHONY: clean
clean: ## Remove the venv and tool caches (not $(STREAMPULSE_CACHE_DIR))
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

.PHONY: bench-flink
bench-flink: venv kafka flink-env ## 500k events through the Flink job into Paimon: p1, p2, freshness
	$(BIN)/python -m tests.bench.bench_flink

.PHONY: bench-trino
bench-trino: venv kafka flink-env trino ## The Flink bench's tables through Trino: dashboard and analyst queries, DuckDB beside it
	$(BIN)/python -m tests.bench.bench_trino

.PHONY: test-cluster
test-cluster: venv kafka kube flink-env s3 trino ## The system tier: images built from this clone, the pipeline as real pods on a real cluster, each image's smoke test (docs/cluster.md)
	@rm -f $${STREAMPULSE_TEST_ARTIFACTS_DIR:-test-artifacts}/cluster.json
	@status=0; $(PYTEST) tests/system/test_pipeline.py tests/system/test_images.py \
		tests/system/test_trino_image.py -m system -v -s -p no:cacheprovider || status=$$?; \
		$(BIN)/python -m tests.harness.pipeline.report; exit $$status
