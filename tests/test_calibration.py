"""Corpora and window sampling."""

import json

import pytest
import torch

from calibprune.calibration import build_calibration, sample_windows
from calibprune.corpora import LocalCorpus, document_split, get_corpus
from calibprune.errors import CalibpruneError


def test_same_seed_same_windows_other_seed_other_windows(tokenizer, text_corpus):
    a = build_calibration(str(text_corpus), tokenizer, nsamples=8, seqlen=40, seed=3)
    b = build_calibration(str(text_corpus), tokenizer, nsamples=8, seqlen=40, seed=3)
    c = build_calibration(str(text_corpus), tokenizer, nsamples=8, seqlen=40, seed=4)
    assert torch.equal(a.input_ids, b.input_ids) and a.fingerprint == b.fingerprint
    assert not torch.equal(a.input_ids, c.input_ids) and a.fingerprint != c.fingerprint
    assert a.manifest["seed"] == 3 and a.manifest["sampling"] == "stream"


def test_stream_windows_are_spans_of_the_joined_calibration_pool(tokenizer, text_corpus):
    corpus = get_corpus(str(text_corpus))
    calib = sample_windows(corpus, tokenizer, nsamples=5, seqlen=30, seed=0, mode="stream")
    stream = tokenizer("\n\n".join(corpus.texts("calib")), add_special_tokens=False)["input_ids"]
    text = ",".join(map(str, stream))
    for window in calib.input_ids.tolist():
        assert ",".join(map(str, window)) in text


def test_document_windows_never_cross_a_document(tokenizer, tmp_path):
    docs = [("A" * (30 + i)) + ("B" * 30) for i in range(40)]  # each doc: only A's then B's
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"text": d}) for d in docs))
    calib = sample_windows(get_corpus(str(path)), tokenizer, nsamples=10, seqlen=50, seed=0, mode="document")
    a, b = tokenizer("A")["input_ids"][0], tokenizer("B")["input_ids"][0]
    for window in calib.input_ids.tolist():
        # within one document the A's precede the B's: a window spanning two documents would show B then A
        first_b = window.index(b) if b in window else len(window)
        assert set(window) <= {a, b} and all(t == b for t in window[first_b:])
    corpus = get_corpus(str(path))
    eligible = sum(len(t) > 80 for t in corpus.texts("calib"))  # one token per byte
    assert 0 < eligible < 20
    with pytest.raises(
        CalibpruneError,
        match=f"only {eligible} documents longer than 80 tokens.*or sampling='stream' \\(join documents",
    ):
        sample_windows(corpus, tokenizer, nsamples=20, seqlen=80, seed=0, mode="document")


def test_calibration_and_heldout_pools_are_disjoint_and_stable():
    corpus = get_corpus("wiki-en")
    calib_ids = {d.id for d in corpus.documents("calib")}
    heldout_ids = {d.id for d in corpus.documents("heldout")}
    assert calib_ids and heldout_ids and not calib_ids & heldout_ids
    assert len(heldout_ids) / (len(calib_ids) + len(heldout_ids)) == pytest.approx(0.10, abs=0.01)
    assert all(document_split("wiki-en", i) == "heldout" for i in heldout_ids)


def test_jsonl_text_field_and_errors(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"content": "hello world"}\n{"content": "second doc"}\n')
    assert LocalCorpus(path, text_field="content").texts() == ["hello world", "second doc"]
    with pytest.raises(
        CalibpruneError,
        match="has no field 'text' \\(fields: content\\): pass text_field with the name of the text field$",
    ):
        LocalCorpus(path).texts()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(CalibpruneError, match="holds no text"):
        get_corpus(str(empty))
    with pytest.raises(CalibpruneError, match="does not exist"):
        get_corpus(str(tmp_path / "missing.txt"))


def _stream_positions(stream: list[int], window: list[int]) -> list[int]:
    return [i for i in range(len(stream) - len(window) + 1) if stream[i : i + len(window)] == window]


