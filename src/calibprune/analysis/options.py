"""The analyses' declared options: :class:`SimilarityOptions` (``analyze similarity``) and
:class:`MembershipOptions` (``analyze membership``), one declaration each for the CLI, a
study's ``analysis`` steps and Python. Torch-free (the CLI's audit reads them first).

The sets an analysis reads (``--sets``) are its inputs, not options; so is ``encoding``'s
rule ("only when a set is read as local files"), which reads them: :func:`local_specs`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..calibration import is_calibration_folder
from ..calibration.strategies.detect import DetectOptions
from ..options import Rule, at_least, check_fields, declared_as, in_interval, option

UNITS = ("word", "token")
CONTAINMENT_THRESHOLD = 0.5

WITH_REFERENCE = Rule(lambda o: o.reference is not None, "without {reference}: drop them or pass {reference}")


@dataclass(frozen=True)
class SimilarityOptions:
    """n-gram similarity of sets (MinHash Jaccard) and their containment in a reference,
    see :mod:`.similarity` for the formulas."""

    reference: str | None = option(
        None, help="Indexed whole (never cut): each set's texts are checked against it (e.g. corpus:wiki-en)."
    )
    ngram: int = option(3, help="n of the n-grams.", check=at_least(1, "the paper uses 3-grams"))
    unit: str = option("word", help="word | token (token needs a model's tokenizer).", choices=UNITS)
    num_perm: int = option(128, help="MinHash permutations.", check=at_least(16, "estimates get too coarse below"))
    containment_threshold: float = option(
        CONTAINMENT_THRESHOLD,
        help="A text counts as drawn from the reference when this share of its n-grams occurs in it.",
        check=in_interval(0, 1, "(]"),
        applies=WITH_REFERENCE,
    )
    lsh_threshold: float = option(
        0.5,
        help="Jaccard above which a text counts as a near-duplicate (LSH).",
        check=in_interval(0, 1),
        applies=WITH_REFERENCE,
    )
    max_texts: int | None = option(
        2000, help="Cut each compared set to this many documents (seeded); never the reference.", check=at_least(1)
    )
    seed: int = option(0, help="Seed of MinHash and of the document subsets.")
    model: str | None = option(
        None,
        help="Tokenizer for unit token (a study uses its model).",
        applies=Rule(lambda o: o.unit == "token", "unless {unit=token}: drop it or pass {unit=token}"),
    )
    encoding: str = option("utf-8", help="Encoding of local .txt/.jsonl sets (e.g. latin-1, cp1252).")

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True)
class MembershipOptions:
    """Min-K%++, Min-K% and perplexity distributions of each set under a model (:mod:`.membership`)."""

    k: float = declared_as(DetectOptions, "k", help="Min-K%/Min-K%++: fraction of lowest-scoring tokens averaged.")
    max_texts: int | None = option(200, help="Texts scored per set (seeded subset).", check=at_least(1))
    max_tokens: int = option(512, help="Tokens scored per text.", check=at_least(2))
    seed: int = option(0, help="Seed of the text subsets.")
    batch_size: int = option(8, help="Texts per forward pass.", check=at_least(1))
    encoding: str = option("utf-8", help="Encoding of local .txt/.jsonl sets (e.g. latin-1, cp1252).")

    def __post_init__(self):
        check_fields(self)


def local_specs(specs) -> list[str]:
    """The specs that are read as local files (neither ``corpus:NAME`` nor a set folder)."""
    return [s for s in specs if s and not s.startswith("corpus:") and not is_calibration_folder(s)]
