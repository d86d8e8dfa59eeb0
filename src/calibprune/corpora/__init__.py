"""Text sources behind one :class:`Corpus` interface.

* offline: Wikipedia lead sections (``wiki-en``, ``wiki-fr``, ``wiki-es``), the KJV Bible
  (``kjv``), Webster 1913 (``gcide``), Python documentation (``pydocs``), the CPython
  standard library (``pycode``), the Jargon File (``jargon``), fortunes (``fortunes``);
* by hub name (needs network): ``c4``, ``wikipedia``, ``slimpajama``, ``dclm``;
* local ``.txt``/``.jsonl``/``.parquet``/``.arrow`` files or folders of them.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..utils.registry import Registry
from .base import Corpus, Document, document_split
from .hub import HUB_SOURCES, HubCorpus
from .local import DEFAULT_ENCODING, SUFFIXES, LocalCorpus
from .offline import OFFLINE_CORPORA, InstalledCorpus, PythonSource, install_all
from .wiki import LANGUAGES, WikiCorpus

CORPORA = Registry("corpus")

for _lang in LANGUAGES:
    CORPORA.register(f"wiki-{_lang}")(lambda _lang=_lang: WikiCorpus(_lang))
for _name, _cls in OFFLINE_CORPORA.items():
    CORPORA.register(_name)(_cls)
CORPORA.register("pycode")(PythonSource)

OFFLINE_NAMES = tuple(CORPORA.names())

for _name in HUB_SOURCES:
    CORPORA.register(_name)(lambda _name=_name: HubCorpus(_name, offline_names=OFFLINE_NAMES))


def local_source(source) -> str | None:
    """The local file or folder a source reads, or None for a registered corpus (or a set in memory)."""
    if not isinstance(source, str | os.PathLike) or str(source) in CORPORA:
        return None
    return str(source)


def is_local_source(source) -> bool:
    """Whether ``source`` names local files (read with a text field and an encoding), not a registered corpus."""
    if isinstance(source, Corpus):
        return isinstance(source, LocalCorpus)
    return source not in CORPORA and (Path(source).exists() or str(source).endswith(SUFFIXES))


def get_corpus(source: str | Corpus, text_field: str = "text", encoding: str = DEFAULT_ENCODING) -> Corpus:
    """A registered corpus name, or a local file or folder (``text_field``/``encoding``: how its files are read)."""
    if isinstance(source, Corpus):
        return source
    if is_local_source(source):
        return LocalCorpus(source, text_field=text_field, encoding=encoding)
    return CORPORA.create(source)  # a registered name, or raises listing the known names


__all__ = [
    "CORPORA",
    "Corpus",
    "Document",
    "InstalledCorpus",
    "LocalCorpus",
    "OFFLINE_NAMES",
    "WikiCorpus",
    "document_split",
    "get_corpus",
    "local_source",
    "is_local_source",
    "install_all",
]
