"""Project-shape checks: dependencies agree, notebooks are committed stripped and follow the template."""
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _name(req: str) -> str:
    return re.split(r"[=<>!~ \[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_and_pyproject_name_the_same_dependencies():
    """environment.yml's pip list: pyproject's dependencies and its [lab] extra, then the package itself."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["lab"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip[-1] == "-e .[lab]"
    options = [d for d in pip if d.startswith("-")]  # the CPU torch index, the constraints, the package
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cpu", "-c constraints.txt", "-e .[lab]"]
    reqs = [d for d in pip if not d.startswith("-")]
    assert {_name(d): d.replace(" ", "") for d in deps} == {_name(d): d.replace(" ", "") for d in reqs}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped_and_follows_the_template(nb):
    cells = json.loads(nb.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code), "commit notebooks stripped"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "profile" in "".join(tagged[0]["source"])
    intro = "".join(cells[0]["source"])
    assert all(word in intro for word in ("**Goal.**", "**Inputs.**", "**Outputs.**"))
    assert any("sn.config.load(" in "".join(c["source"]) for c in code), "parameters are validated in the notebook"
