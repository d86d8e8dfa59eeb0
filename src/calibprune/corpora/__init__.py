"""Text sources: offline corpora, local files; one :class:`Corpus` interface."""

from __future__ import annotations

from pathlib import Path

from ..utils.registry import Registry
from .base import Corpus, Document, document_split
from .local import LocalCorpus
from .wiki import LANGUAGES, WikiCorpus

CORPORA = Registry("corpus")

for _lang in LANGUAGES:
    CORPORA.register(f"wiki-{_lang}")(lambda _lang=_lang: WikiCorpus(_lang))


def get_corpus(source: str | Corpus, text_field: str = "text") -> Corpus:
    """A registered corpus name, or a local ``.txt``/``.jsonl`` file or folder."""
    if isinstance(source, Corpus):
        return source
    if source in CORPORA:
        return CORPORA.create(source)
    if Path(source).exists() or any(str(source).endswith(s) for s in (".txt", ".jsonl")):
        return LocalCorpus(source, text_field=text_field)
    return CORPORA.create(source)  # raises, listing the known names


__all__ = ["CORPORA", "Corpus", "Document", "LocalCorpus", "WikiCorpus", "document_split", "get_corpus"]
