# FlowPilot services. `make run` starts the whole suite; `make test` runs every
# check CI runs. Both set up everything they need on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
BUF := tools/node/node_modules/.bin/buf
STAMP := $(VENV)/.installed-stamp
GEN_STAMP := gen/.stamp
PROTOS := $(shell find protos tests/protos -name '*.proto')

.PHONY: run test lint check-compose pytest token migrate gen clean bench

run: $(STAMP) $(GEN_STAMP)
	$(PY) -m tools.devstack

test: lint pytest

pytest: $(STAMP) $(GEN_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP) $(GEN_STAMP) $(BUF)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BUF) lint
	$(MAKE) --no-print-directory check-compose

# docker-compose.yml is validated, not run (no container engine is needed).
check-compose:
	@if command -v docker-compose >/dev/null 2>&1; then \
		FLOWPILOT_JWT_PUBLIC_KEY=x FLOWPILOT_PAGE_TOKEN_SECRETS=x POSTGRES_PASSWORD=x FLOWPILOT_DB_RUNTIME_PASSWORD=x FLOWPILOT_SESSIONS_SERVICE_KEY=x FLOWPILOT_WALKS_SERVICE_KEY=x \
		docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"; \
	else echo "docker-compose not installed: install it (apt-get install docker-compose) to validate"; exit 1; fi

# Print a dev token: make token ROLE=team_admin [ACCOUNT=uuid] [USER=uuid]
token: $(STAMP) $(GEN_STAMP)
	@$(PY) -m tools.token $(if $(ROLE),--role $(ROLE)) $(if $(ACCOUNT),--account $(ACCOUNT)) $(if $(USER_ID),--user $(USER_ID))

migrate: $(STAMP) $(GEN_STAMP)
	$(PY) -m migrations

gen: $(GEN_STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "import sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()['purelib'], 'flowpilot-src.pth').write_text('$(CURDIR)\n$(CURDIR)/gen\n')"
	touch $@

$(GEN_STAMP): $(STAMP) $(PROTOS) tools/genproto.py
	$(PY) -m tools.genproto --third-party build/third_party
	touch $@

$(BUF): tools/node/package.json tools/node/package-lock.json
	# npm install (not ci): the lock omits other platforms' optional buf binaries.
	cd tools/node && npm install --no-fund --no-audit --loglevel=error
	touch $@

# Speed, scale and memory against the ceilings and a monolith peer (minutes).
bench: $(STAMP) $(GEN_STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf gen build .mypy_cache .ruff_cache .pytest_cache
