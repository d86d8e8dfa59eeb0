"""Text sources behind one interface: a corpus is a stream of documents.

Every corpus is split *by document* into a calibration pool and a held-out pool, by
a hash of the corpus name and the document id: deterministic, independent of order,
and the two pools never share a document. Perplexity is measured on the held-out
pool only, so evaluation text is never calibration text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

Split = Literal["calib", "heldout", "all"]
SPLITS = ("calib", "heldout", "all")

HELDOUT_PER_MILLE = 100  # 10% of documents are held out for evaluation


@dataclass(frozen=True)
class Document:
    id: str
    text: str


def document_split(corpus: str, doc_id: str, heldout_per_mille: int = HELDOUT_PER_MILLE) -> str:
    """``"heldout"`` for about ``heldout_per_mille``/1000 of the documents, else ``"calib"``."""
    digest = hashlib.sha1(f"{corpus}\x00{doc_id}".encode()).digest()
    return "heldout" if int.from_bytes(digest[:4], "big") % 1000 < heldout_per_mille else "calib"


class Corpus:
    """A named document stream. Subclasses implement :meth:`_all_documents`.

    ``sampling`` is the window-sampling mode the published loaders used for this kind
    of text: ``"stream"`` (join documents, then cut windows; Wikipedia, short texts) or
    ``"document"`` (windows inside single long documents; C4, SlimPajama, DCLM).
    """

    name: str = "corpus"
    description: str = ""
    sampling: str = "stream"
    heldout_per_mille: int = HELDOUT_PER_MILLE

    def _all_documents(self) -> Iterator[Document]:
        raise NotImplementedError

    def documents(self, split: Split = "all") -> Iterator[Document]:
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {SPLITS}")
        for doc in self._all_documents():
            if not doc.text.strip():
                continue
            if split == "all" or document_split(self.name, doc.id, self.heldout_per_mille) == split:
                yield doc

    def version(self) -> str | None:
        """A string that changes when the corpus's content changes (None: unknown)."""
        return None

    def reading(self) -> dict:
        """How the source's files are read (local files: encoding, text field); {} when fixed."""
        return {}

    def check_readable(self) -> None:
        """Raise now if reading the documents will fail (local files: decoding, parsing)."""

    def texts(self, split: Split = "all") -> list[str]:
        return [doc.text for doc in self.documents(split)]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "sampling": self.sampling,
            "heldout_fraction": self.heldout_per_mille / 1000,
        }


def files_version(files) -> str:
    from pathlib import Path

    stats = [(p, Path(p).stat()) for p in files]
    return ";".join(f"{p}:{stat.st_size}:{stat.st_mtime_ns}" for p, stat in stats)
