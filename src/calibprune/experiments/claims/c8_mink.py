"""C8: self-generated text has higher Min-K%++ scores than the other sources."""

from __future__ import annotations

import statistics

from .evidence import Basis
from .registry import Claim, Param, register

MEMBERSHIP = Basis(
    over="texts",
    intervals="a Welch interval over the texts of the first seed's sets",
    absent="no membership analysis in this run",
    gather=lambda inputs: inputs.membership or None,
    metric="mink++",
    seeds=1,  # the membership analysis scores the first seed's sets
)


@register
class MembershipScores(Claim):
    """Mean Min-K%++ of the self-generated set (``strategy``) minus each other set's, from
    the membership analysis (the first seed's sets); Welch 95% intervals over their texts."""

    id = "C8"
    text = "self-generated text has higher Min-K%++ scores than the other sources"
    paper_spec = "studies/paper/mink.yaml"
    figure = "mink_distributions.png"
    basis = MEMBERSHIP
    params = {"strategy": Param("the self-generated strategy")}

    def effects(self, membership: dict[str, list[float]], params: dict) -> list[dict]:
        from scipy.stats import ttest_ind

        mine = membership.get(params.get("strategy", ""))
        effects = []
        for name, values in membership.items():
            if mine is None or name == params.get("strategy") or len(values) < 2 or len(mine) < 2:
                continue
            test = ttest_ind(mine, values, equal_var=False)
            ci = test.confidence_interval(0.95)
            effects.append(
                {
                    "what": f"{params['strategy']} - {name} (mean Min-K%++)",
                    "mean": statistics.fmean(mine) - statistics.fmean(values),
                    "ci_low": float(ci.low),
                    "ci_high": float(ci.high),
                    "n": len(mine),
                }
            )
        return effects
