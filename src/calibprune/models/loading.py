"""Resolve ``--model`` (preset, local folder or Hugging Face id) and load it.

The cheap parts (config, tokenizer, a weightless meta-device copy) load separately
from the weights so that bad input is caught before the expensive load.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import CalibpruneError
from .presets import PRESETS, ensure_preset

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Turn ``--model`` into something ``from_pretrained`` accepts.

    Preset names are converted on first use; existing folders are used as they are;
    anything containing a ``/`` is taken as a Hugging Face id. A bare word that is
    neither a preset nor a folder is most likely a typo of a preset, so it is refused.
    """
    text = str(name_or_path)
    if text in PRESETS:
        return str(ensure_preset(text))
    if Path(text).expanduser().is_dir():
        folder = Path(text).expanduser()
        if not (folder / "config.json").exists():
            raise CalibpruneError(
                f"model folder {text!r} has no config.json: pass a folder written by save_pretrained "
                "(or by `calibprune prune --output`)"
            )
        return str(folder)
    if "/" in text and not text.startswith((".", "/", "~")):
        return text  # a hub id; loading it needs network access
    raise CalibpruneError(
        f"model {text!r} is neither a preset nor an existing folder: valid presets are "
        f"{', '.join(PRESETS)}; a Hugging Face id looks like 'org/name'"
    )


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise CalibpruneError(f"dtype {dtype!r} is unknown: use one of {', '.join(_DTYPES)}") from None


def load_config(resolved: str):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(resolved)


def load_tokenizer(resolved: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolved)


def tokenize(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (BOS/EOS are added where needed)."""
    return tokenizer(text, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` as the tokenizer encodes it by default, with its own special
    tokens (BOS where it adds one): how the reference scripts tokenize a whole text
    before scoring it (Min-K%++ ``run.py``, the paper's perplexity filter)."""
    return tokenizer(text, return_attention_mask=False, verbose=False)["input_ids"]


def special_tokens_added(tokenizer) -> dict:
    """What :func:`encode` adds around a text, for the record: ``{"prefix": [...],
    "suffix": [...]}`` (token strings), e.g. ``{"prefix": ["<bos>"], "suffix": []}``."""
    plain, full = tokenize(tokenizer, "a"), encode(tokenizer, "a")
    start = next((i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain), 0)
    return {
        "prefix": tokenizer.convert_ids_to_tokens(full[:start]),
        "suffix": tokenizer.convert_ids_to_tokens(full[start + len(plain) :]),
    }


def load_model(resolved: str, dtype: str | torch.dtype | None = None):
    """Load a causal LM in eval mode. Its config is left untouched (callers pass
    ``use_cache=False`` per call), so a saved copy generates like the original."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolved, dtype=parse_dtype(dtype) or "auto")
    model.eval()
    return model


def meta_model(config):
    """The model's module tree with no weights (shapes only), for planning and validation."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def max_sequence_length(config) -> int | None:
    """Longest sequence the model was built for, if its config says."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
