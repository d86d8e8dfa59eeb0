"""Local text files: ``.txt`` (documents separated by blank lines) and ``.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from ..errors import CalibpruneError
from .base import Corpus, Document

SUFFIXES = (".txt", ".jsonl")


class LocalCorpus(Corpus):
    """Documents from a file, or from every ``.txt``/``.jsonl`` file under a folder."""

    def __init__(self, path: str | Path, text_field: str = "text", sampling: str = "stream"):
        self.path = Path(path)
        self.text_field = text_field
        self.sampling = sampling
        self.name = str(self.path)
        self.description = f"local files at {self.path}"
        self.files = self._files()

    def _files(self) -> list[Path]:
        if not self.path.exists():
            raise CalibpruneError(f"calibration source {str(self.path)!r} does not exist")
        if self.path.is_dir():
            files = sorted(p for p in self.path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        elif self.path.suffix in SUFFIXES:
            files = [self.path]
        else:
            raise CalibpruneError(
                f"{str(self.path)!r} has suffix {self.path.suffix!r}: local corpora are {', '.join(SUFFIXES)} files or folders of them"
            )
        if not files or all(p.stat().st_size == 0 for p in files):
            raise CalibpruneError(f"{str(self.path)!r} holds no text: the file(s) are empty")
        return files

    def _all_documents(self) -> Iterator[Document]:
        for file in self.files:
            rel = file.name if file == self.path else str(file.relative_to(self.path))
            if file.suffix == ".jsonl":
                yield from self._jsonl(file, rel)
            else:
                text = file.read_text(encoding="utf-8", errors="replace")
                for i, para in enumerate(p for p in text.split("\n\n") if p.strip()):
                    yield Document(id=f"{rel}#{i}", text=para.strip())

    def _jsonl(self, file: Path, rel: str) -> Iterator[Document]:
        with open(file, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CalibpruneError(f"{file}:{line_no} is not valid JSON ({e.msg})") from None
                if self.text_field not in record:
                    raise CalibpruneError(
                        f"{file}:{line_no} has no field {self.text_field!r} (fields: {', '.join(record)}): "
                        "pass --text-field with the name of the text field"
                    )
                yield Document(id=str(record.get("id", f"{rel}:{line_no}")), text=str(record[self.text_field]))
