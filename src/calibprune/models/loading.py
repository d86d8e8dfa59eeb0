"""Resolve ``--model`` (preset, local folder or Hugging Face id) and load it.

The cheap parts (config, tokenizer, a weightless meta-device copy) load separately
from the weights so that bad input is caught before the expensive load.
"""

from __future__ import annotations

import contextlib
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


def model_folder(name_or_path: str | os.PathLike) -> str | None:
    """The local folder ``--model`` reads, or None for a preset or a hub id."""
    text = str(name_or_path)
    return None if text in PRESETS or not Path(text).expanduser().is_dir() else text


def resolve_model(name_or_path: str | os.PathLike, probe_hub: bool = True) -> str:
    """Turn ``--model`` into something ``from_pretrained`` accepts.

    Preset names are converted on first use; existing folders are used as they are;
    anything containing a ``/`` is taken as a Hugging Face id, which must be cached or
    the hub reachable now (``probe_hub=False``: its form is enough, e.g. to validate a
    study spec meant for another machine). A bare word that is neither a preset nor a
    folder is most likely a typo of a preset, so it is refused.
    """
    text = str(name_or_path)
    if text in PRESETS:
        return str(ensure_preset(text))
    if Path(text).expanduser().is_dir():
        folder = Path(text).expanduser()
        if not (folder / "config.json").exists():
            raise CalibpruneError(
                f"model folder {text!r} has no config.json: pass a folder written by save_pretrained "
                "(or by `calibprune prune`)"
            )
        return str(folder)
    if "/" in text and not text.startswith((".", "/", "~")):
        if probe_hub:
            check_hub_reachable(text)  # a hub id: in the local cache, or the hub must answer now
        return text
    raise CalibpruneError(
        f"model {text!r} is neither a preset nor an existing folder: valid presets are "
        f"{', '.join(PRESETS)}; a Hugging Face id looks like 'org/name'"
    )


_FIX_OFFLINE = "use a preset (smollm2-135m, gemma3-270m) or a local model folder"


def check_hub_reachable(repo_id: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not after transformers' retries, when a hub id cannot be loaded:
    offline mode (``HF_HUB_OFFLINE``) without a cached copy, or no connection to the hub."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return  # cached: transformers loads it without network
    if constants.HF_HUB_OFFLINE:
        raise CalibpruneError(
            f"model {repo_id!r} is a Hugging Face id, not in the local cache, and HF_HUB_OFFLINE is set: "
            f"{_FIX_OFFLINE}, or unset HF_HUB_OFFLINE with network access"
        )
    endpoint = urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise CalibpruneError(
            f"model {repo_id!r} is a Hugging Face id, but {constants.ENDPOINT} cannot be reached ({error}): "
            f"{_FIX_OFFLINE}, or retry with network access"
        ) from None


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``--dtype``: a torch dtype, or None for ``auto`` (the checkpoint's own dtype)."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return None if dtype == "auto" else dtype
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise CalibpruneError(f"dtype {dtype!r} is unknown: use one of auto, {', '.join(_DTYPES)}") from None


def checkpoint_dtype(config) -> torch.dtype | None:
    """The dtype ``from_pretrained(dtype="auto")`` picks from a config (None: not recorded)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for owner in (config, text):
        value = getattr(owner, "dtype", None) or getattr(owner, "torch_dtype", None)
        if isinstance(value, str) and value != "auto":
            value = getattr(torch, value, None)
        if isinstance(value, torch.dtype):
            return value
    return None


def load_config(resolved: str):
    from transformers import AutoConfig

    if Path(resolved).is_dir():
        _check_model_type(Path(resolved))
    with _load_errors(resolved, "config"):
        return AutoConfig.from_pretrained(resolved)


def load_tokenizer(resolved: str):
    from transformers import AutoTokenizer

    with _load_errors(resolved, "tokenizer"):
        return AutoTokenizer.from_pretrained(resolved)


def _check_model_type(folder: Path) -> None:
    """transformers needs ``model_type`` in config.json to pick the architecture."""
    import json

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise CalibpruneError(f"{folder}/config.json cannot be read as JSON ({error}): re-save the model") from None
    if not config.get("model_type"):
        raise CalibpruneError(
            f'{folder}/config.json has no "model_type": add the architecture\'s name (e.g. "model_type": "llama") '
            "or re-save the model with save_pretrained"
        )


@contextlib.contextmanager
def _load_errors(resolved: str, what: str):
    """One-line errors for files transformers cannot use (missing, unreachable, unknown)."""
    try:
        yield
    except OSError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CalibpruneError(f"cannot load the {what} of {resolved!r}: {first}") from None
    except ValueError as error:
        if isinstance(error, CalibpruneError):
            raise
        first = str(error).strip().splitlines()[0]
        raise CalibpruneError(f"cannot load the {what} of {resolved!r}: {first}") from None


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


def load_model(resolved: str, dtype: str | torch.dtype | None = None, device: str | torch.device = "cpu"):
    """Load a causal LM in eval mode onto ``device`` (weights go there directly, never
    through a CPU copy of the whole model). Its config is left untouched (callers pass
    ``use_cache=False`` per call), so a saved copy generates like the original."""
    from transformers import AutoModelForCausalLM

    device = torch.device(device)
    placement = {} if device.type == "cpu" else {"device_map": {"": device}}
    with _load_errors(resolved, "weights"):
        model = AutoModelForCausalLM.from_pretrained(resolved, dtype=parse_dtype(dtype) or "auto", **placement)
    model.eval()
    return model


def meta_model(config, dtype: torch.dtype | None = None):
    """The model's module tree with no weights (shapes only), for planning and validation.

    Parameters are on the meta device; buffers computed at construction (rotary
    frequency tables, embedding scales) are real CPU tensors, as accelerate's
    ``init_empty_weights`` leaves them, so the skeleton can run once its weights are
    put in place (``--offload disk``). Tied weights (lm_head = embed_tokens) are one
    parameter, as in a loaded model."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": dtype} if dtype is not None else {}
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, **kwargs)
    model.tie_weights()
    return model.eval()


def max_sequence_length(config) -> int | None:
    """Longest sequence the model was built for, if its config says."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
