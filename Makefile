# asyncgate developer tasks. Everything installs itself on first use: `make test` on a fresh clone works.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 3000
PYTEST_WORKERS ?= 2
# Generated cases of `make fuzz` (`make test` runs the same fuzzing with 300).
FUZZ_CASES ?= 1000
# Executions of `make soak` (`make test` runs a soak of 300).
N ?= 10000

SAM_VENV := .tools/sam
SAM := $(SAM_VENV)/bin/sam

# mypy over the code directories that exist. Every function is `functions/<name>/app.py`; with
# explicit_package_bases (pyproject.toml) each is checked as module `functions.<name>.app`.
MYPY_DIRS := $(wildcard layers/asyncgate/asyncgate src/asyncgate_dev src/asyncgate_client functions tests bench chaos)

.PHONY: install lint format test unit integration e2e fuzz openapi bench soak chaos dev demo build clean

$(VENV)/.installed: pyproject.toml
	@if [[ ! -x "$(PY)" ]]; then python3 -m venv "$(VENV)"; fi
	"$(PY)" -m pip install --quiet --upgrade pip
	"$(PY)" -m pip install --quiet -e '.[dev]'
	touch "$@"

install: $(VENV)/.installed

lint: install
	"$(VENV)/bin/ruff" check .
	"$(VENV)/bin/ruff" format --check .
	"$(VENV)/bin/mypy" $(MYPY_DIRS)
	"$(VENV)/bin/cfn-lint" template.yaml

format: install
	"$(VENV)/bin/ruff" format .
	"$(VENV)/bin/ruff" check --fix .

test: install
	$(MAKE) --no-print-directory lint
	"$(VENV)/bin/pytest" -n $(PYTEST_WORKERS) tests

unit: install
	"$(VENV)/bin/pytest" tests/unit

integration: install
	"$(VENV)/bin/pytest" -n $(PYTEST_WORKERS) tests/integration

e2e: install
	"$(VENV)/bin/pytest" -n $(PYTEST_WORKERS) tests/e2e

# Schemathesis against the local stack, longer than the run in `make test`.
fuzz: install
	ASYNCGATE_FUZZ_CASES=$(FUZZ_CASES) "$(VENV)/bin/pytest" -n $(PYTEST_WORKERS) tests/e2e/test_fuzz.py

# docs/openapi.json from the wire models (tests/unit/test_openapi.py fails while it is stale).
openapi: install
	"$(PY)" -m asyncgate.api.openapi > docs/openapi.json.new
	mv docs/openapi.json.new docs/openapi.json

bench: install
	"$(PY)" -m bench.run

# The fault matrix: every fault injected into the real handlers on the local stack, its executions
# checked against the invariants; exits non-zero on any violation (`make test` runs a short one).
# FAULTS=a,b picks faults (`$(PY) -m chaos --list`), EXECUTIONS=N sets the executions per fault.
chaos: install
	"$(PY)" -m chaos $(if $(FAULTS),--faults $(FAULTS)) $(if $(EXECUTIONS),--executions $(EXECUTIONS))

# N executions through the local stack, then nothing lost, stuck or charged twice (issue 13).
soak: install
	"$(PY)" -m bench.soak --n $(N)

dev: install
	"$(VENV)/bin/asyncgate" dev --port $(PORT)

demo: install
	"$(PY)" -m asyncgate_dev.demo

# SAM CLI lives in its own virtualenv (its pins clash with the project's). `sam build` needs the
# runtime's Python (3.13) on PATH: taken from pyenv.
$(SAM):
	mkdir -p .tools
	python3 -m venv "$(SAM_VENV)"
	"$(SAM_VENV)/bin/python" -m pip install --quiet --upgrade pip
	"$(SAM_VENV)/bin/python" -m pip install --quiet aws-sam-cli

build: $(SAM)
	@py313=""; \
	if command -v pyenv >/dev/null 2>&1 && prefix="$$(pyenv prefix 3.13 2>/dev/null)"; then \
	  py313="$$prefix/bin"; \
	else \
	  for candidate in $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin /usr/local/bin /usr/bin; do \
	    if [[ -x "$$candidate/python3.13" ]]; then py313="$$candidate"; break; fi; \
	  done; \
	fi; \
	if [[ -z "$$py313" || ! -x "$$py313/python3.13" ]]; then \
	  echo "make build: no CPython 3.13 found (install it with 'pyenv install 3.13' or your package manager)" >&2; \
	  exit 1; \
	fi; \
	export PATH="$$py313:$$PATH" SAM_CLI_TELEMETRY=0; \
	"$(SAM)" validate --lint; \
	"$(SAM)" build

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -path ./.tools -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
