"""Local text files: ``.txt`` (documents separated by blank lines), ``.jsonl``,
``.parquet`` and ``.arrow`` (a text column, ``--text-field``).

``.txt`` and ``.jsonl`` files are decoded with ``encoding`` (``--encoding``, default
utf-8), strictly: a byte sequence that is not valid in it is refused with the file, its
byte offset and line, never replaced by U+FFFD. Parquet and Arrow strings are UTF-8 by
format, so ``encoding`` does not apply to them (and a non-default one is refused).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path

from ..errors import CalibpruneError
from ..options import OptionError, literal
from ..utils.content import files_digest
from .base import Corpus, Document

SUFFIXES = (".txt", ".jsonl", ".parquet", ".arrow")
DECODED = (".txt", ".jsonl")  # the suffixes read through ``encoding``
DEFAULT_ENCODING = "utf-8"


def check_encoding(encoding: str) -> str:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise OptionError(
            "encoding",
            f"{{encoding}} {literal(repr(encoding))} is not an encoding Python knows: pass e.g. utf-8, latin-1 or "
            "cp1252",
        ) from None
    return encoding


def decode(data: bytes, encoding: str, file: Path, start: int = 0, line: int | None = None) -> str:
    """``data`` (the bytes of ``file`` from byte ``start``, line ``line``) decoded strictly;
    an invalid sequence is refused with its byte offset in the file, its line and the fix."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        offset = start + error.start
        if line is None and _newline_is_one_byte(encoding):
            line = data.count(b"\n", 0, error.start) + 1
        where = f"byte {offset}" + (f" (line {line})" if line is not None else "")
        bad = error.object[error.start : error.end].hex(" ")
        raise OptionError(
            "encoding",
            f"{literal(file)}: {where} is not valid {literal(encoding)} (bytes {bad}): the text would be garbled, so "
            "it is not read; pass {encoding=latin-1} (or the file's encoding)",
        ) from None


def _newline_is_one_byte(encoding: str) -> bool:
    return "\n".encode(encoding) == b"\n"


class LocalCorpus(Corpus):
    """Documents from a file, or from every ``.txt``/``.jsonl`` file under a folder."""

    def __init__(
        self, path: str | Path, text_field: str = "text", sampling: str = "stream", encoding: str = DEFAULT_ENCODING
    ):
        self.path = Path(path)
        self.text_field = text_field
        self.sampling = sampling
        self.encoding = check_encoding(encoding)
        self.name = str(self.path)
        self.description = f"local files at {self.path}"
        self.files = self._files()
        if encoding != DEFAULT_ENCODING and not any(p.suffix in DECODED for p in self.files):
            raise OptionError(
                "encoding",
                f"{{encoding={literal(encoding)}}} has no effect on {literal(repr(str(self.path)))}: .parquet/.arrow "
                "strings are UTF-8 by format; drop it",
            )

    def _files(self) -> list[Path]:
        if not self.path.exists():
            raise CalibpruneError(f"calibration source {str(self.path)!r} does not exist")
        if self.path.is_dir():
            _refuse_set_folder(self.path)
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
        """sha256 of the files read (their bytes and relative paths), and how they are read (the
        encoding and text field change the texts): changes exactly when the texts can, whatever
        the files' mtimes say (see :mod:`calibprune.utils.content`)."""
        digest = files_digest(self.files, self.path if self.path.is_dir() else self.path.parent)
        return f"{digest};encoding={self.encoding};text_field={self.text_field}"

    def reading(self) -> dict:
        """How the files are read, recorded beside the source's name in a calibration manifest."""
        return {"encoding": self.encoding, "text_field": self.text_field}

    def describe(self) -> dict:
        return {**super().describe(), **self.reading()}

    def check_readable(self) -> None:
        """Read every document once, so that a file that cannot be decoded or parsed is
        refused before a model is loaded for it."""
        for _ in self._all_documents():
            pass

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
                text = decode(file.read_bytes(), self.encoding, file)
                text = text.replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as text mode reads
                for i, para in enumerate(p for p in text.split("\n\n") if p.strip()):
                    yield Document(id=f"{rel}#{i}", text=para.strip())

    def _columnar(self, file: Path, rel: str) -> Iterator[Document]:
        table = _read_table(file)
        if self.text_field not in table.column_names:
            raise OptionError(
                "text_field",
                f"{literal(file)} has no column {literal(repr(self.text_field))} (columns: "
                f"{literal(', '.join(table.column_names))}): pass {{text_field}} with the name of the text column",
            )
        ids = table.column("id").to_pylist() if "id" in table.column_names else None
        for i, text in enumerate(table.column(self.text_field).to_pylist()):
            yield Document(id=str(ids[i]) if ids else f"{rel}:{i}", text=str(text or ""))

    def _jsonl(self, file: Path, rel: str) -> Iterator[Document]:
        for line_no, line in self._lines(file):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise CalibpruneError(f"{file}:{line_no} is not valid JSON ({e.msg})") from None
            if self.text_field not in record:
                raise OptionError(
                    "text_field",
                    f"{literal(file)}:{line_no} has no field {literal(repr(self.text_field))} (fields: "
                    f"{literal(', '.join(record))}): pass {{text_field}} with the name of the text field",
                )
            yield Document(id=str(record.get("id", f"{rel}:{line_no}")), text=str(record[self.text_field]))

    def _lines(self, file: Path) -> Iterator[tuple[int, str]]:
        """(line number, decoded line) of a .jsonl file, read line by line as bytes."""
        if not _newline_is_one_byte(self.encoding):
            raise OptionError(
                "encoding",
                f"{{encoding={literal(self.encoding)}}}: {literal(file)} is read line by line, which needs an encoding "
                "whose newline is the byte 0x0a (utf-8, latin-1, cp1252, ...): convert the file to utf-8",
            )
        offset = 0
        with open(file, "rb") as f:
            for line_no, raw in enumerate(f, 1):
                yield line_no, decode(raw, self.encoding, file, offset, line_no)
                offset += len(raw)


def _refuse_set_folder(path: Path) -> None:
    """A calibration-set folder is never read as text: its windows are a set's, not a corpus's documents."""
    from ..calibration.folder import looks_like_set, read_set  # calibration sits above corpora: imported late

    if looks_like_set(path):
        read_set(path)  # a damaged set is refused with what is wrong and how to rebuild it
        raise OptionError(
            "",
            f"{literal(repr(str(path)))} is a calibration-set folder, not a text corpus: pass it to `prune` as its "
            f"{{calib}} or to `analyze` in its {{sets}}; to sample its windows' text as a corpus, pass "
            f"{literal(repr(str(path / 'windows.jsonl')))}",
        )


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
