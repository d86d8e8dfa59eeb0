"""How much sets of texts share n-grams, and whether a set was drawn from a reference.

Three measures, on the n-gram sets G(.) of texts (word n-grams of lower-cased ``\\w+``
tokens, or n-grams of model token ids; an n-gram never spans two texts):

* **Jaccard** between whole sets, J(A, B) = |G(A) & G(B)| / |G(A) | G(B)|, estimated
  with MinHash (``num_perm`` permutations, standard error sqrt(J (1 - J) / num_perm);
  datasketch). Symmetric: a small set drawn from a big corpus has a tiny J with it.
* **Containment** of each text t in the reference R, C(t, R) = |G(t) & G(R)| / |G(t)|:
  the share of the text's n-grams found anywhere in the reference. This answers "is
  this text taken from R?": a window cut from R has C close to 1 whatever its length
  (only n-grams at its cut edges and across joined documents are missing), while
  Jaccard against the 600-token document it came from would be ~0.2 for a 128-token
  window. It is computed **exactly** against an index of the hashed n-grams of every
  reference document (8 bytes per distinct n-gram), not with LSH Ensemble: stream-mode
  windows straddle documents, so containment in the reference as a whole, not in one
  document, is the right question, and an exact index has no false negatives. A text
  counts as *contained* when C >= ``containment_threshold`` (0.5: more than half of
  its n-grams occur in R; sampled windows score > 0.9, texts of other corpora < 0.2).
* **Near-duplicates** (MinHash-LSH, datasketch's ``MinHashLSH``): the share of a set's
  texts with some reference document of estimated Jaccard >= ``lsh_threshold``.

The reference is indexed whole, streamed document by document; only the compared sets
are cut to ``max_texts`` (see :mod:`.sets`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..options import OptionError, check_values
from .options import CONTAINMENT_THRESHOLD, UNITS, SimilarityOptions  # noqa: F401  (UNITS: read from here too)
from .sets import TextSet

# Bump a revision in the commit that changes this algorithm's output for some input (keys of
# cached results include it: calibprune.experiments.revisions; tests/golden/revisions.json checks it).
REVISIONS = {"analysis/similarity": 1}

_WORD = re.compile(r"\w+", re.UNICODE)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier (golden ratio) for combining unit hashes
_CHUNK = 20_000  # hashes per MinHash update: bounds the [chunk, num_perm] uint64 temporary (~20 MB)


def check_params(n: int, num_perm: int, unit: str, lsh_threshold: float, containment_threshold: float = 0.5) -> None:
    """The parameters, by :class:`~.options.SimilarityOptions`' declarations (``n`` is its ``ngram``)."""
    try:
        check_values(SimilarityOptions, ngram=n)
    except OptionError as error:
        raise OptionError("n", error.template.replace("{ngram}", "{n}")) from None
    check_values(
        SimilarityOptions,
        num_perm=num_perm,
        unit=unit,
        lsh_threshold=lsh_threshold,
        containment_threshold=containment_threshold,
    )


def _units(text: str, unit: str, tokenizer) -> list[str]:
    if unit == "word":
        return _WORD.findall(text.lower())
    from ..models.loading import tokenize

    return [str(i) for i in tokenize(tokenizer, text)]


def ngram_set(texts: list[str], n: int = 3, unit: str = "word", tokenizer=None) -> set[str]:
    """All n-grams of all texts as strings (n-grams never span two texts)."""
    grams: set[str] = set()
    for text in texts:
        units = _units(text, unit, tokenizer)
        grams.update(" ".join(units[i : i + n]) for i in range(len(units) - n + 1))
    return grams


def exact_jaccard(a: set, b: set) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


class NgramHasher:
    """Distinct 64-bit hashes of a text's n-grams, deterministic across runs.

    Each unit (word or token id) is hashed once with blake2b (cached); an n-gram's hash
    is h = ((u_1 * K + u_2) * K + ... + u_n) mod 2^64, vectorised over the text.
    Two distinct n-grams collide with probability ~2^-64.
    """

    def __init__(self, n: int = 3, unit: str = "word", tokenizer=None):
        self.n, self.unit, self.tokenizer = n, unit, tokenizer
        self._cache: dict[str, int] = {}

    def _unit_hash(self, unit: str) -> int:
        value = self._cache.get(unit)
        if value is None:
            value = int.from_bytes(hashlib.blake2b(unit.encode("utf-8"), digest_size=8).digest(), "little")
            self._cache[unit] = value
        return value

    def __call__(self, text: str) -> np.ndarray:
        units = _units(text, self.unit, self.tokenizer)
        count = len(units) - self.n + 1
        if count <= 0:
            return np.empty(0, dtype=np.uint64)
        values = np.fromiter((self._unit_hash(u) for u in units), dtype=np.uint64, count=len(units))
        h = values[:count].copy()
        with np.errstate(over="ignore"):
            for k in range(1, self.n):
                h = h * _MIX + values[k : k + count]
        return np.unique(h)


def signature(hashes: np.ndarray, num_perm: int, seed: int, permutations=None):
    """datasketch MinHash (64-bit affine scheme) of a set given by its hashes."""
    from datasketch import MinHash

    sig = MinHash(num_perm=num_perm, seed=seed, hashfunc=_identity, scheme="affine64", permutations=permutations)
    for start in range(0, len(hashes), _CHUNK):
        sig.update_batch(hashes[start : start + _CHUNK])
    return sig


