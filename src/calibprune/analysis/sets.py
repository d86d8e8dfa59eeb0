"""What ``--sets`` names: calibration-set folders, ``corpus:NAME`` or local files.

* a calibration-set folder: its windows (the text the pruner saw) and their token ids;
* ``corpus:NAME``: documents of a registered corpus (``corpus:NAME@calib`` or
  ``@heldout`` for one pool; all documents by default);
* any other path: a local ``.txt``/``.jsonl``/``.parquet``/``.arrow`` file or folder,
  decoded with ``encoding`` (``--encoding``).

Compared sets are cut to ``max_texts`` documents chosen with a seeded shuffle; a
reference is streamed whole (:func:`stream_texts`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..calibration import CalibrationSet, is_calibration_folder
from ..corpora import get_corpus
from ..errors import CalibpruneError
from ..options import OptionError
from .options import local_specs  # noqa: F401  (its home: torch-free)


@dataclass
class TextSet:
    name: str
    texts: list[str]
    token_ids: list[list[int]] | None = None  # exact ids, when the set is a calibration set
    origin: dict = field(default_factory=dict)


def _source(spec: str, encoding: str = "utf-8"):
    """(corpus, split, origin) of a ``corpus:NAME[@split]`` or a local path."""
    if spec.startswith("corpus:"):
        name, _, split = spec[len("corpus:") :].partition("@")
        return get_corpus(name), split or "all", {"kind": "corpus", "corpus": name, "split": split or "all"}
    if not Path(spec).expanduser().exists():
        from ..corpora import CORPORA

        if spec in CORPORA:
            raise CalibpruneError(f"{spec!r} is not a path: for the corpus, pass corpus:{spec}")
        raise CalibpruneError(
            f"{spec!r} does not exist: pass a calibration-set folder, a local .txt/.jsonl/.parquet/.arrow "
            "file or folder, or corpus:NAME (see `calibprune corpora`)"
        )
    corpus = get_corpus(str(Path(spec).expanduser()), encoding=encoding)
    return corpus, "all", {"kind": "local files", "path": spec, **corpus.reading()}


def set_inputs(specs: list[str]) -> list[tuple[str, str]]:
    """The folders and files ``--sets`` reads (``corpus:NAME`` reads none), for an output to stay out of."""
    return [("{sets}", spec) for spec in specs if not spec.startswith("corpus:")]


def load_set(spec: str, max_texts: int | None = None, seed: int = 0, encoding: str = "utf-8") -> TextSet:
    if is_calibration_folder(spec):
        calib = CalibrationSet.load(spec)
        texts = calib.windows_text or []
        return TextSet(spec, texts, calib.input_ids.tolist(), {"kind": "calibration set", **calib.describe()})
    corpus, split, origin = _source(spec, encoding)
    texts = corpus.texts(split)
    origin["available_texts"] = len(texts)
    if max_texts is not None and len(texts) > max_texts:
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed))[:max_texts].sort().values
        texts = [texts[i] for i in order.tolist()]
        origin["sampled"] = {"max_texts": max_texts, "seed": seed}
    return TextSet(spec, texts, None, origin)


def stream_texts(spec: str, encoding: str = "utf-8") -> tuple[Iterator[str], dict]:
    """Every text of ``spec``, one at a time (never cut), and where they come from."""
    if is_calibration_folder(spec):
        calib = CalibrationSet.load(spec)
        return iter(calib.windows_text or []), {"kind": "calibration set", "path": spec}
    corpus, split, origin = _source(spec, encoding)
    corpus.check_readable()  # refused now, not halfway through the index
    return (doc.text for doc in corpus.documents(split)), origin


def load_sets(specs: list[str], max_texts: int | None = None, seed: int = 0, encoding: str = "utf-8") -> list[TextSet]:
    if not specs:
        raise OptionError("sets", "no sets given: pass {sets=calib/DIR,corpus:NAME,...} (comma-separated)")
    sets = [load_set(spec, max_texts, seed, encoding) for spec in specs]
    empty = [s.name for s in sets if not any(t.strip() for t in s.texts)]
    if empty:
        raise CalibpruneError(f"set(s) {', '.join(empty)} hold no text: check the path or corpus name")
    return sets
