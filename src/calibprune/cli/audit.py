"""No option is silently ignored: the rules the declarations do not carry.

An option typed on the command line that this invocation would not use is refused with
the reason, before any work, and for prune, eval and calib before torch is imported: their
rules read only the arguments, the file system and the torch-free registries
(:mod:`calibprune.pruning.catalog`), and so does ``analyze``'s local-set rule. Declared options are
audited from their own ``applies`` rule (:func:`calibprune.cli_options.audit`); the
options each command still declares by hand are audited here.
"""

from __future__ import annotations

import typer

from ..cli_options import refusal, typed


def flag(name: str) -> str:
    """The flag of a hand-declared parameter: ``ppl_seqlen`` -> ``--ppl-seqlen`` (a declared
    field's parameter ``job__text_field`` -> ``--text-field``: its field name by the rule)."""
    return "--" + name.split("__")[-1].replace("_", "-")


def refuse_unused(ctx: typer.Context, names: tuple[str, ...], used: bool, why: str) -> None:
    """Refuse typed options among ``names`` when ``used`` is False; ``why`` completes
    "... has no effect ..." with the reason and the fix."""
    given = typed(ctx, list(names))
    if given and not used:
        raise refusal([flag(n) for n in given], why)


def refuse_encoding(ctx: typer.Context, sources, what: str, param: str = "encoding") -> None:
    """--encoding decodes local .txt/.jsonl files; refused when ``sources`` (what the
    command reads as text, set folders left out) hold none. ``what`` names the options."""
    from ..calibration.job import undecoded_why
    from ..corpora import is_local_source

    refuse_unused(ctx, (param,), any(is_local_source(s) for s in sources), undecoded_why(what))


def refuse_local_sets(ctx: typer.Context, specs: list[str], what: str, param: str) -> None:
    """analyze: --encoding only with a --sets/--reference entry read as local files."""
    from ..analysis.options import local_specs  # torch-free

    refuse_encoding(ctx, local_specs(specs), what, param)
