# The workshop room: participants start at the safety-training notebooks from the instructor's data, backdoors and
# evaluations. Included by the Makefile; see docs/workshop.md.

.PHONY: workshop-prep workshop-pack workshop-unpack

# Tarball of prepared artifacts (workshop-pack / workshop-unpack).
PACK ?= results/$(PROFILE_NAME)-prepared.tar.gz

workshop-prep: setup ## build the data, the backdoored models and their evaluation once (01-03), for the room
	@$(MAKE) --no-print-directory evaluate PROFILE=$(PROFILE)
	@echo "prepared in $(R)/seed<N>/: data/, <run>/backdoor/ and <run>/evaluate/ for seeds $(SEEDS), runs: $(RUNS)"
	@echo "to share them: make workshop-pack PROFILE=$(PROFILE)   (writes $(PACK))"
	@echo "each participant, in a clone of the same commit:"
	@echo "  make setup && make workshop-unpack PROFILE=$(PROFILE) PACK=<the tarball> && make safety PROFILE=$(PROFILE)"

# The parameter stamps (.params) travel with the results: unchanged parameters then leave the steps up to date.
# Checkpoints stay behind (they only resume an interrupted training). The evaluation cache goes along: on the same
# commit, the safety notebooks' step 0 (the backdoored model's rates) is then read, not measured again.
workshop-pack: | $(SETUP_STAMP) ## tar the prepared data, backdoors, evaluations -> results/<profile>-prepared.tar.gz
	@$(MAKE) --no-print-directory evaluate PROFILE=$(PROFILE)
	tar -czf $(PACK).tmp --exclude=checkpoints --exclude=.lock $(P) $(foreach c,$(CHAINS),$(c)/data \
	  $(foreach r,$(RUNS),$(c)/$(r)/backdoor $(c)/$(r)/evaluate)) $$(ls $(R)/seed*/notebooks/0[123]_*.ipynb 2>/dev/null) \
	  $$(ls -d $(R)/seed*/*/eval_cache 2>/dev/null)
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
