"""The paper's claims as registered objects, the verdict rule, and :func:`evaluate_claims`.

A claim is a :class:`Claim` subclass in a module of this package, registered with
:func:`register`: its text, the paper-scale spec that would test it, its figure, its
:class:`~.evidence.Basis` (what its effects rest on and what their intervals are over),
the parameters it reads from ``report.claims.<id>`` (:class:`Param`, checked by the spec)
and its check, :meth:`Claim.effects`. Every claim is reduced to effects, each 0 in
expectation when the claim is false, with a 95% interval and one-sided p-values, oriented
so that a positive effect is what the paper claims; :func:`verdict` turns them into a
verdict (Holm over the claim's effects), the same rule for every claim.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import ClassVar

from ...errors import CalibpruneError
from ...utils.registry import Registry
from .evidence import CELLS, Basis, Inputs, primary_metric

CLAIMS = Registry("claim")


@dataclass(frozen=True)
class Param:
    """A parameter of ``report.claims.<id>`` naming strategy labels of the study: one label,
    or (``many``) one label or a list of them."""

    doc: str
    many: bool = False

    def expects(self) -> str:
        return "a strategy label or a list of them" if self.many else "one strategy label"


class Claim:
    """One claim of the paper. Subclass, set the class attributes, implement :meth:`effects`
    and decorate with :func:`register`; the class docstring says what it tests and how."""

    id: ClassVar[str] = ""  # "C1": the name in a spec's ``claims`` and ``report.claims``
    text: ClassVar[str] = ""  # the claim, in words
    paper_spec: ClassVar[str] = ""  # the shipped paper-scale spec that would test it
    figure: ClassVar[str] = ""  # the report's figure that shows it
    basis: ClassVar[Basis] = CELLS
    params: ClassVar[dict[str, Param]] = {}  # what it reads from report.claims.<id>
    needs_strategies: ClassVar[bool] = False  # no verdict unless report.claims.<id> names strategies

    def effects(self, evidence, params: dict) -> list[dict]:
        """Effects (``what``, ``mean``, ``ci_low``, ``ci_high``, ``n``, and the one-sided
        p-values ``p_above``/``p_below`` :func:`verdict` reads) from what :attr:`basis`
        gathered, each oriented so that a positive value is what the paper claims and 0 in
        expectation when the claim is false."""
        raise NotImplementedError


def register(cls: type[Claim]) -> type[Claim]:
    """Class decorator: register a claim under its ``id`` (refusing one taken)."""
    if not cls.id or cls.id in CLAIMS:
        raise CalibpruneError(f"claim {cls.__name__}: id {cls.id!r} is empty or already registered")
    CLAIMS.register(cls.id)(cls)
    return cls


def claim(name: str) -> Claim:
    """The registered claim ``name`` (an error lists the known ones)."""
    return CLAIMS.create(name)


def _order(name: str) -> tuple:
    prefix, number = re.fullmatch(r"(\D*)(\d*)", name).groups()
    return (prefix, int(number or 0), name)


def claims() -> list[Claim]:
    """Every registered claim, in the order of their ids (C1, C2, ..., C10)."""
    return [claim(name) for name in sorted(CLAIMS.names(), key=_order)]


# the family-wise level of each direction's verdict (see verdict): 2.5 % per direction, so
# that one effect replicates exactly when its 95% two-sided interval lies above 0
ALPHA = 0.025


def holm(p_values: list[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down rejections at family-wise level ``alpha``: sort the p-values,
    p_(1) <= ... <= p_(k); reject H_(1..i) while p_(i) <= alpha / (k - i + 1); stop at the
    first that is not."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for step, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - step):
            break
        rejected[i] = True
    return rejected


def verdict(
    effects: list[dict], missing: str | None = None, over: str = "seeds", paper_spec: str | None = None
) -> tuple[str, str]:
    """**Replicated**: Holm's procedure over the claim's k effects, at 2.5 % family-wise,
    rejects "effect <= 0" for every effect (one-sided p-values p_above); **not replicated**:
    Holm at 2.5 % rejects "effect >= 0" for some effect (p_below; that is, the smallest
    p_below <= 2.5 % / k); **inconclusive**: otherwise, with the reason and the paper-scale
    spec that would test it. With one effect this is its 95% interval lying above (below) 0;
    with k, replicated asks the i-th smallest p_above to be <= 2.5 % / (k - i + 1), a stricter
    bound than the 95% intervals shown, so an effect whose interval lies just above 0 may
    not be enough.

    The verdict and its reason from a claim's oriented effects (each with ``p_above`` and
    ``p_below``, the one-sided p-values of its t statistic). Two directions at 2.5 % each:
    a claim with no effect is called either way at most 5 % of the time, and each way at
    most 2.5 % (tests/test_claim_statistics.py measures it on simulated null cells). Holm
    for "replicated" is conservative (an intersection-union test would need each p_above
    <= 2.5 % alone) but lets each effect be read as established on its own.
    ``missing``: why no effects could be formed (inconclusive); ``over``: what the
    intervals are over (the seeds; for a membership claim, the texts scored);
    ``paper_spec``: named in an inconclusive reason.
    """
    state, reason = _verdict(effects, missing, over)
    if state == "inconclusive" and paper_spec:
        reason += f"; would be tested at paper scale by `calibprune sweep {paper_spec}`"
    return state, reason


def _verdict(effects: list[dict], missing: str | None, over: str) -> tuple[str, str]:
    if missing:
        return "inconclusive", missing
    if not effects:
        return "inconclusive", "no comparison could be formed from the stored cells"
    if any(e.get("p_above") is None or e.get("p_below") is None for e in effects):
        return "inconclusive", f"fewer than 2 {over} for some comparison: no interval"
    k = len(effects)
    if all(holm([e["p_above"] for e in effects])):
        return "replicated", f"Holm over {_effects(k)} at 2.5 %: every effect above 0"
    against = sum(holm([e["p_below"] for e in effects]))
    if against:
        return "not replicated", f"Holm over {_effects(k)} at 2.5 %: {against} below 0 (the opposite of the claim)"
    return "inconclusive", f"Holm over {_effects(k)} at 2.5 % rejects neither way: the {over} do not resolve the effect"


def _effects(k: int) -> str:
    return "1 effect" if k == 1 else f"{k} effects"


# the rule as the report states it: the first paragraph of verdict's docstring
VERDICT_RULE = " ".join(inspect.getdoc(verdict).split("\n\n")[0].split())


def intervals_text() -> str:
    """What the intervals are over and how they are formed, basis by basis, naming the claims
    of every basis but the first (the replication report's preamble)."""
    by_basis: dict[Basis, list[str]] = {}
    for one in claims():
        by_basis.setdefault(one.basis, []).append(one.id)
    (first, _), *rest = by_basis.items()
    parts = [first.intervals] + [f"for {', '.join(ids)}, {basis.intervals}" for basis, ids in rest]
    return f"a 95% interval over {first.over} ({'; '.join(parts)})"


def evaluate_claims(meta: dict, rows: list[dict], membership: dict[str, list[float]] | None) -> list[dict]:
    """A verdict per registered claim, ``addressed`` saying which the study claims to test
    (the others are inconclusive, and a report shows only the addressed ones).

    An addressed claim is inconclusive, with the reason, when its basis finds no evidence
    in the run or it needs strategies named and ``report.claims.<id>`` names none;
    otherwise its effects decide (:func:`verdict`)."""
    claimed = set(meta.get("claims") or [])
    params_of = (meta.get("report") or {}).get("claims") or {}
    inputs = Inputs(meta, rows, primary_metric(meta, rows), membership)
    out = []
    for one in claims():
        params = params_of.get(one.id) or {}
        missing = None
        effects: list[dict] = []
        if one.id not in claimed:
            missing = "this study does not address it"
        else:
            evidence = one.basis.gather(inputs)
            if evidence is None:
                missing = one.basis.absent
            elif one.needs_strategies and not params:
                missing = f"report.claims.{one.id} names no strategies to compare"
            else:
                effects = one.effects(evidence, params)
        state, reason = verdict(effects, missing, one.basis.over, one.paper_spec)
        out.append(
            {
                "claim": one.id,
                "addressed": one.id in claimed,
                "text": one.text,
                "verdict": state,
                "reason": reason,
                "metric": one.basis.metric_of(inputs),
                "effects": effects,
                "seeds": one.basis.seeds_of(meta),
                "figure": one.figure,
            }
        )
    return out
