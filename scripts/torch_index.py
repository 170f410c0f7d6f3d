"""Install the pinned torch from the right wheel index; `make setup` runs it in the environment, before the package.

    python scripts/torch_index.py            # install torch==<pyproject's pin> (nothing to do if it is there)
    python scripts/torch_index.py --dry-run  # only say which index it would use

Where there is no NVIDIA GPU on Linux, PyPI's torch is the CUDA build (527 MB, plus about 3 GB of CUDA libraries
that torch's dependencies pull in); the CPU wheel is 192 MB. So:

- Linux without an NVIDIA GPU: the CPU wheel index, https://download.pytorch.org/whl/cpu;
- Linux with an NVIDIA GPU, macOS, Windows: pip's default index (PyPI: the CUDA build on Linux; CPU/MPS elsewhere).

Override with TORCH_INDEX: `cpu`, a CUDA tag such as `cu126` (or `cuda126`), `pypi` (pip's default index), or an
index URL. When the chosen index cannot be reached (offline, a firewall), torch comes from pip's default index and
find-links instead, with one line saying so. Only torch itself comes from that index (`--no-deps`): its own
dependencies come with the package, from the default index, under constraints.txt. Standard library only.
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import urllib.request
from importlib import metadata
from pathlib import Path

PYTORCH = "https://download.pytorch.org/whl"
ROOT = Path(__file__).resolve().parents[1]


def choose_index(override: str | None, system: str, has_gpu: bool) -> str | None:
    """The index torch is installed from, or None for pip's default index. `override` is TORCH_INDEX."""
    o = (override or "").strip()
    if o.lower() in ("pypi", "default"):
        return None
    if re.match(r"(https?|file)://", o):
        return o.rstrip("/")
    if o.lower() == "cpu":
        return f"{PYTORCH}/cpu"
    if m := re.fullmatch(r"cu(?:da)?(\d{3,})", o.lower()):
        return f"{PYTORCH}/cu{m[1]}"
    if o:
        raise ValueError(f"TORCH_INDEX={o!r}: use cpu, a CUDA tag such as cu126, pypi, or an index URL")
    return f"{PYTORCH}/cpu" if system == "Linux" and not has_gpu else None


def has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia/version").exists()


def reachable(index: str, timeout: float = 5.0) -> bool:
    """Whether the index answers for torch within `timeout` seconds."""
    if index.startswith("file://"):
        return Path(index[len("file://"):]).is_dir()
    try:
        with urllib.request.urlopen(f"{index}/torch/", timeout=timeout) as r:
            return r.status < 400
    except (OSError, ValueError):  # URLError, timeouts and HTTP errors are OSErrors
        return False


def plan(pin: str, override: str | None, system: str, has_gpu: bool, probe=reachable) -> tuple[list[str], str]:
    """(pip arguments after `pip install --no-deps`, one line saying where torch comes from)."""
    index = choose_index(override, system, has_gpu)
    if index is None:
        return [pin], f"torch: {pin} from pip's default index"
    if probe(index):
        return [pin, "--index-url", index], f"torch: {pin} from {index}"
    return [pin], (f"torch: {index} is unreachable; installing {pin} from pip's default index and find-links "
                   f"instead (on Linux, PyPI's wheel is the CUDA build)")


def local_label(index: str) -> str | None:
    """The local version label of the wheels a PyTorch index serves (2.13.0+cpu -> 'cpu'); None when unknown."""
    return index.rsplit("/", 1)[1] if index.startswith(PYTORCH + "/") else None


def torch_pin(pyproject: Path = ROOT / "pyproject.toml") -> str:
    import tomllib

    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return next(d.replace(" ", "") for d in deps if re.match(r"torch\s*==", d))


def installed_torch() -> str | None:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pin, override = torch_pin(), os.environ.get("TORCH_INDEX")
    have = installed_torch()
    version = pin.split("==", 1)[1]
    if have and have.split("+")[0] == version and not override:
        print(f"torch: {have} is installed (TORCH_INDEX=cpu|cu126|pypi|<url> reinstalls it from another index)")
        return 0
    try:
        args, line = plan(pin, override, platform.system(), has_nvidia_gpu())
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(line, flush=True)
    if "--dry-run" in argv:
        return 0
    if have and override:  # another build of the same version (2.13.0+cpu for cu126): pip would keep it
        if "--index-url" in args:
            label = local_label(args[args.index("--index-url") + 1])
        else:  # pypi, or the fallback after an unreachable index (then leave what is installed)
            label = "" if choose_index(override, platform.system(), False) is None else None
        if label is not None and have != version + (f"+{label}" if label else ""):
            args.append("--force-reinstall")
    return subprocess.call([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *args])


if __name__ == "__main__":
    sys.exit(main())
