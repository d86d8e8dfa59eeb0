"""C1: the spread across calibration sources grows with sparsity and with structure."""

from __future__ import annotations

from .evidence import Evidence, spread_change
from .registry import Claim, register


@register
class SpreadGrows(Claim):
    """How much the choice of source matters, as the noise-corrected between-source variance
    of the log-perplexity (the metric itself for a score)

        tau^2_k = sum_j (m_jk - mean_j m_jk)^2 / (J - 1)  -  mean_j s_jk^2 / n_jk

    (m_jk, s_jk: mean and std over the n_jk seeds of source j at setting k;
    :func:`~.evidence.between_variance`), and three effects: tau^2 at the highest unstructured
    sparsity minus at the lowest, at 4:8 minus at 50 % unstructured, at 2:4 minus at 4:8.
    Each is the source x setting interaction along the source effect,
    sum_j (a_jk - a_jl)(a_jk + a_jl) / (J - 1) for centered source effects a, so it is 0 in
    expectation when the sources differ as much at both settings (or not at all), however
    the seed noise grows with sparsity: a range of means, the old statistic, grows with the
    noise alone. A source's seeds pair across settings (its set at a seed serves both);
    sources are independent. Jackknife t intervals (:func:`~.evidence.jackknife`)."""

    id = "C1"
    text = "the spread across calibration sources grows with sparsity and with structure (unstructured < 4:8 < 2:4)"
    paper_spec = "studies/paper/sparsity-pattern.yaml"
    figure = "range_vs_setting.png"

    def effects(self, ev: Evidence, params: dict) -> list[dict]:
        groups = {dict(ctx).get("setting"): (dict(ctx), g) for ctx, g in ev.by_context().items() if len(g) > 1}
        unstructured = sorted((a["sparsity"], g) for a, g in groups.values() if a["pattern"] == "unstructured")
        pairs = []
        if len(unstructured) >= 2:
            (lo, g_lo), (hi, g_hi) = unstructured[0], unstructured[-1]
            pairs.append((f"{hi:.0%}", g_hi, f"{lo:.0%}", g_lo, " (unstructured)"))
        ordered = [("50% unstructured", g) for s, g in unstructured if abs(s - 0.5) < 1e-9]
        ordered += [("4:8", g) for a, g in groups.values() if a["pattern"] == "4:8"][:1]
        ordered += [("2:4", g) for a, g in groups.values() if a["pattern"] == "2:4"][:1]
        if len(ordered) == 3:
            pairs += [(*ordered[i + 1], *ordered[i], "") for i in range(2)]
        return [
            {"what": f"spread at {hi} - spread at {lo}{tail}", **spread_change(ev, g_hi, g_lo)}
            for hi, g_hi, lo, g_lo, tail in pairs
        ]
