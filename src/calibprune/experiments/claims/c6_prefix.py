"""C6: prefixes of 1-4 tokens are best; longer prefixes fall back toward the original data."""

from __future__ import annotations

import statistics

from .evidence import Evidence, paired_effect
from .registry import Claim, register


@register
class ShortPrefix(Claim):
    """For every series of generated sets varying only ``prefix_tokens``: the best prefix of
    1-4 tokens minus the longest prefix, and minus every other prefix outside 1-4;
    seed-paired t intervals."""

    id = "C6"
    text = "prefixes of 1-4 tokens are best; longer prefixes fall back toward the original data"
    paper_spec = "studies/paper/prefix.yaml"
    figure = "metric_vs_prefix.png"

    def effects(self, ev: Evidence, params: dict) -> list[dict]:
        effects = []
        for _context, series in ev.along("prefix_tokens").items():
            short = [p for p in series if 1 <= p <= 4]
            if not short:
                continue
            best = max(short, key=lambda p: ev.sign * statistics.fmean(series[p].values()))
            longest = max(series)
            if longest > 4:
                effects.append(
                    {"what": f"prefix {best} - prefix {longest}", **paired_effect(ev, series[best], series[longest])}
                )
            outside = [p for p in series if p not in short]
            for p in outside:
                if p != longest:
                    effects.append(
                        {"what": f"prefix {best} - prefix {p}", **paired_effect(ev, series[best], series[p])}
                    )
        return effects
