# booking-gateway: `make run` sets up and starts the gateway on the embedded local AWS;
# `make test` sets up and runs every check. Both work on a fresh machine with python3 (3.11+) and npm.

SHELL := /bin/bash
PYTHON ?= python3
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv
UV_VERSION := 0.13.8
UV := .cache/uv-bootstrap/bin/uv
VENV_BIN := .venv/bin

NODE_CLIENT := clients/node
NODE_GEN := $(NODE_CLIENT)/src/gen

.PHONY: setup run test lint typecheck buf-lint stubs-check protos pytest bench clean

setup: .venv/.synced node_modules/.installed $(NODE_CLIENT)/node_modules/.installed

$(UV):
	$(PYTHON) -m venv .cache/uv-bootstrap
	.cache/uv-bootstrap/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --extra dev --python $(PYTHON)
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The Node client's own packages (connect-node, protoc-gen-es, tsx, typescript), exact pins from its lock file.
$(NODE_CLIENT)/node_modules/.installed: $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json
	cd $(NODE_CLIENT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## Start the gateway on the embedded local AWS (moto); one-time codes are printed on this console.
run: setup
	$(VENV_BIN)/gateway serve --log-format text

## Every check CI runs.
test: setup lint typecheck buf-lint stubs-check pytest

lint: setup
	$(VENV_BIN)/ruff check .
	$(VENV_BIN)/ruff format --check .

typecheck: setup
	$(VENV_BIN)/mypy
	cd $(NODE_CLIENT) && node_modules/.bin/tsc --noEmit -p .

buf-lint: setup
	npx --no-install buf lint
	npx --no-install buf format --diff --exit-code

stubs-check: setup
	$(VENV_BIN)/python scripts/gen_protos.py --check
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  npx --no-install buf generate --template $(NODE_CLIENT)/buf.gen.yaml -o "$$tmp" && \
	  diff -r "$$tmp/$(NODE_GEN)" $(NODE_GEN) >/dev/null || \
	  { echo "$(NODE_GEN) is stale: run 'make protos' and commit the result"; exit 1; }

## Regenerate the checked-in stubs after changing protos/.
protos: setup
	$(VENV_BIN)/python scripts/gen_protos.py
	npx --no-install buf generate --template $(NODE_CLIENT)/buf.gen.yaml

pytest: setup
	$(VENV_BIN)/pytest

bench: setup
	$(VENV_BIN)/python -m bench

clean:
	rm -rf .venv .cache node_modules $(NODE_CLIENT)/node_modules .mypy_cache .ruff_cache .pytest_cache
