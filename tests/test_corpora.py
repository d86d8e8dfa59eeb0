"""Corpus sources: offline corpora, Debian unpacking, columnar local files, hub names offline."""

import io
import tarfile

import pytest
from conftest import run_cli

from calibprune.corpora import OFFLINE_NAMES, get_corpus
from calibprune.corpora.debian import extract
from calibprune.errors import CalibpruneError

FIRST_WORDS = {
    "wiki-en": None,
    "wiki-fr": None,
    "wiki-es": None,
    "kjv": ("Ge1", "In the beginning God created the heaven and the earth."),
    "gcide": None,
    "pydocs": None,
    "jargon": None,
    "fortunes": None,
    "pycode": None,
}


@pytest.mark.parametrize("name", OFFLINE_NAMES)
def test_every_offline_corpus_is_installed_and_split(name):
    """The README set-up installs all of them (`calibprune corpora --install`)."""
    corpus = get_corpus(name)
    calib = {d.id for d in corpus.documents("calib")}
    heldout = {d.id for d in corpus.documents("heldout")}
    assert len(calib) > 100 and len(heldout) > 10 and not calib & heldout
    if FIRST_WORDS[name]:
        doc_id, opening = FIRST_WORDS[name]
        assert next(d for d in corpus.documents("all") if d.id == doc_id).text.startswith(opening)


def test_kjv_has_every_chapter():
    assert sum(1 for _ in get_corpus("kjv").documents("all")) == 1189


def _ar(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


def test_deb_extraction_without_dpkg(tmp_path):
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:xz") as tar:
        content = b"verse one\nverse two\n"
        info = tarfile.TarInfo("./usr/share/doc/x/file.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    deb = tmp_path / "x_1.0_all.deb"
    deb.write_bytes(_ar({"debian-binary": b"2.0\n", "control.tar.xz": b"", "data.tar.xz": payload.getvalue()}))
    extract(deb, tmp_path / "root")
    assert (tmp_path / "root/usr/share/doc/x/file.txt").read_text() == "verse one\nverse two\n"


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_columnar_local_files(tmp_path, suffix):
    import pyarrow as pa

    table = pa.table({"content": ["first document", "second document"], "id": ["a", "b"]})
    path = tmp_path / f"data{suffix}"
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    corpus = get_corpus(str(path), text_field="content")
    assert [(d.id, d.text) for d in corpus.documents("all")] == [("a", "first document"), ("b", "second document")]
    with pytest.raises(CalibpruneError, match="no column 'text' \\(columns: content, id\\)"):
        list(get_corpus(str(path)).documents("all"))


def test_hub_corpus_offline_names_the_offline_ones(monkeypatch):
    from calibprune.corpora import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    corpus = get_corpus("c4")
    assert corpus.sampling == "document" and corpus.source.path == "allenai/c4"
    with pytest.raises(CalibpruneError, match="allenai/c4.*cannot be reached.*offline corpora: wiki-en.*kjv"):
        list(corpus.documents("calib"))


def test_corpora_command_lists_sizes():
    done = run_cli("corpora", "--json")
    assert done.returncode == 0, done.stderr
    import json

    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert rows["wiki-en"]["status"] == "ready" and rows["wiki-en"]["pools"]["heldout"]["documents"] > 500
    assert rows["c4"]["status"] == "needs network"


LATIN1_DOCS = ["Un nouveau cluster de données", "Deuxième paragraphe: naïve façade"]


def test_a_latin1_txt_is_refused_with_its_byte_offset_and_read_with_encoding(tmp_path):
    from calibprune.corpora import LocalCorpus

    path = tmp_path / "latin1.txt"
    data = "\n\n".join(LATIN1_DOCS).encode("latin-1")
    path.write_bytes(data)
    offset = data.index("é".encode("latin-1"))  # the first byte that is not utf-8
    with pytest.raises(CalibpruneError) as refused:
        LocalCorpus(path).texts()
    message = str(refused.value)
    assert f"{path}: byte {offset} (line 1) is not valid utf-8 (bytes e9)" in message
    assert message.endswith("pass encoding='latin-1' (or the file's encoding)")  # Python: the keyword
    from calibprune.cli_options import cli_name

    assert refused.value.render(cli_name).endswith("pass --encoding latin-1 (or the file's encoding)")  # the CLI
    corpus = LocalCorpus(path, encoding="latin-1")
    assert corpus.texts() == LATIN1_DOCS  # exactly the text, no U+FFFD
    assert corpus.reading() == {"encoding": "latin-1", "text_field": "text"}
    assert "encoding=latin-1" in corpus.version() and corpus.version() != LocalCorpus(path).version()


def test_a_latin1_jsonl_is_refused_with_offset_and_line_and_read_with_encoding(tmp_path):
    from calibprune.corpora import LocalCorpus

    path = tmp_path / "latin1.jsonl"
    lines = [b'{"text": "plain ascii"}\n'] + [(f'{{"text": "{doc}"}}\n').encode("latin-1") for doc in LATIN1_DOCS]
    path.write_bytes(b"".join(lines))
    offset = len(lines[0]) + lines[1].index("é".encode("latin-1"))
    with pytest.raises(
        CalibpruneError,
        match=rf"byte {offset} \(line 2\) is not valid utf-8 .*pass encoding='latin-1' \(or the file's encoding\)$",
    ):
        LocalCorpus(path).texts()
    assert LocalCorpus(path, encoding="latin-1").texts() == ["plain ascii", *LATIN1_DOCS]


def test_encoding_names_are_checked_and_columnar_files_refuse_another_encoding(tmp_path):
    from calibprune.corpora import LocalCorpus

    path = tmp_path / "a.txt"
    path.write_text("hello")
    with pytest.raises(CalibpruneError, match="^encoding 'latin-9x' is not an encoding Python knows"):
        LocalCorpus(path, encoding="latin-9x")
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["x"]}), parquet)
    with pytest.raises(CalibpruneError, match="^encoding='latin-1' has no effect on .*UTF-8 by format; drop it$"):
        LocalCorpus(parquet, encoding="latin-1")


def test_crlf_txt_still_splits_on_blank_lines(tmp_path):
    from calibprune.corpora import LocalCorpus

    path = tmp_path / "crlf.txt"
    path.write_bytes(b"first doc\r\n\r\nsecond doc\r\n")
    assert LocalCorpus(path).texts() == ["first doc", "second doc"]
