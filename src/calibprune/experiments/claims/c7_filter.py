"""C7: dropping the 10-20 % most perplexing texts helps; more filtering helps less."""

from __future__ import annotations

import statistics

from .evidence import Evidence, paired_effect
from .registry import Claim, register


@register
class ModerateFilter(Claim):
    """For every series of generated sets varying only ``filter_top``: the best filter rate
    of 10-20 % minus no filter, and minus the highest rate (when above 20 %); seed-paired
    t intervals."""

    id = "C7"
    text = "dropping the 10-20 % most perplexing texts helps; more filtering helps less"
    paper_spec = "studies/paper/filter.yaml"
    figure = "metric_vs_filter.png"

    def effects(self, ev: Evidence, params: dict) -> list[dict]:
        effects = []
        for _context, series in ev.along("filter_top").items():
            mid = [f for f in series if 0.1 - 1e-9 <= f <= 0.2 + 1e-9]
            if 0.0 not in series or not mid:
                continue
            best = max(mid, key=lambda f: ev.sign * statistics.fmean(series[f].values()))
            effects.append({"what": f"filter {best:.0%} - no filter", **paired_effect(ev, series[best], series[0.0])})
            most = max(series)
            if most > 0.2 + 1e-9:
                effects.append(
                    {"what": f"filter {best:.0%} - filter {most:.0%}", **paired_effect(ev, series[best], series[most])}
                )
        return effects
