# FlowPilot services. `make run` starts the whole suite; `make test` runs every
# check CI runs. Both set up everything they need on a fresh machine.
# `make help` lists the targets (the `## ` comments below).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
BUF := tools/node/node_modules/.bin/buf
REDOCLY := tools/node/node_modules/.bin/redocly
# The gateway's /docs page: Redoc's standalone bundle, from npm (not committed).
REDOC_BUNDLE := gateway/static/redoc.standalone.js
STAMP := $(VENV)/.installed-stamp
GEN_STAMP := gen/.stamp
PROTOS := $(shell find protos tests/protos -name '*.proto')

.PHONY: help run test test-fast lint check-gen check-compose check-kubernetes check-openapi pytest token keys migrate gen clean bench
.DEFAULT_GOAL := help

help: ## this list
	@echo "FlowPilot: make TARGET [VAR=value]"
	@awk -F ':.*## ' '/^[a-z-]+:.*## / { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
	@echo 'grpcurl (and every other dev tool) is in $(BIN)/: export PATH="$$PWD/$(BIN):$$PATH"'

run: $(STAMP) $(GEN_STAMP) $(REDOC_BUNDLE) ## the whole suite in the foreground (embedded PostgreSQL unless DATABASE_URL); Ctrl-C stops it
	$(PY) -m tools.devstack

test: lint pytest ## every check CI runs: lint, then the whole pytest suite

pytest: $(STAMP) $(GEN_STAMP) $(REDOC_BUNDLE) ## the pytest suite only (PYTEST_ARGS=... passes arguments on)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) $(GEN_STAMP) $(REDOC_BUNDLE) ## the inner loop: pytest without the slow tests (no lint)
	$(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)

lint: $(STAMP) $(GEN_STAMP) $(BUF) ## ruff, mypy, buf lint, hadolint, gen/ current, OpenAPI, compose and Kubernetes checks
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BUF) lint
	$(BIN)/hadolint Dockerfile
	$(MAKE) --no-print-directory check-gen
	$(MAKE) --no-print-directory check-openapi
	$(MAKE) --no-print-directory check-compose
	$(MAKE) --no-print-directory check-kubernetes

# Regenerates into a temporary directory and compares (writes nothing): a
# gen/ edited by hand, or older than protos/, pyproject.toml's pins or the
# code generator, fails with the stale files named.
check-gen: $(STAMP) ## check that gen/ is what protos/ produce now (tools/genproto.py --check)
	$(PY) -m tools.genproto --check

# The gateway's OpenAPI document, written as the gateway serves it (no
# backends needed), linted with Redocly's recommended rules (redocly.yaml;
# the exceptions and why are there and in .redocly.lint-ignore.yaml).
check-openapi: $(STAMP) $(GEN_STAMP) $(BUF) ## write build/openapi.json and lint it with Redocly (recommended rules)
	$(PY) -m gateway.openapi build/openapi.json
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true $(REDOCLY) lint --format=stylish build/openapi.json

# docker-compose.yml is validated, not run (no container engine is needed),
# with the placeholders of .env.example for its required variables.
check-compose: ## validate docker-compose.yml (needs Debian's docker-compose)
	@if command -v docker-compose >/dev/null 2>&1; then \
		docker-compose --env-file .env.example -f docker-compose.yml config -q && echo "docker-compose.yml: valid"; \
	else echo "docker-compose not installed: install it (apt-get install docker-compose) to validate"; exit 1; fi

# deploy/kubernetes: the dev overlay as kubectl builds it, against the
# Kubernetes schemas bundled with kubernetes-validate (offline). The suite's
# own rules for the manifests are in tests/test_kubernetes.py.
check-kubernetes: $(STAMP) ## build deploy/kubernetes/overlays/dev and validate it (needs kubectl)
	@if command -v kubectl >/dev/null 2>&1; then \
		mkdir -p build && kubectl kustomize deploy/kubernetes/overlays/dev > build/kubernetes-dev.yaml \
		&& $(BIN)/kubernetes-validate --strict --quiet -k 1.28.0 build/kubernetes-dev.yaml \
		&& echo "deploy/kubernetes: valid"; \
	else echo "kubectl not installed: install it (apt-get install kubernetes-client) to validate"; exit 1; fi

# Print a dev token: make token ROLE=team_admin [ACCOUNT=uuid] [USER_ID=uuid]
token: $(STAMP) $(GEN_STAMP) ## print a dev token: ROLE=viewer|engineer|team_admin|super_admin ACCOUNT=uuid USER_ID=uuid
	@$(PY) -m tools.token $(if $(ROLE),--role $(ROLE)) $(if $(ACCOUNT),--account $(ACCOUNT)) $(if $(USER_ID),--user $(USER_ID))

keys: $(STAMP) ## write .env for docker-compose: issuer and service key pairs, page-token secret, passwords (FORCE=1 replaces it)
	@$(PY) -m tools.keys $(if $(FORCE),--force) $(if $(KEYS_OUTPUT),--output $(KEYS_OUTPUT))

migrate: $(STAMP) $(GEN_STAMP) ## migrate the database named by FLOWPILOT_ADMIN_DATABASE_URL
	$(PY) -m migrations

gen: $(GEN_STAMP) ## regenerate gen/ from protos/

$(STAMP): pyproject.toml
	@echo "==> installing Python dependencies into $(VENV) (about a minute on a fresh machine)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# gen/ is the flowpilot-protos distribution, installed editable: a
# regeneration is seen without reinstalling, and reinstalling here picks up a
# new top-level package. The warning filter quiets setuptools' notice about
# editable installs; the rm drops the .pth that earlier Makefiles wrote.
$(GEN_STAMP): $(STAMP) $(PROTOS) tools/genproto.py
	@echo "==> generating gen/ from protos/"
	$(PY) -m tools.genproto --third-party build/third_party
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet --no-deps -e gen
	rm -f "$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/flowpilot-src.pth"
	touch $@

$(BUF): tools/node/package.json tools/node/package-lock.json
	@echo "==> installing buf, Redocly CLI and Redoc (npm)"
	# npm install (not ci): the lock omits other platforms' optional buf binaries.
	cd tools/node && npm install --no-fund --no-audit --loglevel=error
	touch $@

$(REDOC_BUNDLE): $(BUF)
	mkdir -p $(@D)
	cp tools/node/node_modules/redoc/bundles/redoc.standalone.js $@

# Speed, scale and memory against the ceilings and a monolith peer (minutes).
bench: $(STAMP) $(GEN_STAMP) ## benchmark against the ceilings and a monolith peer (minutes; BENCH_ARGS=...)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m bench $(BENCH_ARGS)

clean: ## remove generated code and caches (not .venv, not .dev)
	rm -rf gen build .mypy_cache .ruff_cache .pytest_cache
