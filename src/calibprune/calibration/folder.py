"""What a calibration-set folder is, and whether it is intact: the one place that reads one.

A folder holding any of the set's files (``manifest.json``, ``tokens.safetensors``,
``windows.jsonl``, ``texts.jsonl``) is a set, never a text corpus, even when its manifest
is gone. :func:`read_set` reads all four and refuses a set that is incomplete or damaged
(a file missing, cut short or garbage; tokens whose shape or fingerprint differ from the
manifest's) with what is wrong and the ``calibprune calib`` command that rebuilds it,
taken from the manifest when it is readable. It never lets a raw parser error through.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..options import OptionError, command_line, literal
from ..utils.provenance import tensor_fingerprint

if TYPE_CHECKING:  # torch is imported where tokens are read: recognising a set folder needs none
    import torch

FORMAT = "calibprune.calibration/1"
MANIFEST = "manifest.json"
TOKENS = "tokens.safetensors"
WINDOWS = "windows.jsonl"
TEXTS = "texts.jsonl"
SET_FILES = (MANIFEST, TOKENS, WINDOWS, TEXTS)
SIZE_KEYS = ("format", "nsamples", "seqlen", "fingerprint")  # written from the tokens, not kept in memory


def looks_like_set(path) -> bool:
    """A folder holding any of a set's files (intact or not)."""
    if not isinstance(path, (str, Path)) or not Path(path).is_dir():
        return False
    return any((Path(path) / name).exists() for name in SET_FILES)


@dataclass
class SetFiles:
    manifest: dict  # without SIZE_KEYS
    input_ids: torch.Tensor
    windows_text: list[str]
    texts: list[dict]


class DamagedSet(OptionError):
    """A set folder that is incomplete or damaged; the message (a template: it names the
    rebuild command, see :func:`rebuild_command`) says how to rebuild it."""

    def __init__(self, template: str):
        super().__init__("", template)


def read_set(folder: str | Path) -> SetFiles:
    folder = Path(folder)
    manifest = _read_manifest(folder)
    fail = _Refusal(folder, manifest)
    missing = [name for name in SET_FILES if not (folder / name).is_file()]
    if missing:
        fail(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing")
    if manifest.get("format") != FORMAT:
        fail(f"{MANIFEST} has format {manifest.get('format')!r}, expected {FORMAT!r}")
    ids = _read_tokens(folder / TOKENS, fail)
    shape = [manifest.get("nsamples"), manifest.get("seqlen")]
    if list(ids.shape) != shape:
        fail(f"{TOKENS} holds {ids.shape[0]} x {ids.shape[1]} tokens, {MANIFEST} says {shape[0]} x {shape[1]}")
    if tensor_fingerprint(ids) != manifest.get("fingerprint"):
        fail(f"{TOKENS} does not match the fingerprint in {MANIFEST} (the windows changed after the set was built)")
    windows = [_text_of(record, line, fail) for line, record in _read_jsonl(folder / WINDOWS, fail)]
    if windows and len(windows) != ids.shape[0]:
        fail(f"{WINDOWS} holds {len(windows)} windows, {TOKENS} {ids.shape[0]}")
    texts = [record for _, record in _read_jsonl(folder / TEXTS, fail)]
    kept = {k: v for k, v in manifest.items() if k not in SIZE_KEYS}
    return SetFiles(upgrade_filter_record(kept, texts), ids, windows, texts)


def upgrade_filter_record(manifest: dict, texts: list[dict]) -> dict:
    """Sets built before the perplexity filter recorded its rule held, under
    ``filter.perplexity_threshold``, the highest *kept* perplexity. Read so, that value
    moves to ``kept_max_perplexity`` and the threshold the rule used is recomputed from
    the per-text perplexities in texts.jsonl (the same rule, the same numbers)."""
    record = manifest.get("filter")
    if manifest.get("strategy") != "synthetic" or not isinstance(record, dict) or "kept_max_perplexity" in record:
        return manifest
    from .filters import PERCENTILE_RULE, percentile_threshold

    perplexities = [t.get("perplexity") for t in texts]
    filter_top = (manifest.get("parameters") or {}).get("filter_top")
    known = filter_top is not None and texts and all(isinstance(p, (int, float)) for p in perplexities)
    upgraded = {
        **record,
        "perplexity_rule": PERCENTILE_RULE,
        "perplexity_threshold": percentile_threshold(perplexities, filter_top) if known else None,
        "kept_max_perplexity": record.get("perplexity_threshold"),
        "upgraded_from": "a manifest whose perplexity_threshold was the highest kept perplexity",
    }
    return {**manifest, "filter": upgraded}


class _Refusal:
    """Raises :class:`DamagedSet` for ``folder`` with the problem and the rebuild command."""

    def __init__(self, folder: Path, manifest: dict | None):
        self.folder, self.manifest = folder, manifest

    def __call__(self, problem: str):
        if self.manifest is None:
            fix = (
                f"`{command_line('calib', output=str(self.folder), overwrite=True)}` with the options it was "
                "built with (its manifest, which recorded them, cannot be read)"
            )
        else:
            fix = f"`{rebuild_command(self.manifest, self.folder)}`"
        raise DamagedSet(
            f"{literal(self.folder)} is a calibration-set folder that cannot be used: {literal(problem)}. It is not "
            f"read (neither as a set nor as text); rebuild it with {fix}"
        )


def _read_manifest(folder: Path) -> dict | None:
    """The manifest, or a refusal: a set folder without a readable manifest is unusable."""
    path = folder / MANIFEST
    present = [name for name in SET_FILES if (folder / name).exists()]
    fail = _Refusal(folder, None)
    if not path.is_file():
        fail(f"{MANIFEST} is missing (the folder holds {', '.join(present) or 'none of the set files'})")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        fail(f"{MANIFEST} is not UTF-8 text (byte {e.start})")
    except json.JSONDecodeError as e:
        fail(f"{MANIFEST} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}: cut short or overwritten?)")
    if not isinstance(manifest, dict):
        fail(f"{MANIFEST} holds a JSON {type(manifest).__name__}, not an object")
    return manifest


def _read_tokens(path: Path, fail) -> torch.Tensor:
    import torch
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError) for damaged files
        fail(f"{path.name} cannot be read ({type(e).__name__}: {e}: cut short or overwritten?)")
    ids = tensors.get("input_ids")
    if ids is None:
        fail(f"{path.name} holds no 'input_ids' tensor (tensors: {', '.join(tensors) or 'none'})")
    if ids.ndim != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        fail(
            f"{path.name} holds input_ids of shape {tuple(ids.shape)} and dtype {ids.dtype}, not [nsamples, seqlen] ids"
        )
    return ids.to(torch.long)


