"""Token scores, perplexity, Min-K% and Min-K%++ against independent computations."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_model

from calibprune.errors import CalibpruneError
from calibprune.scoring import min_k, min_k_plus_plus, perplexity_of, score_sequences, score_text


def _reference(model, ids: list[int], k: float) -> dict:
    """Straight from the definitions, one sequence at a time, no padding, no batching."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].double()
    logp = F.log_softmax(logits, -1)
    p = logp.exp()
    token = logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    mu = (p * logp).sum(-1)
    sigma = ((p * (logp - mu[:, None]) ** 2).sum(-1)).sqrt()
    z = (token - mu) / sigma
    count = max(1, int(len(token) * k))
    return {
        "ppl": math.exp(-float(token.mean())),
        "mink": float(torch.sort(token).values[:count].mean()),
        "mink++": float(torch.sort(z).values[:count].mean()),
    }


@pytest.mark.parametrize("k", [0.1, 0.5, 1.0])
def test_scores_match_the_definitions_with_padding_and_short_texts(k):
    model = tiny_model("llama")
    g = torch.Generator().manual_seed(0)
    # lengths 3 and 5 are shorter than 1/k = 10 tokens for k = 0.1
    sequences = [torch.randint(0, 256, (n,), generator=g).tolist() for n in (40, 3, 17, 5, 64)]
    got = score_text(model, sequences, ("ppl", "mink", "mink++"), k=k, max_batch_tokens=80)
    for i, ids in enumerate(sequences):
        expected = _reference(model, ids, k)
        for kind in ("ppl", "mink", "mink++"):
            assert got[kind][i] == pytest.approx(expected[kind], rel=1e-4, abs=1e-5), (kind, i)


def test_chunking_does_not_change_results():
    """Chunks span all rows of a batch (3 rows, 7 tokens -> 2 positions per chunk)."""
    model = tiny_model("llama")
    g = torch.Generator().manual_seed(1)
    ids = [torch.randint(0, 256, (n,), generator=g).tolist() for n in (50, 41, 30)]
    a = score_sequences(model, ids, distribution=True, greedy=True, chunk_tokens=7)
    b = score_sequences(model, ids, distribution=True, greedy=True, chunk_tokens=100_000)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.logprob, y.logprob)
        torch.testing.assert_close(x.std, y.std)
        assert torch.equal(x.greedy, y.greedy)


def test_own_greedy_continuations_score_higher_than_shuffled_tokens():
    """Min-K%++ sees a model's own most-likely text as more training-like than the same
    tokens in random order."""
    model = tiny_model("llama")
    g = torch.Generator().manual_seed(2)
    own, shuffled = [], []
    for _ in range(6):
        prompt = torch.randint(0, 256, (1, 2), generator=g)
        with torch.no_grad():
            out = model.generate(
                prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=30, do_sample=False, pad_token_id=0
            )[0].tolist()
        own.append(out)
        perm = torch.randperm(len(out) - 1, generator=g) + 1
        shuffled.append([out[0]] + [out[j] for j in perm.tolist()])
    scores = score_text(model, own + shuffled, ("mink++",), k=0.2)["mink++"]
    assert sum(scores[:6]) / 6 > sum(scores[6:]) / 6
    assert sum(a > b for a, b in zip(scores[:6], scores[6:], strict=True)) >= 5


def test_single_token_texts_score_nan_and_bad_k_is_refused():
    model = tiny_model("llama")
    got = score_text(model, [[5], [5, 6, 7]], ("ppl", "mink++"), k=0.5)
    assert math.isnan(got["ppl"][0]) and math.isnan(got["mink++"][0])
    assert not math.isnan(got["mink++"][1])
    for k in (0.0, 1.5, -0.2):
        with pytest.raises(CalibpruneError, match=f"^k {k} must be in \\(0, 1\\]"):
            score_text(model, [[1, 2, 3]], ("mink++",), k=k)
    with pytest.raises(CalibpruneError, match="unknown score"):
        score_text(model, [[1, 2, 3]], ("zlib",))
    scores = score_sequences(model, [[1, 2, 3]])[0]
    assert perplexity_of(scores) > 1 and min_k(scores, 1.0) == pytest.approx(float(scores.logprob.mean()))
    with pytest.raises(ValueError, match="distribution=True"):
        min_k_plus_plus(scores)
