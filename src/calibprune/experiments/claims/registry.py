"""The paper's claims as registered objects, the verdict rule, and :func:`evaluate_claims`.

A claim is a :class:`Claim` subclass in a module of this package, registered with
:func:`register`: its text, the paper-scale spec that decides it, its figure, its
:class:`~.evidence.Basis` (what its effects rest on and what their intervals are over),
the parameters it reads from ``report.claims.<id>`` (:class:`Param`, checked by the spec)
and its check, :meth:`Claim.effects`. Every claim is reduced to effects with 95% intervals,
oriented so that a positive effect is what the paper claims; :func:`verdict` turns them
into a verdict, the same rule for every claim.
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
    paper_spec: ClassVar[str] = ""  # the shipped paper-scale spec that decides it
    figure: ClassVar[str] = ""  # the report's figure that shows it
    basis: ClassVar[Basis] = CELLS
    params: ClassVar[dict[str, Param]] = {}  # what it reads from report.claims.<id>
    needs_strategies: ClassVar[bool] = False  # no verdict unless report.claims.<id> names strategies

    def effects(self, evidence, params: dict) -> list[dict]:
        """Effects (``what``, ``mean``, ``ci_low``, ``ci_high``, ``n``) from what :attr:`basis`
        gathered, each oriented so that a positive value is what the paper claims."""
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


def verdict(
    effects: list[dict], missing: str | None = None, over: str = "seeds", paper_spec: str | None = None
) -> tuple[str, str]:
    """**Replicated**: every interval above 0; **not replicated**: an interval below 0;
    **inconclusive**: otherwise, with the reason and the paper-scale spec that would decide it.

    The verdict and its reason from a claim's oriented effects. ``missing``: why no effects
    could be formed (inconclusive); ``over``: what the intervals are over (the seeds; for a
    membership claim, the texts scored); ``paper_spec``: named in an inconclusive reason.
    """
    state, reason = _verdict(effects, missing, over)
    if state == "inconclusive" and paper_spec:
        reason += f"; decided at paper scale by `calibprune sweep {paper_spec}`"
    return state, reason


def _verdict(effects: list[dict], missing: str | None, over: str) -> tuple[str, str]:
    if missing:
        return "inconclusive", missing
    if not effects:
        return "inconclusive", "no comparison could be formed from the stored cells"
    if any(e.get("ci_low") is None for e in effects):
        return "inconclusive", "fewer than 2 paired seeds for some comparison: no interval"
    if all(e["ci_low"] > 0 for e in effects):
        return "replicated", "every 95% interval lies above 0"
    if any(e["ci_high"] < 0 for e in effects):
        return "not replicated", "a 95% interval lies below 0 (the opposite of the claim)"
    return "inconclusive", f"a 95% interval includes 0: the {over} do not resolve the effect"


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
