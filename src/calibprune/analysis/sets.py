"""What ``--sets`` names: calibration-set folders, ``corpus:NAME`` or local files.

* a calibration-set folder: its windows (the text the pruner saw) and their token ids;
* ``corpus:NAME``: documents of a registered corpus (``corpus:NAME@calib`` or
  ``@heldout`` for one pool; all documents by default);
* any other path: a local ``.txt``/``.jsonl``/``.parquet``/``.arrow`` file or folder.

Large sources are cut to ``max_texts`` documents chosen with a seeded shuffle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..calibration import CalibrationSet, is_calibration_folder
from ..corpora import get_corpus
from ..errors import CalibpruneError


@dataclass
class TextSet:
    name: str
    texts: list[str]
    token_ids: list[list[int]] | None = None  # exact ids, when the set is a calibration set
    origin: dict = field(default_factory=dict)


def load_set(spec: str, max_texts: int | None = None, seed: int = 0) -> TextSet:
    if is_calibration_folder(spec):
        calib = CalibrationSet.load(spec)
        texts = calib.windows_text or []
        return TextSet(spec, texts, calib.input_ids.tolist(), {"kind": "calibration set", **calib.describe()})
    if spec.startswith("corpus:"):
        name, _, split = spec[len("corpus:") :].partition("@")
        corpus = get_corpus(name)
        texts = corpus.texts(split or "all")
        origin = {"kind": "corpus", "corpus": name, "split": split or "all"}
    else:
        corpus = get_corpus(spec)
        texts = corpus.texts("all")
        origin = {"kind": "local files", "path": spec}
    if max_texts is not None and len(texts) > max_texts:
        order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed))[:max_texts].sort().values
        texts = [texts[i] for i in order.tolist()]
        origin["sampled"] = {"max_texts": max_texts, "seed": seed}
    return TextSet(spec, texts, None, origin)


def load_sets(specs: list[str], max_texts: int | None = None, seed: int = 0) -> list[TextSet]:
    if not specs:
        raise CalibpruneError("no sets given: pass --sets calib/DIR,corpus:NAME,... (comma-separated)")
    sets = [load_set(spec, max_texts, seed) for spec in specs]
    empty = [s.name for s in sets if not any(t.strip() for t in s.texts)]
    if empty:
        raise CalibpruneError(f"set(s) {', '.join(empty)} hold no text: check the path or corpus name")
    return sets
