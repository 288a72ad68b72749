# The book's commands. Everything runs inside .venv, built from requirements.lock.
#   make lab    build .venv if needed, then open the book in JupyterLab (LAB_PORT=8888, LAB_ARGS="...")
#   make test   build .venv if needed, then run every test and every notebook (SMOKE mode), on every core
#               (TEST_JOBS=0: one after another), and print the time it took
#   make test-fast  the unit tests only, for the edit-test loop (under two minutes; CI runs 'make test')
#               (and install headless Chromium for the page's browser test where this user may: see 'browser')
#   make book   execute every chapter in FULL mode into _build/ (notebooks, HTML, summary table) and write
#               each passing chapter's entry in the results ledger, results/NN_slug.json (commit it); then build
#               the book's site, _build/site/index.html (as 'make site')
#               make book CHAPTERS="07 13" runs some; make book STALE=1 runs those whose ledger entry is out of date
#   make site   build the book's web site from the executed FULL notebooks in _build/notebooks (Sphinx, offline);
#               make site SITE_ARGS="--notebooks _build/smoke/chapters" builds it from make test's SMOKE copies
#   make stale  list the chapters whose code, helper modules or locks changed since their ledger entry
#   make readme write the README's chapter table from the ledger
#   make serve  serve the saved digits and review models and the GPT (text generation, streamed) at
#               http://127.0.0.1:8000/ (waitress); SERVE_ARGS="--port 8080" passes options
#   make clean  remove .venv, _build/ and caches (downloaded data stays in the cache folder)
#   make lock   resolve the dependencies of pyproject.toml into requirements.lock, keeping every version already
#               pinned there (a new dependency does not upgrade TensorFlow); make lock UPGRADE=1 re-resolves all

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
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
SERVE_ARGS ?=
SITE_ARGS ?=
UPGRADE ?=

.PHONY: lab test test-fast book site stale readme serve browser clean lock env

# requirements.lock is a whole environment (make lock freezes one), so it is installed with --no-deps: exactly
# what it pins and nothing else. It leaves out LOCK_EXCLUDE: rfc3987-syntax (and lark, which only it needs), which
# jsonschema's format-nongpl extra (asked for by jupyter-events) uses to check IRIs; it compiles some 35 Earley
# parsers when imported, 1.7 s in every process that imports nbformat (each notebook papermill runs, JupyterLab,
# the test workers), and nothing here validates an IRI (jsonschema issue #1428). jsonschema skips it when absent.
LOCK_EXCLUDE := rfc3987-syntax lark

# Rebuild .venv from scratch when it is missing or when a lock file changed since it was built. JupyterLab's
# settings for the book (jupyter/overrides.json: no "Jupyter news" question, no update check, so opening the book
# asks nothing of the internet) go where JupyterLab reads an environment's defaults; a learner's own settings win.
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json
$(STAMP): $(LOCKS) jupyter/overrides.json
	@if [ -d $(VENV) ] && ! sha256sum --check --status $(STAMP) 2>/dev/null; then \
	    echo "lock files changed (or .venv is incomplete): rebuilding $(VENV)"; rm -rf $(VENV); fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# In two halves at once (tensorflow and every third other pin; the rest): pip installs one package after another
	@# on one core, 72 s here, 44 s so. --no-deps makes the halves independent (no two pins share a file).
	@grep -E '^[A-Za-z0-9_.-]+==' requirements.lock | grep -v '^tensorflow==' > $(VENV)/.others.txt; \
	{ grep -E '^tensorflow==' requirements.lock; awk 'NR % 3 == 0' $(VENV)/.others.txt; } > $(VENV)/.half-1.txt; \
	awk 'NR % 3 != 0' $(VENV)/.others.txt > $(VENV)/.half-2.txt; \
	echo "$(BIN)/python -m pip install --quiet --no-deps -r requirements.lock (in two halves, side by side)"; \
	$(BIN)/python -m pip install --quiet --no-deps -r $(VENV)/.half-1.txt & one=$$!; \
	$(BIN)/python -m pip install --quiet --no-deps -r $(VENV)/.half-2.txt & two=$$!; \
	trap 'kill $$one $$two 2>/dev/null; exit 130' INT TERM HUP; \
	wait $$one; a=$$?; wait $$two; b=$$?; rm -f $(VENV)/.others.txt $(VENV)/.half-1.txt $(VENV)/.half-2.txt; \
	test $$a = 0 -a $$b = 0 || { echo "installing requirements.lock failed (see pip's message above)"; exit 1; }
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	mkdir -p $(dir $(LAB_OVERRIDES)) && cp jupyter/overrides.json $(LAB_OVERRIDES)
	@sha256sum $(LOCKS) > $(STAMP)
	@echo "$(VENV) is ready: $$($(BIN)/python --version), packages from requirements.lock"

env: $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=chapters --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) $(ROOT_FLAG) $(LAB_ARGS)

# The environment and the browser are made side by side (pip works the CPU, apt-get mostly waits on the network).
# Tests run on TEST_JOBS workers (pytest-xdist; every core, at most 4): notebooks that share saved models stay on
# one worker (tests/test_notebooks.py), each worker has its own cache. TEST_JOBS=0 runs them one after another.
test:
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory -j2 env browser && \
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadgroup $(PYTEST_ARGS); rc=$$?; \
	secs=$$(( $$(date +%s) - start )); mkdir -p _build; \
	echo "{\"seconds\": $$secs, \"jobs\": \"$(TEST_JOBS)\", \"status\": $$rc, \"date\": \"$$(date -u +%FT%TZ)\"}" > _build/make-test.json; \
	$(BIN)/python -m bigmodel_utils.timings > /dev/null 2>&1 || true; \
	echo "make test: $$secs s in all (environment, browser and tests; TEST_JOBS=$(TEST_JOBS)), exit status $$rc; where the time went: _build/timings.md"; \
	exit $$rc

# The edit-test loop: the unit tests only (no notebook, browser, JupyterLab or server and worker processes: the
# tests marked 'slow'), in under two minutes. Not a substitute for 'make test', which CI runs.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadgroup -m "not slow" $(PYTEST_ARGS)

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

site: $(STAMP)
	$(BIN)/python -m bigmodel_utils.site build $(SITE_ARGS)

stale: $(STAMP)
	$(BIN)/python -m bigmodel_utils.book stale

readme: $(STAMP)
	$(BIN)/python -m bigmodel_utils.book readme

serve: $(STAMP)
	$(BIN)/python -m bigmodel_utils.serving $(SERVE_ARGS)

lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	$(if $(UPGRADE),.lock-venv/bin/python -m pip install --quiet .,grep -E '^[A-Za-z0-9_.-]+==' requirements.lock > .lock-constraints.txt && .lock-venv/bin/python -m pip install --quiet -c .lock-constraints.txt . && rm -f .lock-constraints.txt)
	{ head -n 3 requirements.lock; .lock-venv/bin/python -m pip freeze --exclude bigmodel-utils $(addprefix --exclude ,$(LOCK_EXCLUDE)) | sort -f; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv build *.egg-info
	@echo "requirements.lock updated: run 'make test', then commit it"

clean:
	rm -rf $(VENV) _build .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