def _read_jsonl(path: Path, fail) -> list[tuple[int, dict]]:
    records = []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                fail(f"{path.name} line {line_no} is not UTF-8 text (byte {e.start} of the line)")
            except json.JSONDecodeError as e:
                fail(f"{path.name} line {line_no} is not valid JSON ({e.msg}: cut short or overwritten?)")
            if not isinstance(record, dict):
                fail(f"{path.name} line {line_no} holds a JSON {type(record).__name__}, not an object")
            records.append((line_no, record))
    return records


def _text_of(record: dict, line_no: int, fail) -> str:
    if not isinstance(record.get("text"), str):
        fail(f"{WINDOWS} line {line_no} has no text")
    return record["text"]


# ------------------------------------------------------------- the rebuild command

_GENERATION_KEYS = (
    "prefix_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "max_new_tokens",
    "batch_size",
    "filter_top",
)
_DETECT_FIELDS = {"k": "mink_k", "keep_top": "keep_top", "num_candidates": "num_candidates"}  # manifest -> CalibJob


def rebuild_command(manifest: dict, folder: str | Path) -> str:
    """The ``calibprune calib`` command that builds this set again into ``folder``, as a
    :func:`~calibprune.options.command_line` placeholder: the recorded command line when
    the manifest has one (``argv``), else one made from the manifest's source, strategy and
    parameters (by CalibJob's fields)."""
    argv = manifest.get("argv")
    target = {"output": str(folder), "overwrite": True}
    if isinstance(argv, list) and len(argv) > 1 and argv[1] == "calib":
        return command_line("calib", argv=[str(a) for a in argv[2:]], fields=target)
    return command_line("calib", fields={**_calib_fields(manifest), **target})


def _calib_fields(manifest: dict) -> dict:
    """The CalibJob fields (by path) that rebuild the set, in the order a command line gives them."""
    out: dict = {}

    def add(path: str, value) -> None:
        if value is not None:
            out[path] = value

    strategy = manifest.get("strategy", "sample")
    for key in ("source", "model", "nsamples", "seqlen", "seed"):
        add(key, manifest.get(key))
    if manifest.get("windows") not in (None, "disjoint"):
        add("windows", manifest["windows"])
    reading = manifest.get("source_reading") or {}
    if reading.get("encoding", "utf-8") != "utf-8":
        add("encoding", reading["encoding"])
    if reading.get("text_field", "text") != "text":
        add("text_field", reading["text_field"])
    params = manifest.get("parameters") or {}
    if strategy == "sample":
        add("sampling", manifest.get("sampling"))
    elif strategy == "synthetic":
        add("strategy", "synthetic")
        for key in _GENERATION_KEYS:
            add(f"generation.{key}", params.get(key))
        if params.get("num_texts_rule") == "fixed":
            add("generation.num_texts", params.get("num_texts"))
    elif strategy == "detect":
        add("strategy", "detect")
        add("detector", params.get("detector", "mink++"))
        for key, path in _DETECT_FIELDS.items():
            add(path, params.get(key))
    return out
