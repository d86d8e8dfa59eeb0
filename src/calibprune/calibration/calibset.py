"""A calibration set: the token windows a pruner sees, plus where they came from.

On disk a set is a folder (written atomically; read and checked by :mod:`.folder`)::

    tokens.safetensors   {"input_ids": int64 [nsamples, seqlen]}
    windows.jsonl        the decoded windows, one per line ({"index", "text"})
    texts.jsonl          the pool the windows came from, one record per text, with the
                         strategy's per-text fields (prefix, perplexity, keep, score, ...)
    manifest.json        source, strategy and all its parameters, model, tokenizer
                         fingerprint, seed, window fingerprint, filter statistics
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..options import OptionError, command_line, literal
from ..utils.io import atomic_directory, write_json
from ..utils.provenance import tensor_fingerprint
from .folder import FORMAT, MANIFEST, TEXTS, TOKENS, WINDOWS, read_set


@dataclass
class CalibrationSet:
    """``input_ids`` is ``[nsamples, seqlen]`` (int64); ``manifest`` records the source,
    strategy and every parameter that produced it; ``texts`` are per-text records of
    the pool; ``windows_text`` the decoded windows."""

    input_ids: torch.Tensor
    manifest: dict = field(default_factory=dict)
    texts: list[dict] | None = None
    windows_text: list[str] | None = None

    def __post_init__(self):
        if self.input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [nsamples, seqlen], got shape {tuple(self.input_ids.shape)}")
        self.input_ids = self.input_ids.to(torch.long)

    @property
    def nsamples(self) -> int:
        return self.input_ids.shape[0]

    @property
    def seqlen(self) -> int:
        return self.input_ids.shape[1]

    @property
    def fingerprint(self) -> str:
        return tensor_fingerprint(self.input_ids)

    def __repr__(self) -> str:
        """One line, never the windows: ``CalibrationSet(8 x 128 tokens, wiki-en, sample, fp=...)``."""
        parts = [f"{self.nsamples} x {self.seqlen} tokens"]
        parts += [str(self.manifest[k]) for k in ("source", "strategy") if self.manifest.get(k)]
        return f"CalibrationSet({', '.join(parts)}, fingerprint={self.fingerprint})"

    def head(self, nsamples: int | None = None, seqlen: int | None = None) -> CalibrationSet:
        """The first ``nsamples`` windows, each cut to its first ``seqlen`` tokens (a prefix
        of a window is a window of the same text). Refuses to grow the set."""
        where = self.manifest.get("folder") or self.manifest.get("source") or "the calibration set"
        if nsamples is not None and nsamples > self.nsamples:
            raise OptionError(
                "nsamples",
                f"{{nsamples}} {nsamples} asks for more windows than {literal(where)} holds ({self.nsamples}): pass "
                f"{{nsamples={self.nsamples}}} or less, or build a larger set with "
                f"`{command_line('calib', nsamples=nsamples)}`",
            )
        if seqlen is not None and seqlen > self.seqlen:
            raise OptionError(
                "seqlen",
                f"{{seqlen}} {seqlen} is longer than the windows of {literal(where)} ({self.seqlen} tokens): pass "
                f"{{seqlen={self.seqlen}}} or less, or build the set with `{command_line('calib', seqlen=seqlen)}`",
            )
        n = self.nsamples if nsamples is None else nsamples
        length = self.seqlen if seqlen is None else seqlen
        if (n, length) == (self.nsamples, self.seqlen):
            return self
        manifest = {**self.manifest, "subset": {"of": [self.nsamples, self.seqlen], "first": [n, length]}}
        windows_text = (self.windows_text or [])[:n] if length == self.seqlen else None  # cut windows: text unknown
        return CalibrationSet(self.input_ids[:n, :length].clone(), manifest, self.texts, windows_text)

    def describe(self) -> dict:
        return {**self.manifest, "nsamples": self.nsamples, "seqlen": self.seqlen, "fingerprint": self.fingerprint}

    # -- files ----------------------------------------------------------------------
    def save(self, folder: str | Path, overwrite: bool = False) -> Path:
        from safetensors.torch import save_file

        with atomic_directory(folder, overwrite=overwrite) as tmp:
            save_file({"input_ids": self.input_ids.contiguous()}, str(tmp / TOKENS))
            _write_jsonl(tmp / WINDOWS, [{"index": i, "text": t} for i, t in enumerate(self.windows_text or [])])
            _write_jsonl(tmp / TEXTS, self.texts or [])
            write_json(tmp / MANIFEST, {"format": FORMAT, **self.describe()})
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> CalibrationSet:
        """A saved set, checked whole (every file present and readable, tokens matching the
        manifest's shape and fingerprint); a folder that is not one is refused."""
        if not Path(folder).is_dir():
            raise OptionError(
                "",
                f"{literal(repr(str(folder)))} is not a calibration set folder: build one with "
                f"`{command_line('calib', output=str(folder))}`",
            )
        files = read_set(folder)
        return cls(files.input_ids, files.manifest, files.texts, files.windows_text)

    def check_tokenizer(self, tokenizer) -> None:
        """Refuse windows made with another tokenizer: their ids would mean other tokens."""
        expected = self.manifest.get("tokenizer", {}).get("fingerprint")
        if expected and expected != tokenizer_fingerprint(tokenizer):
            name = literal(repr(self.manifest["tokenizer"].get("name")))
            raise OptionError(
                "",
                f"this calibration set was tokenized with {name}, whose vocabulary differs from the pruned "
                f"model's: rebuild it with `{command_line('calib', model='MODEL')}` (MODEL: the model you prune)",
            )


def tokenizer_fingerprint(tokenizer) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()[:16]


def tokenizer_info(tokenizer) -> dict:
    return {
        "name": getattr(tokenizer, "name_or_path", type(tokenizer).__name__),
        "vocab_size": len(tokenizer),
        "fingerprint": tokenizer_fingerprint(tokenizer),
    }


def decode_windows(tokenizer, windows: torch.Tensor) -> list[str]:
    return tokenizer.batch_decode(windows.tolist(), skip_special_tokens=False)


def _write_jsonl(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
