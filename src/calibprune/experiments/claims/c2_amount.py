"""C2: more calibration samples do not close the gap between sources."""

from __future__ import annotations

from .evidence import Evidence, bootstrap, spread
from .registry import Claim, register


@register
class GapStays(Claim):
    """The range across calibration sources at the largest ``nsamples`` the study has (it
    stays above 0: the gap is not closed), with a seeded bootstrap interval over the seeds."""

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
        largest = max(by_n)
        return [
            {
                "what": f"range across sources at the largest nsamples ({largest})",
                **bootstrap(lambda a: spread(a, ev.sign), [by_n[largest]]),
            }
        ]
