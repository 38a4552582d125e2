# modeldeploy — everyday targets. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
SINCE ?= 1h
STACK := $(PY) dev/stack.py

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	@dev/build-tools.sh --system-deps python3-venv
	python3 -m venv $(VENV)
	@echo "[install $$(date +%H:%M:%S)] Python packages into $(VENV) (first time: about 4 min; later: seconds)"
	$(VENV)/bin/pip install -q --upgrade 'pip>=25.1'
	$(VENV)/bin/pip install -q -e . --group dev
	@echo "[install $$(date +%H:%M:%S)] done"
	touch $@

.PHONY: install
install: $(VENV)/.installed ## Create .venv with the package and its test/lint dependencies

.PHONY: system-deps
system-deps: ## Install the missing Debian packages the stack runs (prometheus, alertmanager, venv; as root)
	@dev/build-tools.sh --system-deps

.PHONY: tools
tools: system-deps ## Build the pinned control-plane binaries, kwok, helm, etcd and dev/kstatus (cached outside the repo)
	dev/build-tools.sh

.PHONY: stack-up
stack-up: system-deps install tools ## Start cluster (kwok), MLflow, Prometheus, Alertmanager, Pushgateway; writes .stack/env
	$(STACK) up

.PHONY: stack-down
stack-down: ## Stop everything stack-up started
	@if [ -x $(PY) ]; then $(STACK) down; else echo "no .venv: nothing was started"; fi

.PHONY: stack-status
stack-status: install ## Show what the local stack runs and where
	$(STACK) status

.PHONY: test
test: system-deps install tools ## Run every test tier (unit, integration, e2e); starts the stack parts it needs
	$(VENV)/bin/pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: install ## Run the unit tests only (no real parts needed)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

IMAGE_SYSTEM_PACKAGES = $(shell . dev/versions.env && echo $$IMAGE_SYSTEM_PACKAGES)

.PHONY: images
images: ## Build the operator and serving images with podman (layers cached outside the repo); prints their sizes
	@dev/build-tools.sh --system-deps $(IMAGE_SYSTEM_PACKAGES)
	python3 dev/container_images.py build

.PHONY: test-images
test-images: system-deps install tools ## Build both images and run them: serving on a model, the operator with the chart's RBAC
	@dev/build-tools.sh --system-deps $(IMAGE_SYSTEM_PACKAGES)
	$(VENV)/bin/pytest tests/images -m images $(PYTEST_ARGS)

.PHONY: lint
lint: install ## ruff (lint + format check), mypy strict, import-linter layering
	$(VENV)/bin/ruff check operator tests dev benchmarks examples
	$(VENV)/bin/ruff format --check operator tests dev benchmarks examples
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) dev/sync-chart.py --check
	$(PY) dev/dashboards.py --check

.PHONY: fmt
fmt: install ## Format and auto-fix with ruff
	$(VENV)/bin/ruff format operator tests dev benchmarks examples
	$(VENV)/bin/ruff check --fix operator tests dev benchmarks examples

.PHONY: run
run: install ## Run the operator against the local stack (make stack-up first)
	source .stack/env && $(VENV)/bin/modeldeploy operator

.PHONY: demo
demo: stack-up ## Bring up the stack, deploy a model, move @champion and watch it roll out
	$(PY) dev/demo.py

.PHONY: bench
bench: system-deps install tools ## Run the benchmarks, rewrite docs/benchmarks.md (ONLY="rollback operator_scale": only those)
	@if [ -z "$(ONLY)" ] || [[ " $(ONLY) " == *" serving"* ]]; then \
	  command -v wrk >/dev/null || { echo "the serving benchmarks need wrk: apt-get install -y wrk"; exit 1; }; fi
	$(PY) benchmarks/run_all.py $(if $(ONLY),--only $(ONLY))

.PHONY: dashboards
dashboards: install ## Regenerate the Grafana dashboards in charts/modeldeploy/dashboards/ (a test checks them)
	$(PY) dev/dashboards.py

.PHONY: dashboard-pictures
dashboard-pictures: install ## Draw every dashboard panel from the stack's Prometheus into docs/dashboards/ (SINCE=1h)
	$(PY) dev/dashboard_pictures.py --out docs/dashboards --since $(SINCE)

.PHONY: chart-sync
chart-sync: ## Copy crds/ into the Helm chart and manifests/crds (generated copies; a test checks them)
	$(PY) dev/sync-chart.py
