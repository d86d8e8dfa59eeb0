"""C2: more calibration samples do not close the gap between sources."""

from __future__ import annotations

from .evidence import Evidence, spread_change
from .registry import Claim, register


@register
class GapStays(Claim):
    """The noise-corrected between-source variance tau^2 (C1's, on log-perplexity:
    :func:`~.evidence.between_variance`) at the largest ``nsamples`` the study has minus at
    the smallest: negative when more samples close the gap, 0 in expectation when the gap
    stays as it is, whatever the seed noise at each amount. Sets of other amounts share no
    texts, so every (source, amount) is an independent block; jackknife t interval.

    The paper's claim ("does not reduce the disparity") is that this is not negative: a
    verdict of *not replicated* refutes it, *replicated* (the gap grows) is more than it
    claims, and a gap that stays reads *inconclusive*: no margin is assumed."""

    id = "C2"
    text = "more calibration samples do not close the gap between sources"
    paper_spec = "studies/paper/amount.yaml"
    figure = "metric_vs_nsamples.png"

    def effects(self, ev: Evidence, params: dict) -> list[dict]:
        by_n = {}
        for ctx, g in ev.by_context().items():
            if len(g) > 1:
                by_n.setdefault(dict(ctx)["nsamples"], g)
        if len(by_n) < 2:
            return []
        largest, smallest = max(by_n), min(by_n)
        return [
            {
                "what": f"spread at nsamples {largest} - spread at nsamples {smallest}",
                **spread_change(ev, by_n[largest], by_n[smallest]),
            }
        ]
