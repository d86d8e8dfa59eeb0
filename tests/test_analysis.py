"""MinHash-LSH similarity and membership analysis: estimates, files, plots, bad input."""

import json
import math

import pytest
from conftest import run_cli

from calibprune.analysis import TextSet, exact_jaccard, load_sets, ngram_set, similarity_report
from calibprune.analysis.jobs import run_membership, run_similarity
from calibprune.analysis.options import MembershipOptions, SimilarityOptions
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
    report = run_similarity(
        [str(text_corpus), "corpus:fortunes"], out, SimilarityOptions(reference="corpus:jargon", max_texts=200)
    )
    assert {p.name for p in out.iterdir()} == {"similarity.json", "similarity.csv", "similarity.png"}
    png = (out / "similarity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert json.loads((out / "similarity.json").read_text())["reference"] == "corpus:jargon"
    assert (out / "similarity.csv").read_text().splitlines()[0].startswith("set,")
    assert len(report["matrix"]) == 3 and report["sets"]["corpus:fortunes"]["texts"] == 200


def test_membership_job_writes_scores_summary_and_violins(tmp_path, model_dir, text_corpus):
    out = tmp_path / "mink"
    report = run_membership(
        str(model_dir),
        [str(text_corpus), "corpus:kjv"],
        out,
        MembershipOptions(k=0.2, max_texts=12, max_tokens=48),
        progress=False,
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
        (dict(n=0), "^n 0 must be >= 1"),  # Python: the keywords
        (dict(num_perm=8), "^num_perm 8 must be >= 16"),
        (dict(unit="char"), "^unit 'char' is unknown"),
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
    with pytest.raises(CalibpruneError, match=r"^unit='token' needs a tokenizer \(it defines the tokens\)$"):
        similarity_report([TextSet("a", ["x y z"])], unit="token")


def test_containment_is_the_share_of_a_texts_ngrams_found_in_the_reference():
    reference = TextSet("ref", ["a b c d e", "p q r"])
    probe = TextSet("probe", ["a b c x", "c d e", "z"])  # 2-grams: {ab, bc, cx} -> 2/3; {cd, de} -> 1; none
    report = similarity_report([probe], reference, n=2, num_perm=64, containment_threshold=0.7)
    c = report["containment"]["probe"]
    assert c["per_text"] == [pytest.approx(2 / 3, abs=1e-6), 1.0, None]  # a 1-word text has no 2-gram
    assert c["texts_scored"] == 2 and c["share_contained"] == 0.5  # only "c d e" reaches 0.7
    assert c["mean"] == pytest.approx((2 / 3 + 1) / 2, abs=1e-6)
    assert report["reference_index"]["texts"] == 2 and report["reference_index"]["ngrams"] == 6


def _sampled_set(tmp_path, corpus: str, tokenizer, name: str):
    from calibprune.calibration import sample_windows
    from calibprune.corpora import get_corpus

    # byte tokens: 512-byte windows are ~90 words, cut mid-word and across joined documents
    folder = tmp_path / name
    sample_windows(get_corpus(corpus), tokenizer, 40, 512, 0).save(folder)
    return str(folder)


def test_a_set_sampled_from_the_reference_is_contained_in_it_at_default_settings(tmp_path, tokenizer):
    from calibprune.corpora import get_corpus

    from_kjv = _sampled_set(tmp_path, "kjv", tokenizer, "from-kjv")
    from_jargon = _sampled_set(tmp_path, "jargon", tokenizer, "from-jargon")
    # --max-texts 5 cuts only the compared sets: the reference is indexed whole
    report = run_similarity(
        [from_kjv, from_jargon],
        tmp_path / "sim",
        SimilarityOptions(reference="corpus:kjv", max_texts=5),
        progress=False,
    )
    assert report["reference_index"]["texts"] == len(get_corpus("kjv").texts("all"))
    assert report["sets"][from_kjv]["texts"] == 40  # a calibration set is never cut
    assert report["containment"][from_kjv]["share_contained"] >= 0.95
    assert report["containment"][from_jargon]["share_contained"] <= 0.05
    assert min(v for v in report["containment"][from_kjv]["per_text"]) > 0.8
    assert report["vs_reference"][from_kjv] < 0.1  # why Jaccard cannot answer "drawn from it?"
    saved = json.loads((tmp_path / "sim" / "similarity.json").read_text())
    assert len(saved["containment"][from_jargon]["per_text"]) == 40


def test_max_texts_cuts_the_compared_sets_and_says_how_many_were_available(tmp_path):
    report = run_similarity(["corpus:fortunes"], tmp_path / "sim", SimilarityOptions(max_texts=30), progress=False)
    origin = report["sets"]["corpus:fortunes"]
    assert origin["texts"] == 30 and origin["available_texts"] > 30


def test_missing_path_is_named_as_a_missing_path(tmp_path):
    with pytest.raises(CalibpruneError, match=r"'.*nope\.txt' does not exist: pass a calibration-set folder"):
        load_sets([str(tmp_path / "nope.txt")])
    with pytest.raises(CalibpruneError, match="for the corpus, pass corpus:kjv"):
        load_sets(["kjv"])


def test_cli_similarity_quiet_prints_tables_with_whole_names_and_no_notices(tmp_path, text_corpus):
    done = run_cli(
        "analyze", "similarity", "--sets", f"corpus:fortunes,{text_corpus}", "--reference", "corpus:jargon",
        "--max-texts", "50", "--output", str(tmp_path / "sim"), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar, no notice
    assert "corpus:fortunes" in done.stdout.replace("\n", "").replace("│", "").replace(" ", "")
    assert "drawn from corpus:jargon?" in done.stdout
    loud = run_cli(
        "analyze", "similarity", "--sets", "corpus:fortunes", "--reference", "corpus:jargon",
        "--max-texts", "50", "--output", str(tmp_path / "sim2"),
    )  # fmt: skip
    assert "set corpus:fortunes: 50 texts of" in loud.stderr and "texts (all, never cut)" in loud.stderr


def test_violin_labels_carry_n_and_the_training_like_direction(tmp_path, monkeypatch):
    from calibprune.analysis import plots

    seen = {}
    real = plots._pyplot

    def spy():
        plt = real()
        original = plt.subplots

        def subplots(*args, **kwargs):
            fig, axes = original(*args, **kwargs)
            seen["axes"] = axes
            return fig, axes

        monkeypatch.setattr(plt, "subplots", subplots)
        return plt

    monkeypatch.setattr(plots, "_pyplot", spy)
    scores = {"a": {"mink++": [0.1, 0.2, float("nan")], "ppl": [3.0, 4.0, 5.0]}}
    plots.violins(scores, ("mink++", "ppl"), "t", tmp_path / "v.png")
    mink, ppl = seen["axes"][0]  # one row of panels (squeeze=False)
    assert [t.get_text() for t in mink.get_xticklabels()] == ["a\n(n=2)"]  # NaN not counted
    assert "higher = more training-like" in mink.get_ylabel()
    assert "lower = more training-like" in ppl.get_ylabel()
