"""Offline corpora from Debian packages and from this machine's Python installation.

Each packaged corpus is installed once (``calibprune corpora --install``, run by the
README set-up): its Debian packages are fetched and unpacked into a temporary folder,
converted to ``$CALIBPRUNE_CACHE/corpora/<name>/documents.jsonl`` (one document per
line: ``{"id", "text"}``), and the raw files are dropped. The file is written under a
temporary name and renamed, so a half-converted corpus is never read.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..errors import MissingAssetError
from ..options import MissingAsset, command_line, literal
from ..paths import cache_dir
from .base import Corpus, Document, files_version
from .debian import fetch_and_extract

INSTALL_HINT = f"run `{command_line('corpora', install=True)}` (the README's `make install` does it)"  # a template


class InstalledCorpus(Corpus):
    """A corpus converted once from Debian packages into a documents.jsonl file."""

    packages: tuple[str, ...] = ()

    @property
    def folder(self) -> Path:
        return cache_dir() / "corpora" / self.name

    @property
    def documents_file(self) -> Path:
        return self.folder / "documents.jsonl"

    def installed(self) -> bool:
        return self.documents_file.exists()

    def version(self) -> str | None:
        return files_version([self.documents_file]) if self.installed() else None

    def convert(self, root: Path) -> Iterator[Document]:
        """Documents from the unpacked package files under ``root``."""
        raise NotImplementedError

    def install(self) -> Path:
        if self.installed():
            return self.documents_file
        self.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.folder) as tmp:
            root = fetch_and_extract(list(self.packages), Path(tmp) / "root", Path(tmp))
            part = self.folder / f".documents.jsonl.tmp-{uuid.uuid4().hex[:8]}"
            count = 0
            with open(part, "w", encoding="utf-8") as f:
                for doc in self.convert(root):
                    if doc.text.strip():
                        f.write(json.dumps({"id": doc.id, "text": doc.text}, ensure_ascii=False) + "\n")
                        count += 1
            if count == 0:
                part.unlink()
                raise MissingAssetError(f"corpus {self.name!r}: the packages {self.packages} held no documents")
            os.replace(part, self.documents_file)
        return self.documents_file

    def _all_documents(self) -> Iterator[Document]:
        if not self.installed():
            raise MissingAsset(f"corpus {literal(repr(self.name))} is not installed: {INSTALL_HINT}")
        with open(self.documents_file, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                yield Document(id=record["id"], text=record["text"])


class KJVBible(InstalledCorpus):
    """King James Bible, one document per chapter. The text package stores it in the
    `bible` program's compressed format, so that program is fetched too and asked to
    print every verse."""

    name = "kjv"
    description = "King James Bible (Debian bible-kjv-text), one document per chapter"
    packages = ("bible-kjv-text", "bible-kjv")

    def convert(self, root):
        program = root / "usr" / "bin" / "bible"
        done = subprocess.run(
            [str(program), "-f", "-p", str(root / "usr" / "lib"), "-d", "bible.data", "gen1:1-rev22:21"],
            capture_output=True,
            text=True,
            check=True,
        )
        chapter, verses = None, []
        for line in done.stdout.splitlines():
            match = re.match(r"^(\w+?\d+):\d+ (.*)$", line)
            if not match:
                continue
            if match.group(1) != chapter and verses:
                yield Document(id=chapter, text=" ".join(verses))
                verses = []
            chapter = match.group(1)
            verses.append(match.group(2))
        if verses:
            yield Document(id=chapter, text=" ".join(verses))


_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _dictd_number(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 64 + _B64[ch]
    return value


class GCIDE(InstalledCorpus):
    """Webster's 1913 via GCIDE, one document per dictionary entry (dictd format)."""

    name = "gcide"
    description = "GNU Collaborative International Dictionary of English (Webster 1913), one entry per document"
    packages = ("dict-gcide",)

    def convert(self, root):
        folder = root / "usr" / "share" / "dictd"
        with gzip.open(folder / "gcide.dict.dz", "rb") as f:  # dictzip is gzip-compatible
            data = f.read()
        seen = set()
        for line in (folder / "gcide.index").read_text(encoding="utf-8", errors="replace").splitlines():
            word, offset, length = line.split("\t")[:3]
            start, size = _dictd_number(offset), _dictd_number(length)
            if word.startswith("00-") or (start, size) in seen:
                continue
            seen.add((start, size))
            yield Document(id=f"{word}@{start}", text=data[start : start + size].decode("utf-8", "replace").strip())


class PythonDocs(InstalledCorpus):
    """The Python 3.11 documentation sources (reStructuredText), one document per page."""

    name = "pydocs"
    description = "Python 3.11 documentation sources (Debian python3.11-doc), one page per document"
    packages = ("python3.11-doc",)

    def convert(self, root):
        sources = root / "usr" / "share" / "doc" / "python3.11" / "html" / "_sources"
        for path in sorted(sources.rglob("*.txt")):
            yield Document(id=str(path.relative_to(sources)), text=path.read_text(encoding="utf-8", errors="replace"))


class JargonFile(InstalledCorpus):
    """The Jargon File 4.4.7, one document per paragraph."""

    name = "jargon"
    description = "The Jargon File 4.4.7 (Debian jargon-text), one paragraph per document"
    packages = ("jargon-text",)

    def convert(self, root):
        with gzip.open(root / "usr" / "share" / "doc" / "jargon-text" / "jargon.txt.gz", "rt", encoding="utf-8") as f:
            text = f.read()
        for i, para in enumerate(p.strip() for p in re.split(r"\n\s*\n", text)):
            if len(para) > 40:
                yield Document(id=str(i), text=para)


class Fortunes(InstalledCorpus):
    """fortune(6) cookies, one document per cookie."""

    name = "fortunes"
    description = "fortune cookies (Debian fortunes, fortunes-min), one per document"
    packages = ("fortunes", "fortunes-min")

    def convert(self, root):
        folder = root / "usr" / "share" / "games" / "fortunes"
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.suffix and not path.is_symlink():
                cookies = path.read_text(encoding="utf-8", errors="replace").split("\n%\n")
                for i, cookie in enumerate(cookies):
                    yield Document(id=f"{path.name}#{i}", text=cookie.strip().strip("%").strip())


class PythonSource(Corpus):
    """This machine's CPython standard library sources (tests excluded), one file per
    document; read in place, nothing to install."""

    name = "pycode"
    sampling = "document"  # source files are long; windows stay inside one file
    _skip = re.compile(r"(^|/)(test|tests|idle_test|site-packages|__pycache__)(/|$)")

    def __init__(self):
        self.root = Path(sysconfig.get_paths()["stdlib"])
        self.description = f"CPython standard library sources at {self.root}, one file per document"

    def _all_documents(self):
        for path in sorted(self.root.rglob("*.py")):
            rel = path.relative_to(self.root).as_posix()
            if not self._skip.search(rel):
                yield Document(id=rel, text=path.read_text(encoding="utf-8", errors="replace"))

    def installed(self) -> bool:
        return self.root.is_dir()

    def version(self) -> str:
        return f"{self.root}:{sys.version.split()[0]}"


OFFLINE_CORPORA = {cls.name: cls for cls in (KJVBible, GCIDE, PythonDocs, JargonFile, Fortunes)}


def install_all(names: list[str] | None = None) -> dict[str, Path]:
    """Install the packaged offline corpora (all by default); returns their files."""
    return {name: OFFLINE_CORPORA[name]().install() for name in (names or OFFLINE_CORPORA)}