def _identity(value):
    return value


@dataclass
class ReferenceIndex:
    """Every distinct n-gram hash of a reference (sorted), its MinHash signature and an
    LSH index of its documents' signatures: built in one streamed pass."""

    name: str
    texts: int
    hashes: np.ndarray
    signature: object
    lsh: object
    origin: dict = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        name: str,
        texts: Iterable[str],
        hasher: NgramHasher,
        num_perm: int,
        seed: int,
        lsh_threshold: float,
        origin: dict | None = None,
        progress: bool = True,
    ) -> ReferenceIndex:
        from datasketch import MinHashLSH
        from tqdm.auto import tqdm

        lsh = MinHashLSH(threshold=lsh_threshold, num_perm=num_perm)
        permutations = signature(np.empty(0, dtype=np.uint64), num_perm, seed).permutations
        chunks: list[np.ndarray] = []
        pending = 0
        count = 0
        bar = tqdm(desc=f"indexing {name}", unit="text", disable=not progress, leave=False)
        for count, text in enumerate(texts, start=1):
            hashes = hasher(text)
            if len(hashes):
                lsh.insert(str(count), signature(hashes, num_perm, seed, permutations), check_duplication=False)
                chunks.append(hashes)
                pending += len(hashes)
            if pending > 2_000_000:  # merge as we go: memory stays ~ the distinct n-grams
                chunks, pending = [np.unique(np.concatenate(chunks))], 0
            bar.update(1)
        bar.close()
        merged = np.unique(np.concatenate(chunks)) if chunks else np.empty(0, dtype=np.uint64)
        return cls(name, count, merged, signature(merged, num_perm, seed, permutations), lsh, origin or {})

    def containment(self, hashes: np.ndarray) -> float:
        """|G(t) & G(R)| / |G(t)| for a text's distinct n-gram hashes."""
        if not len(hashes) or not len(self.hashes):
            return 0.0
        where = np.searchsorted(self.hashes, hashes).clip(max=len(self.hashes) - 1)
        return float(np.mean(self.hashes[where] == hashes))


def similarity_report(
    sets: list[TextSet],
    reference: TextSet | ReferenceIndex | None = None,
    n: int = 3,
    unit: str = "word",
    num_perm: int = 128,
    seed: int = 0,
    lsh_threshold: float = 0.5,
    tokenizer=None,
    containment_threshold: float = CONTAINMENT_THRESHOLD,
    progress: bool = False,
) -> dict:
    """Jaccard matrix between all sets (and the reference); against a reference, per set
    and per text: containment and near-duplicates. ``reference`` is an in-memory set or a
    :class:`ReferenceIndex` built from a stream."""
    check_params(n, num_perm, unit, lsh_threshold, containment_threshold)
    if unit == "token" and tokenizer is None:
        raise OptionError("unit", "{unit=token} needs a {tokenizer} (it defines the tokens)")
    hasher = NgramHasher(n, unit, tokenizer)
    if isinstance(reference, TextSet):
        reference = ReferenceIndex.build(
            reference.name,
            reference.texts,
            hasher,
            num_perm,
            seed,
            lsh_threshold,
            reference.origin | {"texts": len(reference.texts)},
            progress,
        )
    per_text = {s.name: [hasher(t) for t in s.texts] for s in sets}
    grams = {name: np.unique(np.concatenate(h)) if h else np.empty(0, np.uint64) for name, h in per_text.items()}
    signatures = {name: signature(g, num_perm, seed) for name, g in grams.items()}
    if reference is not None and reference.name not in signatures:
        grams[reference.name] = reference.hashes
        signatures[reference.name] = reference.signature
    names = list(signatures)
    matrix = np.array([[signatures[a].jaccard(signatures[b]) for b in names] for a in names])
    report = {
        "params": {
            "ngram": n,
            "unit": unit,
            "num_perm": num_perm,
            "seed": seed,
            "lsh_threshold": lsh_threshold,
            "containment_threshold": containment_threshold,
        },
        "names": names,
        "ngrams": {name: int(len(g)) for name, g in grams.items()},
        "matrix": matrix.round(6).tolist(),
        "sets": {s.name: s.origin | {"texts": len(s.texts)} for s in sets},
    }
    if reference is not None:
        report["reference"] = reference.name
        report["reference_index"] = reference.origin | {"texts": reference.texts, "ngrams": int(len(reference.hashes))}
        report["vs_reference"] = {s.name: float(matrix[names.index(s.name), names.index(reference.name)]) for s in sets}
        report["containment"] = {}
        report["lsh_near_duplicate_share"] = {}
        for s in sets:
            # texts shorter than n have no n-gram: they are listed as None and not counted
            values = [reference.containment(h) if len(h) else None for h in per_text[s.name]]
            scored = [v for v in values if v is not None]
            report["containment"][s.name] = {
                "share_contained": sum(v >= containment_threshold for v in scored) / len(scored) if scored else 0.0,
                "mean": float(np.mean(scored)) if scored else 0.0,
                "texts_scored": len(scored),
                "per_text": [None if v is None else round(v, 6) for v in values],
            }
            hits = [bool(reference.lsh.query(signature(h, num_perm, seed))) for h in per_text[s.name] if len(h)]
            report["lsh_near_duplicate_share"][s.name] = sum(hits) / len(hits) if hits else 0.0
    return report
