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
