"""How much two sets of texts share n-grams: Jaccard similarity, estimated with MinHash.

For sets A and B with n-gram sets G(A), G(B) (word n-grams of lower-cased ``\\w+``
tokens, or n-grams of model token ids), J(A, B) = |G(A) & G(B)| / |G(A) | G(B)|.
A MinHash signature of ``num_perm`` permutations estimates J with standard error
sqrt(J (1 - J) / num_perm) (datasketch). Besides the set-level matrix, each set is
compared text by text with a reference through MinHash-LSH (datasketch's
``MinHashLSH``): the share of its texts that have a near-duplicate (estimated
Jaccard >= ``lsh_threshold``) among the reference's documents.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import CalibpruneError
from ..models.loading import tokenize
from .sets import TextSet

UNITS = ("word", "token")
_WORD = re.compile(r"\w+", re.UNICODE)


def check_params(n: int, num_perm: int, unit: str, lsh_threshold: float) -> None:
    if n < 1:
        raise CalibpruneError(f"--ngram {n} must be >= 1 (the paper uses 3-grams)")
    if num_perm < 16:
        raise CalibpruneError(f"--num-perm {num_perm} must be >= 16 (estimates get too coarse below)")
    if unit not in UNITS:
        raise CalibpruneError(f"--unit {unit!r} is unknown: use one of {', '.join(UNITS)}")
    if not 0 < lsh_threshold < 1:
        raise CalibpruneError(f"--lsh-threshold {lsh_threshold} must be in (0, 1)")


def _units(text: str, unit: str, tokenizer) -> list[str]:
    if unit == "word":
        return _WORD.findall(text.lower())
    return [str(i) for i in tokenize(tokenizer, text)]


def ngram_set(texts: list[str], n: int = 3, unit: str = "word", tokenizer=None) -> set[str]:
    """All n-grams of all texts (n-grams never span two texts)."""
    grams: set[str] = set()
    for text in texts:
        units = _units(text, unit, tokenizer)
        grams.update(" ".join(units[i : i + n]) for i in range(len(units) - n + 1))
    return grams


def exact_jaccard(a: set, b: set) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def minhash(grams: set[str], num_perm: int, seed: int):
    from datasketch import MinHash

    signature = MinHash(num_perm=num_perm, seed=seed)
    if grams:
        signature.update_batch([g.encode("utf-8") for g in grams])
    return signature


def similarity_report(
    sets: list[TextSet],
    reference: TextSet | None = None,
    n: int = 3,
    unit: str = "word",
    num_perm: int = 128,
    seed: int = 0,
    lsh_threshold: float = 0.5,
    tokenizer=None,
) -> dict:
    """Matrix of estimated Jaccard similarities between all sets (reference included)."""
    check_params(n, num_perm, unit, lsh_threshold)
    if unit == "token" and tokenizer is None:
        raise CalibpruneError("--unit token needs --model (whose tokenizer defines the tokens)")
    everything = sets + ([reference] if reference is not None and reference.name not in {s.name for s in sets} else [])
    grams = {s.name: ngram_set(s.texts, n, unit, tokenizer) for s in everything}
    signatures = {name: minhash(g, num_perm, seed) for name, g in grams.items()}
    names = list(grams)
    matrix = np.array([[signatures[a].jaccard(signatures[b]) for b in names] for a in names])
    report = {
        "params": {"ngram": n, "unit": unit, "num_perm": num_perm, "seed": seed, "lsh_threshold": lsh_threshold},
        "names": names,
        "ngrams": {name: len(g) for name, g in grams.items()},
        "matrix": matrix.round(6).tolist(),
        "sets": {s.name: s.origin | {"texts": len(s.texts)} for s in everything},
    }
    if reference is not None:
        report["reference"] = reference.name
        report["vs_reference"] = {s.name: float(matrix[names.index(s.name), names.index(reference.name)]) for s in sets}
        report["lsh_near_duplicate_share"] = _lsh_shares(
            sets, reference, n, unit, num_perm, seed, lsh_threshold, tokenizer
        )
    return report


def _lsh_shares(sets, reference, n, unit, num_perm, seed, threshold, tokenizer) -> dict[str, float]:
    from datasketch import MinHashLSH

    index = MinHashLSH(threshold=threshold, num_perm=num_perm)
    for i, text in enumerate(reference.texts):
        grams = ngram_set([text], n, unit, tokenizer)
        if grams:
            index.insert(str(i), minhash(grams, num_perm, seed))
    shares = {}
    for s in sets:
        hits = total = 0
        for text in s.texts:
            grams = ngram_set([text], n, unit, tokenizer)
            if grams:
                total += 1
                hits += bool(index.query(minhash(grams, num_perm, seed)))
        shares[s.name] = hits / total if total else 0.0
    return shares
