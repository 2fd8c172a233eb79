# booking-gateway: `make run` sets up and starts the gateway on the embedded local AWS;
# `make test` sets up and runs every check. Both work on a fresh machine with python3 (3.11+) and npm.

SHELL := /bin/bash
PYTHON ?= python3
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv
UV_VERSION := 0.13.8
UV := .cache/uv-bootstrap/bin/uv
VENV_BIN := .venv/bin
WEB_CLIENT := clients/web
WEB_SOURCES := $(addprefix $(WEB_CLIENT)/,index.html vite.config.ts tsconfig.json buf.gen.yaml) \
	$(wildcard $(WEB_CLIENT)/src/*.ts $(WEB_CLIENT)/src/*.css $(WEB_CLIENT)/public/* $(WEB_CLIENT)/proto/google/rpc/*.proto) \
	$(wildcard protos/booking/v1/*.proto)

NODE_CLIENT := clients/node
NODE_GEN := $(NODE_CLIENT)/src/gen

.PHONY: setup run test browser lint deploy-lint buf-breaking typecheck buf-lint stubs-check protos settings-docs pytest bench clean

setup: .venv/.synced node_modules/.installed $(NODE_CLIENT)/node_modules/.installed $(WEB_CLIENT)/dist/.built

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

# The browser chat's packages (connect-web, protoc-gen-es, Vite, playwright-core), exact pins from its lock file.
$(WEB_CLIENT)/node_modules/.installed: $(WEB_CLIENT)/package.json $(WEB_CLIENT)/package-lock.json
	cd $(WEB_CLIENT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The browser chat, built into clients/web/dist (served by the web face): buf generate, tsc, vite build.
$(WEB_CLIENT)/dist/.built: $(WEB_CLIENT)/node_modules/.installed $(WEB_SOURCES)
	cd $(WEB_CLIENT) && npm run --silent build
	touch $@

# The browser tests drive Debian's Chromium (no browser download is possible); root installs it when missing.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "Chromium is missing: install it with 'sudo apt-get install -y chromium'" >&2; exit 1; \
	  fi; \
	fi

## Start the gateway on the embedded local AWS (moto); one-time codes are printed on this console.
run: setup
	$(VENV_BIN)/gateway serve --log-format text

## Every check CI runs.
test: setup browser lint typecheck buf-lint stubs-check pytest

lint: setup
	$(VENV_BIN)/ruff check .
	$(VENV_BIN)/ruff format --check .
	$(VENV_BIN)/python scripts/check_sleeps.py
	@$(MAKE) --no-print-directory deploy-lint
	@$(MAKE) --no-print-directory buf-breaking

# deploy/: cfn-lint on the CloudFormation template, hadolint on the Dockerfile, the Kubernetes schemas on the
# manifests, and checkov on all three (each finding fixed, or skipped inline with its reason). checkov's
# dependencies clash with the dev environment's (packaging), so it runs in a tool environment of its own.
CHECKOV_VERSION := 3.3.30
KUBERNETES_MANIFESTS = $(filter-out %/kustomization.yaml,$(wildcard deploy/kubernetes/*.yaml))
deploy-lint: setup
	$(VENV_BIN)/cfn-lint deploy/aws/booking-gateway.yaml
	$(VENV_BIN)/hadolint deploy/Dockerfile
	$(VENV_BIN)/kubernetes-validate --strict --quiet $(KUBERNETES_MANIFESTS)
	$(UV) tool run --quiet --python $(PYTHON) --from checkov==$(CHECKOV_VERSION) checkov --quiet --compact \
		--skip-download -d deploy --framework cloudformation dockerfile kubernetes

# The contract stays wire-compatible with the one clients already use: buf's FILE rules against the previous
# commit (on main, the last one landed; `make buf-breaking BREAKING_AGAINST=main` checks a branch against main).
# Without that commit (a shallow clone, an export without history) there is nothing to compare: say so and pass.
BREAKING_AGAINST ?= HEAD~1
buf-breaking: setup
	@if git rev-parse --verify --quiet '$(BREAKING_AGAINST)^{commit}' >/dev/null; then \
	  echo "npx --no-install buf breaking --against '.git#ref=$(BREAKING_AGAINST)'"; \
	  npx --no-install buf breaking --against '.git#ref=$(BREAKING_AGAINST)'; \
	else \
	  echo "buf breaking skipped: no commit $(BREAKING_AGAINST) to compare the contract with (shallow clone or no git history)"; \
	fi

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

## Rewrite the settings table in docs/configuration.md after changing an option (a test fails while it is stale).
settings-docs: setup
	$(VENV_BIN)/python -m gateway.config --write-docs

## Two pytest workers (pytest-xdist), each with its own emulator and gateway: most of the suite waits on servers.
## `make pytest PYTEST_WORKERS=0` runs it in one process.
PYTEST_WORKERS ?= 2
pytest: setup browser
	$(VENV_BIN)/pytest -n $(PYTEST_WORKERS)

bench: setup
	$(VENV_BIN)/python -m bench

clean:
	rm -rf .venv .cache node_modules $(NODE_CLIENT)/node_modules \
		$(WEB_CLIENT)/node_modules $(WEB_CLIENT)/dist $(WEB_CLIENT)/src/gen .mypy_cache .ruff_cache .pytest_cache
