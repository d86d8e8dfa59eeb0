"""C6: prefixes of 1-4 tokens are best; longer prefixes fall back toward the original data."""

from __future__ import annotations

from .evidence import Evidence, contrast
from .registry import Claim, register


@register
class ShortPrefix(Claim):
    """For every series of generated sets varying only ``prefix_tokens``: the mean over the
    prefixes of 1-4 tokens the series has (each prefix's seed mean, weighted alike) minus
    the longest prefix, and minus every other prefix outside 1-4.

    The short prefixes are averaged, not the best of them taken: the best of several is
    above the others by chance alone, so "best short - long" is positive in expectation
    even when the prefix does not matter; the average is 0 then. Prefixes generate other
    texts (independent seeds): Welch-type jackknife t intervals (:func:`~.evidence.contrast`)."""

    id = "C6"
    text = "prefixes of 1-4 tokens are best; longer prefixes fall back toward the original data"
    paper_spec = "studies/paper/prefix.yaml"
    figure = "metric_vs_prefix.png"

    def effects(self, ev: Evidence, params: dict) -> list[dict]:
        effects = []
        for _context, series in ev.along("prefix_tokens").items():
            short = sorted(p for p in series if 1 <= p <= 4)
            outside = sorted(p for p in series if p not in short)
            if not short:
                continue
            name = f"prefix {short[0]}" if len(short) == 1 else f"mean of prefixes {', '.join(map(str, short))}"
            longest = max(series)
            for p in ([longest] if longest > 4 else []) + [p for p in outside if p != longest]:
                arms = [series[s] for s in short] + [series[p]]
                weights = [1 / len(short)] * len(short) + [-1.0]
                effects.append({"what": f"{name} - prefix {p}", **contrast(ev, arms, weights)})
        return effects
