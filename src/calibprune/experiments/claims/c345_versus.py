"""C3, C4, C5: one strategy beats others, setting by setting (the ``versus`` family)."""

from __future__ import annotations

from ..aggregate import CALIB_ATTRS
from .evidence import Evidence, as_list, contrast
from .registry import Claim, Param, register


def versus(ev: Evidence, better: str, worse: list[str]) -> list[dict]:
    """``better - other`` (difference of seed means) for every other strategy in ``worse``, in
    every context (model, setting, ...) where both were run: 0 in expectation when the two
    calibrate alike. Other strategies share no texts, so their seeds are unpaired: a Welch
    t interval each (:func:`~.evidence.contrast`)."""
    effects = []
    for attrs, values in ev.select(calib=better):
        context = {k: v for k, v in attrs.items() if k not in CALIB_ATTRS}
        for other in worse:
            for base in ev.select(calib=other, **context):
                what = f"{better} - {other} @ {attrs.get('setting')}"
                effects.append({"what": what, **contrast(ev, [(attrs, values), base], [1, -1])})
    return effects


@register
class TrainingLike(Claim):
    """``better`` (the training-like source) minus each of ``worse`` (high-quality sources
    unlike the training data), at every setting; Welch t intervals."""

    id = "C3"
    text = "training-like data calibrates better than high-quality data unlike the training data"
    paper_spec = "studies/paper/sources.yaml"
    figure = "metric_by_source.png"
    params = {
        "better": Param("the training-like strategy"),
        "worse": Param("the strategies it should beat", many=True),
    }
    needs_strategies = True

    def effects(self, ev: Evidence, params: dict) -> list[dict]:
        return versus(ev, params.get("better", ""), as_list(params.get("worse")))


@register
class SelfGenerated(Claim):
    """``strategy`` (self-generated data) minus each of ``over`` (its source and the common
    baselines), at every setting (Wanda, DSnoT, OWL); Welch t intervals."""

    id = "C4"
    text = "self-generated data beats its source and the common baselines, for Wanda, DSnoT and OWL"
    paper_spec = "studies/paper/table2-main.yaml"
    figure = "metric_by_source.png"
    params = {
        "strategy": Param("the self-generated strategy"),
        "over": Param("the strategies it should beat", many=True),
    }
    needs_strategies = True

    def effects(self, ev: Evidence, params: dict) -> list[dict]:
        return versus(ev, params.get("strategy", ""), as_list(params.get("over")))


@register
class SelfGeneratedEverywhere(SelfGenerated):
    """C4's comparison (``strategy`` minus each of ``over``) at every sparsity and pattern
    the study runs (50 %, 65 %, 4:8, 2:4); Welch t intervals."""

    id = "C5"
    text = "the self-generation advantage holds at 50 %, 65 %, 4:8 and 2:4"
    paper_spec = "studies/paper/settings.yaml"
