# The book's commands. Everything runs inside .venv, built from requirements.lock.
#   make lab    build .venv if needed, then open the book in JupyterLab
#   make test   build .venv if needed, then run every test and every notebook (SMOKE mode)
#               (and install headless Chromium for the page's browser test where this user may: see 'browser')
#   make book   execute every chapter in FULL mode into _build/ (notebooks, HTML, summary table) and write
#               each passing chapter's entry in the results ledger, results/NN_slug.json (commit it)
#               make book CHAPTERS="07 13" runs some; make book STALE=1 runs those whose ledger entry is out of date
#   make stale  list the chapters whose code, helper modules or locks changed since their ledger entry
#   make readme write the README's chapter table from the ledger
#   make serve  serve the saved digits and review models and the GPT (text generation, streamed) at
#               http://127.0.0.1:8000/ (waitress); SERVE_ARGS="--port 8080" passes options
#   make clean  remove .venv, _build/ and caches (downloaded data stays in the cache folder)
#   make lock   re-resolve the dependencies of pyproject.toml into requirements.lock

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lock-sha256
LOCKS  := requirements.lock requirements-nodeps.lock pyproject.toml
LAB_PORT ?= 8888
LAB_ARGS ?=
# JupyterLab refuses to start as root (as in many containers and CI) unless told to.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
CHAPTERS ?=
STALE ?=
PYTEST_ARGS ?=
SERVE_ARGS ?=

.PHONY: lab test book stale readme serve browser clean lock env

# Rebuild .venv from scratch when it is missing or when a lock file changed since it was built.
$(STAMP): $(LOCKS)
	@if [ -d $(VENV) ] && ! sha256sum --check --status $(STAMP) 2>/dev/null; then \
	    echo "lock files changed (or .venv is incomplete): rebuilding $(VENV)"; rm -rf $(VENV); fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@sha256sum $(LOCKS) > $(STAMP)
	@echo "$(VENV) is ready: $$($(BIN)/python --version), packages from requirements.lock"

env: $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=chapters --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) $(ROOT_FLAG) $(LAB_ARGS)

test: $(STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Headless Chromium for the end-to-end test of the service's page (chapter 11): Debian's packages, installed
# when missing and this user may install them (root, as in CI containers, or password-less sudo). Otherwise
# nothing is installed and the browser test is skipped with a note saying how to install it.
BROWSER_PKGS := chromium chromium-driver
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing $(BROWSER_PKGS) (Debian packages) for the browser test"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PKGS) >/dev/null; } \
	    || echo "warning: could not install $(BROWSER_PKGS): the browser test will be skipped"; \
	elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	    echo "installing $(BROWSER_PKGS) (Debian packages, with sudo) for the browser test"; \
	    { sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PKGS) >/dev/null; } \
	    || echo "warning: could not install $(BROWSER_PKGS): the browser test will be skipped"; \
	else echo "note: no headless Chromium here and no permission to install it: the browser test will be skipped"; fi

book: $(STAMP)
	$(BIN)/python -m bigmodel_utils.book run $(if $(STALE),--stale,) $(CHAPTERS)

stale: $(STAMP)
	$(BIN)/python -m bigmodel_utils.book stale

readme: $(STAMP)
	$(BIN)/python -m bigmodel_utils.book readme

serve: $(STAMP)
	$(BIN)/python -m bigmodel_utils.serving $(SERVE_ARGS)

lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet .
	{ head -n 3 requirements.lock; .lock-venv/bin/python -m pip freeze --exclude bigmodel-utils | sort -f; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv build *.egg-info
	@echo "requirements.lock updated: run 'make test', then commit it"

clean:
	rm -rf $(VENV) _build .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
