"""Local text files: ``.txt`` (documents separated by blank lines), ``.jsonl``,
``.parquet`` and ``.arrow`` (a text column, ``--text-field``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ..errors import CalibpruneError
from ..utils.content import files_digest
from .base import Corpus, Document

SUFFIXES = (".txt", ".jsonl", ".parquet", ".arrow")


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
                f"{str(self.path)!r} has suffix {self.path.suffix!r}: local corpora are "
                f"{', '.join(SUFFIXES)} files or folders of them"
            )
        if not files or all(p.stat().st_size == 0 for p in files):
            raise CalibpruneError(f"{str(self.path)!r} holds no text: the file(s) are empty")
        return files

    def version(self) -> str:
        """sha256 of the files read (their bytes and relative paths): changes exactly when
        their content does, whatever their mtime says (see :mod:`calibprune.utils.content`)."""
        return files_digest(self.files, self.path if self.path.is_dir() else self.path.parent)

    def field_names(self) -> list[tuple[Path, list[str]]]:
        """Per ``.jsonl``/``.parquet``/``.arrow`` file, its fields: the keys of the first
        record, or the columns (read from the schema, not the data). Cheap: a check before
        any work. ``.txt`` files have none (their text is the file)."""
        out = []
        for file in self.files:
            if file.suffix == ".jsonl":
                out.append((file, _first_record_keys(file)))
            elif file.suffix in (".parquet", ".arrow"):
                out.append((file, _schema(file).names))
        return out

    def _all_documents(self) -> Iterator[Document]:
        for file in self.files:
            rel = file.name if file == self.path else str(file.relative_to(self.path))
            if file.suffix == ".jsonl":
                yield from self._jsonl(file, rel)
            elif file.suffix in (".parquet", ".arrow"):
                yield from self._columnar(file, rel)
            else:
                text = file.read_text(encoding="utf-8", errors="replace")
                for i, para in enumerate(p for p in text.split("\n\n") if p.strip()):
                    yield Document(id=f"{rel}#{i}", text=para.strip())

    def _columnar(self, file: Path, rel: str) -> Iterator[Document]:
        table = _read_table(file)
        if self.text_field not in table.column_names:
            raise CalibpruneError(
                f"{file} has no column {self.text_field!r} (columns: {', '.join(table.column_names)}): "
                "pass --text-field with the name of the text column"
            )
        ids = table.column("id").to_pylist() if "id" in table.column_names else None
        for i, text in enumerate(table.column(self.text_field).to_pylist()):
            yield Document(id=str(ids[i]) if ids else f"{rel}:{i}", text=str(text or ""))

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


def _first_record_keys(file: Path) -> list[str]:
    with open(file, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CalibpruneError(f"{file}:{line_no} is not valid JSON ({e.msg})") from None
                return list(record) if isinstance(record, dict) else []
    return []


def _schema(file: Path):
    import pyarrow as pa

    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(file)
    try:
        with pa.memory_map(str(file)) as source:
            return pa.ipc.open_stream(source).schema
    except pa.ArrowInvalid:
        with pa.memory_map(str(file)) as source:
            return pa.ipc.open_file(source).schema


def _read_table(file: Path):
    """A parquet file, or an Arrow IPC file in stream format (what `datasets` writes) or file format."""
    import pyarrow as pa

    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(file)
    try:
        with pa.memory_map(str(file)) as source:
            return pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        with pa.memory_map(str(file)) as source:
            return pa.ipc.open_file(source).read_all()
