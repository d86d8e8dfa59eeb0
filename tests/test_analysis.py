"""MinHash-LSH similarity and membership analysis: estimates, files, plots, bad input."""

import json
import math

import pytest

from calibprune.analysis import TextSet, exact_jaccard, load_sets, ngram_set, similarity_report
from calibprune.analysis.jobs import run_membership, run_similarity
from calibprune.errors import CalibpruneError

NUM_PERM = 256


def _trigram_texts(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}a{i} {prefix}b{i} {prefix}c{i}" for i in range(start, start + count)]  # one 3-gram per text


def test_constructed_overlap_is_estimated_within_minhash_error():
    shared = _trigram_texts("s", 200)
    a = TextSet("a", shared + _trigram_texts("p", 200))
    b = TextSet("b", shared + _trigram_texts("q", 200))
    assert exact_jaccard(ngram_set(a.texts), ngram_set(b.texts)) == pytest.approx(1 / 3)
    report = similarity_report(
        [a, b, TextSet("a-copy", list(a.texts)), TextSet("other", _trigram_texts("z", 400))], num_perm=NUM_PERM
    )
    m = dict(zip(report["names"], report["matrix"], strict=True))
    sigma = math.sqrt((1 / 3) * (2 / 3) / NUM_PERM)
    assert abs(m["a"][1] - 1 / 3) < 4 * sigma  # estimate of J = 200 / 600
    assert m["a"][2] == 1.0  # identical sets
    assert m["a"][3] < 0.03 and m["b"][3] < 0.03  # disjoint sets
    assert report["ngrams"] == {"a": 400, "b": 400, "a-copy": 400, "other": 400}


def test_ngrams_never_span_two_texts_and_respect_n():
    assert ngram_set(["one two", "three four"], n=2) == {"one two", "three four"}
    assert ngram_set(["One, two; THREE"], n=3) == {"one two three"}
    assert ngram_set(["a b c d"], n=1) == {"a", "b", "c", "d"}


def test_lsh_near_duplicate_share_against_a_reference():
    reference = TextSet("ref", [" ".join(f"w{i}_{j}" for j in range(30)) for i in range(50)])
    copies = TextSet("copies", reference.texts[:10])
    strangers = TextSet("strangers", [" ".join(f"v{i}_{j}" for j in range(30)) for i in range(10)])
    report = similarity_report([copies, strangers], reference, num_perm=128)
    assert report["lsh_near_duplicate_share"] == {"copies": 1.0, "strangers": 0.0}
    assert report["vs_reference"]["copies"] == pytest.approx(0.2, abs=0.1)  # 10 of 50 documents


def test_similarity_job_writes_json_csv_and_a_heatmap(tmp_path, text_corpus):
    out = tmp_path / "sim"
    report = run_similarity([str(text_corpus), "corpus:fortunes"], "corpus:jargon", out, max_texts=200)
    assert {p.name for p in out.iterdir()} == {"similarity.json", "similarity.csv", "similarity.png"}
    png = (out / "similarity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert json.loads((out / "similarity.json").read_text())["reference"] == "corpus:jargon"
    assert (out / "similarity.csv").read_text().splitlines()[0].startswith("set,")
    assert len(report["matrix"]) == 3 and report["sets"]["corpus:fortunes"]["texts"] == 200


def test_membership_job_writes_scores_summary_and_violins(tmp_path, model_dir, text_corpus):
    out = tmp_path / "mink"
    report = run_membership(
        str(model_dir), [str(text_corpus), "corpus:kjv"], out, k=0.2, max_texts=12, max_tokens=48, progress=False
    )
    assert {p.name for p in out.iterdir()} == {"membership.json", "summary.csv", "membership.png"}
    assert (out / "membership.png").stat().st_size > 5000
    for per in report["summary"].values():
        assert per["mink++"]["n"] == 12 and per["mink++"]["q1"] <= per["mink++"]["median"] <= per["mink++"]["q3"]
        assert per["ppl"]["min"] > 1
    assert len(report["scores"]["corpus:kjv"]["mink"]) == 12


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n=0), "--ngram 0 must be >= 1"),
        (dict(num_perm=8), "--num-perm 8 must be >= 16"),
        (dict(unit="char"), "--unit 'char' is unknown"),
    ],
)
def test_bad_similarity_parameters(kwargs, message):
    with pytest.raises(CalibpruneError, match=message):
        similarity_report([TextSet("a", ["x y z"])], **kwargs)


def test_bad_sets(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": "   "}\n')
    with pytest.raises(CalibpruneError, match="hold no text"):
        load_sets([str(empty)])
    with pytest.raises(CalibpruneError, match="unknown corpus 'nope'"):
        load_sets(["corpus:nope"])
    with pytest.raises(CalibpruneError, match="no sets given"):
        load_sets([])
    with pytest.raises(CalibpruneError, match="--unit token needs --model"):
        similarity_report([TextSet("a", ["x y z"])], unit="token")
