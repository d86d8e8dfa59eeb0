"""Shared fixtures: tiny random decoder models of seven architectures and a byte tokenizer.

Everything here is built offline in milliseconds; only tests marked ``integration``
touch the real bundled model.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOCAB = 256
HIDDEN = 32
LAYERS = 3


def _configs():
    from transformers import (
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        MistralConfig,
        OPTConfig,
        Qwen2Config,
    )
    from transformers.models.gemma3 import Gemma3TextConfig

    common = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        max_position_embeddings=128,
    )
    return {
        "llama": LlamaConfig(num_key_value_heads=2, **common),
        "qwen2": Qwen2Config(num_key_value_heads=2, **common),
        "mistral": MistralConfig(num_key_value_heads=2, sliding_window=None, **common),
        "gemma3": Gemma3TextConfig(
            num_key_value_heads=2,
            head_dim=8,
            sliding_window=8,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            **common,
        ),
        "gpt2": GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=4, n_positions=128, n_inner=64),
        "gpt_neox": GPTNeoXConfig(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            intermediate_size=64,
            num_hidden_layers=LAYERS,
            num_attention_heads=4,
            max_position_embeddings=128,
        ),
        "opt": OPTConfig(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            ffn_dim=64,
            num_hidden_layers=LAYERS,
            num_attention_heads=4,
            max_position_embeddings=128,
            word_embed_proj_dim=HIDDEN,
        ),
    }


ARCHITECTURES = list(_configs())


def tiny_model(arch: str = "llama", seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_configs()[arch])
    # Random init gives near-zero weights in some archs (OPT/GPT-2 init std 0.02); widen
    # them so masks and reconstruction errors are far from float noise.
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.3)
    return model.eval()


@pytest.fixture(params=ARCHITECTURES)
def any_arch_model(request):
    return request.param, tiny_model(request.param)


@pytest.fixture
def llama():
    return tiny_model("llama")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``calibprune ARGS`` in a fresh interpreter, as a user runs it (output captured)."""
    return subprocess.run([sys.executable, "-m", "calibprune.cli", *args], capture_output=True, text=True)


def byte_tokenizer():
    """A real Hugging Face fast tokenizer (one token per byte), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    symbols = sorted(alphabet)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=symbols[0], bos_token=symbols[1])


@pytest.fixture
def tokenizer():
    return byte_tokenizer()


@pytest.fixture
def calib_ids():
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, VOCAB, (6, 16), generator=generator)


@pytest.fixture
def model_dir(tmp_path, llama, tokenizer):
    """A tiny Llama saved as a plain model folder, usable as ``--model``."""
    folder = tmp_path / "tiny-llama"
    llama.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def text_corpus(tmp_path):
    """A local .txt corpus of 200 paragraphs (documents), ~60 bytes each."""
    path = tmp_path / "corpus.txt"
    paragraphs = [f"Paragraph {i}: the quick brown fox number {i} jumps over {i % 7} lazy dogs." for i in range(200)]
    path.write_text("\n\n".join(paragraphs))
    return path


def other_scalar_value(leaf):
    """A valid value different from a declared option's default, by its kind (choices, bool,
    int, float), or None when its kind needs a value chosen by the caller."""
    default = leaf.default()
    if leaf.spec.choices:
        return next(c for c in leaf.spec.choices if c != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return round(default * 0.5, 6)
    return None


TORCH_FREE_MAIN = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('heavy:', [m for m in ('torch', 'transformers') if m in sys.modules]))\n"
    "from calibprune.cli import main\n"
    "sys.argv = ['calibprune'] + sys.argv[1:]\n"
    "main()\n"
)


def run_cli_noting_heavy_imports(*args):
    """``calibprune ARGS`` in a fresh interpreter that prints, on exit, ``heavy: [...]``: the
    heavy libraries (torch, transformers) it imported."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", TORCH_FREE_MAIN, *map(str, args)], capture_output=True, text=True)
