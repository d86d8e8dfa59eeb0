"""C7: dropping the 10-20 % most perplexing texts helps; more filtering helps less."""

from __future__ import annotations

from .evidence import Evidence, contrast
from .registry import Claim, register


@register
class ModerateFilter(Claim):
    """For every series of generated sets varying only ``filter_top``: the mean over the
    rates of 10-20 % the series has (each rate's seed mean, weighted alike) minus no filter,
    and minus the highest rate (when above 20 %).

    Averaged rather than the best rate taken, which would be above the others by chance
    alone (C6's reason). The rates filter one generated pool per seed (the same texts), so
    seed s pairs across them (:func:`~.evidence.shares_texts`): a paired jackknife t
    interval (:func:`~.evidence.contrast`; Welch where the arms record other sets)."""

    id = "C7"
    text = "dropping the 10-20 % most perplexing texts helps; more filtering helps less"
    paper_spec = "studies/paper/filter.yaml"
    figure = "metric_vs_filter.png"

    def effects(self, ev: Evidence, params: dict) -> list[dict]:
        effects = []
        for _context, series in ev.along("filter_top").items():
            mid = sorted(f for f in series if 0.1 - 1e-9 <= f <= 0.2 + 1e-9)
            if 0.0 not in series or not mid:
                continue
            name = f"filter {mid[0]:.0%}" if len(mid) == 1 else f"mean of filters {', '.join(f'{f:.0%}' for f in mid)}"
            most = max(series)
            for other, label in [(0.0, "no filter")] + ([(most, f"filter {most:.0%}")] if most > 0.2 + 1e-9 else []):
                arms = [series[f] for f in mid] + [series[other]]
                weights = [1 / len(mid)] * len(mid) + [-1.0]
                effects.append({"what": f"{name} - {label}", **contrast(ev, arms, weights)})
        return effects
