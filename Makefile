# bertserve: `make run` serves the default models, `make test` runs every test tier.
# Everything is installed here (Python packages into .venv, Debian packages via apt-get).

PYTHON ?= python3
VENV   := .venv
# torch is for building the default models and exporting only, on the CPU: its CPU build
# (754 MB installed), not PyPI's default Linux build, which adds the CUDA libraries (several
# GB). Taken from the configured package sources when they hold it, else from TORCH_INDEX_URL.
# TORCH=torch==2.13.0 takes PyPI's CUDA build, for fine-tuning on a GPU.
TORCH           ?= torch==2.13.0+cpu
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
BIN    := $(VENV)/bin
# Two install levels: serving (and building the default models, which needs the export
# extra: torch, transformers) for `make run`; the test and lint tools on top for the rest.
SERVE_STAMP := $(VENV)/.installed-serve
STAMP       := $(VENV)/.installed-test

.PHONY: install install-test models run test test-unit test-export lint clean system-deps bench bench-smoke reliability soak test-docker readme-examples

$(SERVE_STAMP): pyproject.toml requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# torch first, pinned exactly: an open range would pull the CUDA build
	$(BIN)/pip install -q '$(TORCH)' 2>/dev/null || $(BIN)/pip install -q --extra-index-url '$(TORCH_INDEX_URL)' '$(TORCH)'
	$(BIN)/pip install -q -c requirements/constraints.txt -e '.[export]'
	@touch $@

$(STAMP): $(SERVE_STAMP)
	$(BIN)/pip install -q -c requirements/constraints.txt -e '.[export,test]'
	@touch $@

## install: what serving and the default-model build need; install-test adds test and lint tools
install: $(SERVE_STAMP)
install-test: $(STAMP)

## models: build the default models into models/ (kept when present; FORCE=1 rebuilds; FP16=1 adds
## fp16 variants without a CUDA provider here)
models: $(SERVE_STAMP)
	$(BIN)/python models/build.py $(if $(FORCE),--force) $(if $(FP16),--fp16)

## run: serve the default models on http://127.0.0.1:8000, each as soon as it is built (the embedding
## model first; the others join by live reload as their builds finish)
run: $(SERVE_STAMP)
	$(BIN)/python models/build.py --serve $(if $(FP16),--fp16)

## system-deps: Debian packages the end-to-end tests and benchmarks drive (nginx, wrk)
system-deps:
	@if ! command -v nginx >/dev/null 2>&1 || ! command -v wrk >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null; fi

## test: every tier under tests/: unit, integration and export (tiny models), end to end (the default
## models, real processes); the load tools' smoke runs are bench-smoke's, the Docker tests test-docker's
test: $(STAMP) models system-deps
	$(BIN)/python -m pytest -q -ra

## test-unit: the unit tier alone: no models, no torch or transformers loaded (it fails if they are)
test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

## test-export: the export tier alone: build, export and fine-tune tiny models with torch
test-export: $(STAMP)
	$(BIN)/python -m pytest -q -ra tests/export

## test-docker: build the images from Debian's packages and PyPI alone (no image registry), then run
## docker-compose.yml (two replicas, nginx, Prometheus) and test it, and the export image on a mounted
## checkpoint; starts a Docker engine if none runs
test-docker: $(STAMP) models
	bash tests/docker/engine.sh
	$(BIN)/pip download -q --no-deps -d deploy/docker/wheels '$(TORCH)' 2>/dev/null \
		|| $(BIN)/pip download -q --no-deps -d deploy/docker/wheels --extra-index-url '$(TORCH_INDEX_URL)' '$(TORCH)'
	TEST_DOCKER=1 $(BIN)/python -m pytest -q -ra tests/docker

## bench: the service against the raw engine and the per-request baseline -> docs/benchmarks.md
bench: $(STAMP) models system-deps
	$(BIN)/python -m loadtest.bench --out docs

## bench-smoke: short runs of every load tool (loadtest/tests) on the default models, so that none
## rots; CI runs it as its own step after test
bench-smoke: $(STAMP) models system-deps
	$(BIN)/python -m pytest -q -ra loadtest/tests

## reliability: overload, stall, slow clients and a 3-minute soak -> docs/reliability.md, then again with two
## front ends around an engine process -> docs/reliability-2-front-ends.md
reliability: $(STAMP) models system-deps
	$(BIN)/python -m loadtest.reliability --soak-seconds 180 --out docs
	$(BIN)/python -m loadtest.reliability --soak-seconds 180 --out docs --api-servers 2

## soak: the same with a longer soak (SOAK_SECONDS, default 600), into loadtest/results
soak: $(STAMP) models system-deps
	$(BIN)/python -m loadtest.reliability --soak-seconds $(or $(SOAK_SECONDS),600) --out loadtest/results

## readme-examples: run every example in README.md against a real server on the default models and
## write what it answered below each (docs/examples.py; --check, run by the e2e tests, reports differences)
readme-examples: $(STAMP) models
	$(BIN)/python docs/examples.py --write

## lint: ruff, mypy --strict, the import direction (import-linter), hadolint, compose schema, kubernetes manifests
lint: $(STAMP)
	$(BIN)/ruff check service tests models loadtest
	$(BIN)/ruff format --check service tests models loadtest
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml docker-compose.gpu.yml deploy/compose/checkpoint.yml
	$(BIN)/kubernetes-validate --strict deploy/k8s/*.yaml

clean:
	rm -rf $(VENV) .build models/*/ .pytest_cache .mypy_cache .ruff_cache