def test_stream_windows_do_not_overlap_and_the_manifest_says_so(tokenizer, text_corpus):
    corpus = get_corpus(str(text_corpus))
    stream = tokenizer("\n\n".join(corpus.texts("calib")), add_special_tokens=False)["input_ids"]
    nsamples, seqlen = 40, len(stream) // 45  # the windows cover ~89 % of the stream: overlaps would be likely
    calib = sample_windows(corpus, tokenizer, nsamples=nsamples, seqlen=seqlen, seed=0, mode="stream")
    spans = sorted(_stream_positions(stream, w)[0] for w in calib.input_ids.tolist())
    assert all(b - a >= seqlen for a, b in zip(spans, spans[1:], strict=False))
    assert calib.manifest["duplicated_token_share"] == 0.0 and calib.manifest["windows"] == "disjoint"
    # the published loaders' rule (independent starts) overlaps here, and the manifest measures it
    loose = sample_windows(corpus, tokenizer, nsamples, seqlen, seed=0, mode="stream", windows="random")
    share = loose.manifest["duplicated_token_share"]
    covered = set()
    for window in loose.input_ids.tolist():
        start = _stream_positions(stream, window)[0]
        covered.update(range(start, start + seqlen))
    assert share > 0.2 and share == pytest.approx(1 - len(covered) / (nsamples * seqlen))


def test_disjoint_windows_tile_a_stream_that_fits_exactly_and_are_placed_uniformly():
    from calibprune.calibration.sampling import disjoint_starts, duplicated_share

    starts = disjoint_starts(100, 10, 10, torch.Generator().manual_seed(0))
    assert sorted(starts) == list(range(0, 100, 10)) and duplicated_share(starts, 10) == 0.0
    # 2 windows of 3 in 7 tokens: the 3 placements (0,3) (0,4) (1,4) come up equally often
    counts = {}
    generator = torch.Generator().manual_seed(1)
    for _ in range(3000):
        key = tuple(sorted(disjoint_starts(7, 2, 3, generator)))
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) == {(0, 3), (0, 4), (1, 4)}
    assert all(abs(c - 1000) < 120 for c in counts.values())
    assert duplicated_share([0, 2], 4) == pytest.approx(0.25)  # [0,4) and [2,6): 2 of 8 tokens repeat


def test_unknown_window_rule_is_refused(tokenizer, text_corpus):
    with pytest.raises(CalibpruneError, match="windows 'overlap' is unknown: use 'disjoint'"):
        build_calibration(str(text_corpus), tokenizer, nsamples=2, seqlen=10, windows="overlap")


@pytest.fixture
def token_cache(tmp_path, monkeypatch):
    """The token-stream cache in a temporary folder, caching pools of any size."""
    from calibprune.corpora import tokens

    folder = tmp_path / "token-cache"
    monkeypatch.setattr(tokens, "_folder", lambda: folder)
    monkeypatch.setattr(tokens, "MIN_CACHED_TOKENS", 0)
    return folder


def test_cached_token_stream_gives_the_same_windows_and_follows_the_corpus(tokenizer, text_corpus, token_cache):
    from calibprune.calibration.sampling import windows_from_texts

    corpus = LocalCorpus(text_corpus)
    uncached, _ = windows_from_texts(corpus.texts("calib"), tokenizer, 6, 40, seed=3)
    cold = sample_windows(corpus, tokenizer, 6, 40, seed=3)  # tokenizes and writes the file
    (first,) = token_cache.glob("*.calib.*.npy")
    warm = sample_windows(corpus, tokenizer, 6, 40, seed=3)  # reads it
    assert torch.equal(cold.input_ids, uncached) and torch.equal(warm.input_ids, uncached)
    assert cold.manifest == warm.manifest
    # a changed corpus is a new key: its stream is tokenized again and replaces the stale file
    text_corpus.write_text(text_corpus.read_text() + "\n\nA new last paragraph about a fox and a dog.")
    changed = LocalCorpus(text_corpus)
    again, _ = windows_from_texts(changed.texts("calib"), tokenizer, 6, 40, seed=3)
    assert torch.equal(sample_windows(changed, tokenizer, 6, 40, seed=3).input_ids, again)
    (second,) = token_cache.glob("*.calib.*.npy")
    assert second != first and not first.exists()
    # another pool of the same corpus has a file of its own
    sample_windows(changed, tokenizer, 1, 40, seed=0, split="heldout")
    assert len(list(token_cache.glob("*.npy"))) == 2


def test_token_stream_without_a_corpus_signature_is_not_cached(tokenizer, text_corpus, token_cache, monkeypatch):
    corpus = LocalCorpus(text_corpus)
    monkeypatch.setattr(corpus, "version", lambda: None)
    sample_windows(corpus, tokenizer, 2, 40, seed=0)
    assert not token_cache.exists() or not list(token_cache.iterdir())


def test_small_pools_are_not_cached(tokenizer, text_corpus, token_cache, monkeypatch):
    from calibprune.corpora import tokens

    monkeypatch.setattr(tokens, "MIN_CACHED_TOKENS", 10**9)
    sample_windows(LocalCorpus(text_corpus), tokenizer, 2, 40, seed=0)
    assert not token_cache.exists() or not list(token_cache.iterdir())
