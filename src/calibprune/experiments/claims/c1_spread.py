"""C1: the spread across calibration sources grows with sparsity and with structure."""

from __future__ import annotations

from .evidence import Evidence, bootstrap, spread
from .registry import Claim, register


@register
class SpreadGrows(Claim):
    """The range across calibration sources (best minus worst seed mean) at the highest
    unstructured sparsity minus that at the lowest; then at 4:8 minus at 50 % unstructured,
    and at 2:4 minus at 4:8. Each difference of ranges has a seeded bootstrap interval over
    the seeds (every strategy's seed values resampled independently)."""

    id = "C1"
    text = "the spread across calibration sources grows with sparsity and with structure (unstructured < 4:8 < 2:4)"
    paper_spec = "studies/paper/sparsity-pattern.yaml"
    figure = "range_vs_setting.png"

    def effects(self, ev: Evidence, params: dict) -> list[dict]:
        groups = {dict(ctx).get("setting"): (dict(ctx), g) for ctx, g in ev.by_context().items() if len(g) > 1}
        unstructured = sorted((a["sparsity"], g) for a, g in groups.values() if a["pattern"] == "unstructured")
        effects = []
        if len(unstructured) >= 2:
            (lo, g_lo), (hi, g_hi) = unstructured[0], unstructured[-1]
            effects.append(
                {
                    "what": f"range at {hi:.0%} - range at {lo:.0%} (unstructured)",
                    **bootstrap(lambda a, b: spread(a, ev.sign) - spread(b, ev.sign), [g_hi, g_lo]),
                }
            )
        ordered = [g for s, g in unstructured if abs(s - 0.5) < 1e-9]
        ordered += [g for a, g in groups.values() if a["pattern"] == "4:8"][:1]
        ordered += [g for a, g in groups.values() if a["pattern"] == "2:4"][:1]
        names = ["50% unstructured", "4:8", "2:4"]
        if len(ordered) == 3:
            for i in range(2):
                effects.append(
                    {
                        "what": f"range at {names[i + 1]} - range at {names[i]}",
                        **bootstrap(lambda a, b: spread(a, ev.sign) - spread(b, ev.sign), [ordered[i + 1], ordered[i]]),
                    }
                )
        return effects
