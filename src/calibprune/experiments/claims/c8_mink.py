"""C8: self-generated text has higher Min-K%++ scores than the other sources."""

from __future__ import annotations

from .evidence import Basis, jackknife
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
    the membership analysis (the first seed's sets): 0 in expectation when the sets score
    alike. Welch 95% intervals over their texts (the jackknife of a difference of means is
    Welch's, exactly: :func:`~.evidence.jackknife`)."""

    id = "C8"
    text = "self-generated text has higher Min-K%++ scores than the other sources"
    paper_spec = "studies/paper/mink.yaml"
    figure = "mink_distributions.png"
    basis = MEMBERSHIP
    params = {"strategy": Param("the self-generated strategy")}

    def effects(self, membership: dict[str, list[float]], params: dict) -> list[dict]:
        mine = membership.get(params.get("strategy", ""))
        effects = []
        for name, values in membership.items():
            if mine is None or name == params.get("strategy"):
                continue
            arms = [({"calib": params["strategy"]}, dict(enumerate(mine))), ({"calib": name}, dict(enumerate(values)))]
            effects.append(
                {
                    "what": f"{params['strategy']} - {name} (mean Min-K%++)",
                    **jackknife(arms, lambda m, v: m[..., 0] - m[..., 1]),
                    "n": len(mine),
                }
            )
        return effects
