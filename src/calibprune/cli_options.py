"""The CLI's side of :mod:`calibprune.options`: flags, parsing and the audit, from the declarations.

A command names its *groups*: an options class and the prefix its fields get as Python
parameters. From them
come the typer parameters of the command (one per declared field, its flag, help and
default), the options objects built from what was typed (errors rendered as flags), and
the audit that refuses a typed option the run would not use — the rule is the field's own
``applies``, so a new option is audited the moment it is declared.

It also holds the CLI's words for what lies below it: an :class:`~calibprune.options.OptionError`
names fields (``{owl.lam}``) and commands (:func:`~calibprune.options.command_line`), and
:func:`cli_name` / :func:`cli_command` render them as flags and shell lines. A field's flag is
``CLI_FLAGS[path]`` where the name predates the rule, else :func:`derived_flag` (a new option
gets its flag by rule, and needs no entry).

This module imports no torch, and neither do the rules it runs (``needs_calibration``
reads the torch-free :mod:`calibprune.pruning.catalog`).
"""

from __future__ import annotations

import inspect
import shlex
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from typing import Any

import typer

from .errors import CalibpruneError
from .options import Command, Leaf, OptionError, build, render, walk


def derived_flag(path: str) -> str:
    """The flag of a field by rule: ``--`` and its path with dashes (``owl.hyper_m`` -> ``--owl-hyper-m``)."""
    return "--" + path.replace(".", "-").replace("_", "-")


# The flags of fields named below the CLI whose name is not derived_flag(path): field path
# (as the raiser names it) -> flag. Everything else is named by rule.
CLI_FLAGS = {
    # pruning (the flags of `calibprune prune` that predate the rule)
    "sparsegpt.blocksize": "--blocksize",
    "sparsegpt.percdamp": "--percdamp",
    "sparsegpt.mask_rule": "--sparsegpt-mask",
    "runner.batch_size": "--batch-size",
    "runner.activation_store": "--activation-store",
    "owl.hyper_m": "--owl-m",
    "owl.lam": "--owl-lambda",
    "calibration.source": "--calib",
    "calib": "--calib",
    # calibration: generation and detection options (flat on `calibprune calib`)
    "generation.prefix_tokens": "--prefix-tokens",
    "generation.temperature": "--temperature",
    "generation.top_p": "--top-p",
    "generation.top_k": "--top-k",
    "generation.repetition_penalty": "--repetition-penalty",
    "generation.max_new_tokens": "--max-new-tokens",
    "generation.batch_size": "--gen-batch-size",
    "generation.num_texts": "--num-texts",
    "generation.filter_top": "--filter-top",
    "detect.detector": "--detect",
    "detect.k": "--mink-k",
    "detect.keep_top": "--keep-top",
    "detect.num_candidates": "--num-candidates",
    "mink_k": "--mink-k",
    "detector": "--detect",
    # analysis (similarity_report's keyword n is `analyze --ngram`)
    "n": "--ngram",
    # evaluation
    "perplexity.corpora": "--ppl",
    "perplexity.seqlen": "--ppl-seqlen",
    "perplexity.max_windows": "--ppl-max-windows",
    "perplexity.batch_size": "--ppl-batch-size",
    "perplexity.protocol": "--ppl-protocol",
    "perplexity.split": "--ppl-split",
    "perplexity.encoding": "--encoding",
    "tasks.seed": "--seed",
    "tasks.names": "--tasks",
    "tasks.limit": "--limit",
    "tasks.batch_size": "--batch-size",
    "tasks.mmlu_shots": "--mmlu-shots",
    "tasks.scoring": "--scoring",
}


# Fields whose values are flags of their own on the CLI: (path, value) -> the flag
# ("" for the default, which no flag names).
CLI_VALUE_FLAGS = {
    ("strategy", "sample"): "",
    ("strategy", "synthetic"): "--synthetic",
    ("strategy", "detect"): "--detect",
}


def cli_flag(path: str) -> str:
    """The flag of a field named below the CLI: ``CLI_FLAGS``, else by rule."""
    return CLI_FLAGS.get(path) or derived_flag(path)


def with_value(flag: str, value: str | None) -> str:
    """A flag as typed: ``--flag``, ``--flag VALUE``; a switch ``--flag`` / ``--no-flag``."""
    if value is None or value in ("true", "True"):
        return flag
    if value in ("false", "False"):
        return f"--no-{flag.removeprefix('--')}"
    return f"{flag} {value}"


def cli_name(path: str, value: str | None) -> str:
    """The CLI's default namer: every field as its flag (``owl.lam`` -> ``--owl-lambda``,
    ``overwrite=true`` -> ``--overwrite``, ``encoding=latin-1`` -> ``--encoding latin-1``)."""
    if (path, value) in CLI_VALUE_FLAGS:
        return CLI_VALUE_FLAGS[path, value]
    return with_value(cli_flag(path), value)


def _args(path: str, value, fields: dict) -> list[str]:
    if (path, value) in CLI_VALUE_FLAGS:
        flag = CLI_VALUE_FLAGS[path, value]
        return [] if not flag or (flag == "--detect" and "detector" in fields) else [flag]
    flag = cli_flag(path)
    if value is True:
        return [flag]
    if value is False:
        return [f"--no-{flag.removeprefix('--')}"]
    return [flag, str(value)]


def _replayed(argv: tuple[str, ...], fields: dict) -> list[str]:
    """A recorded command line with ``fields`` put in: a given option's old value dropped
    (``--output X``, ``--output=X``, ``-o X``) and the new one appended; a switch already
    on stays where it is."""
    given = {cli_flag(path): value for path, value in fields.items()}
    short = {"-o": "--output"}
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        flag = arg.split("=", 1)[0]
        flag = short.get(flag, flag)
        if flag in given and given[flag] is not True:
            skip = "=" not in arg and i + 1 < len(argv)
            continue
        out.append(arg)
    for path, value in fields.items():
        if not (value is True and cli_flag(path) in out):
            out += _args(path, value, fields)
    return out


def cli_command(command: Command) -> str:
    """A command line as a shell line (``calibprune calib --output sets/a --overwrite``):
    its fields as flags, or a recorded command line with them put in."""
    fields = dict(command.fields)
    if command.argv is not None:
        args = _replayed(command.argv, fields)
    else:
        args = [arg for path, value in fields.items() for arg in _args(path, value, fields)]
    return shlex.join(["calibprune", command.name, *command.positional, *args])


@dataclass
class Group:
    """The declared options of one options class in one command."""

    cls: type
    name: str  # the Python parameter prefix of its fields, and the group's path in messages
    flags: dict[str, str] = field(default_factory=dict)  # this command's own flags (path -> flag), over CLI_FLAGS
    # defaults this command gives instead of the declared ones (each one a documented exception)
    defaults: dict[str, Any] = field(default_factory=dict)
    # fields this command sets from another group's option (one flag for both: prune's
    # --encoding decodes --calib and --ppl), so they get no flag of their own
    shared: dict[str, str] = field(default_factory=dict)  # path -> "<group>.<path>" it takes its value from
    # the --help panel of its fields (None: typer's "Options"), and of the fields of its nested
    # options objects by their first path component (``{"owl": "OWL (--allocation owl)"}``)
    title: str | None = None
    sections: dict[str, str] = field(default_factory=dict)

    def leaves(self) -> list[Leaf]:
        return [leaf for leaf in walk(self.cls) if leaf.path not in self.shared]

    def param(self, leaf: Leaf) -> str:
        return f"{self.name}__{leaf.path.replace('.', '__')}"

    def panel(self, leaf: Leaf) -> str | None:
        head = leaf.path.split(".")[0]
        return self.sections.get(head, self.title) if "." in leaf.path else self.title

    def flag(self, leaf: Leaf) -> str:
        """This command's flag for ``leaf``: its own, else ``CLI_FLAGS`` (by the group's path,
        then the field's), else by rule."""
        return self.flags.get(leaf.path) or CLI_FLAGS.get(f"{self.name}.{leaf.path}") or cli_flag(leaf.path)


@dataclass
class Flags:
    """Field path (``owl.lam``, or ``<group>.<path>`` across groups) -> its flag."""

    table: dict[str, str] = field(default_factory=dict)

    def name(self, path: str, value: str | None) -> str:
        flag = self.table.get(path)
        if flag is None:  # a field this table does not hold: the CLI's flag for it
            return cli_name(path, value)
        return with_value(flag, value)

    def scoped(self, group: str) -> Callable[[str, str | None], str]:
        """A namer for templates written relative to ``group`` (paths of its own fields)."""

        def name(path: str, value: str | None) -> str:
            return self.name(f"{group}.{path}" if f"{group}.{path}" in self.table else path, value)

        return name


def flags_of(groups: list[Group], extra: dict[str, str] | None = None) -> Flags:
    flags = Flags(dict(extra or {}))
    for group in groups:
        for leaf in group.leaves():
            flag = group.flag(leaf)
            flags.table[f"{group.name}.{leaf.path}"] = flag
    return flags


def _is_list(tp) -> bool:
    return typing.get_origin(tp) in (tuple, list)


def _cli_type(leaf: Leaf):
    tp = typing.get_type_hints(leaf.owner)[leaf.name]
    if _is_list(tp):  # comma-separated and/or repeated
        return list[str] | None, None
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [t for t in typing.get_args(tp) if t is not type(None)]
        if len(members) > 1 and str in members:  # e.g. int | str ("8" or "auto"): typed as text, parsed by the field
            return (str | None if type(None) in typing.get_args(tp) else str), leaf.default()
    return tp, leaf.default()


def parameters(groups: list[Group]) -> list[inspect.Parameter]:
    """One typer parameter per declared field of ``groups``."""
    out = []
    for group in groups:
        for leaf in group.leaves():
            tp, default = _cli_type(leaf)
            default = group.defaults.get(leaf.path, default)
            flag = group.flag(leaf)
            decls = [f"{flag}/--no-{flag.removeprefix('--')}"] if tp is bool else [flag]
            shown = leaf.spec.show_default
            if shown is None and isinstance(leaf.default(), (tuple, list)):
                shown = ",".join(leaf.default()) or "none"
            option = typer.Option(
                ... if default is MISSING else default,
                *decls,
                help=leaf.spec.help,
                metavar=leaf.spec.metavar,
                show_default=True if shown is None else shown,
                rich_help_panel=group.panel(leaf),
            )
            param = inspect.Parameter(group.param(leaf), inspect.Parameter.KEYWORD_ONLY, default=option, annotation=tp)
            out.append(param)
    return out


def with_parameters(function: Callable, groups: list[Group]) -> Callable:
    """``function`` (whose own parameters are the hand-declared ones, plus ``**declared``)
    with the declared options of ``groups`` added to its signature, for typer."""
    signature = inspect.signature(function, eval_str=True)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    declared = parameters(groups)
    function.__signature__ = signature.replace(parameters=own + declared)
    function.__annotations__ = {**function.__annotations__, **{p.name: p.annotation for p in declared}}
    return function


def split(values) -> tuple[str, ...]:
    """Comma-separated and/or repeated values; ``none`` alone is the empty list."""
    items = tuple(v.strip() for value in values or () for v in str(value).split(",") if v.strip())
    return () if items == ("none",) else items


def values_of(group: Group, kwargs: dict[str, Any]) -> dict:
    """The nested mapping of ``group``'s options from the command's keyword arguments
    (list options still ``None`` keep their declared default)."""
    nested: dict = {}
    for leaf in group.leaves():
        value = kwargs.get(group.param(leaf), MISSING)
        if value is MISSING:
            continue
        tp = typing.get_type_hints(leaf.owner)[leaf.name]
        if _is_list(tp):
            if value is None:
                continue
            value = split(value) if typing.get_origin(tp) is tuple else list(split(value))
        parts = leaf.path.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def make(group: Group, kwargs: dict[str, Any], flags: Flags, **given):
    """``group.cls`` from the typed options (and ``given``: fields the command resolved itself,
    e.g. a target from --sparsity/--pattern); a bad value is refused in the CLI's words."""
    values = values_of(group, kwargs) | given
    try:
        return build(group.cls, values)
    except OptionError as error:
        raise CalibpruneError(error.render(flags.scoped(group.name), cli_command)) from None


def typed(ctx: typer.Context, names: list[str]) -> list[str]:
    """The parameters among ``names`` given on the command line (not left at their default)."""
    out = []
    for name in names:
        source = ctx.get_parameter_source(name)
        # compared by name: typer may carry its own copy of click's ParameterSource enum
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            out.append(name)
    return out


def refusal(flags: list[str], why: str) -> CalibpruneError:
    """``--a, --b have no effect <why>`` (with "drop it"/"drop them" agreeing)."""
    verb = "has" if len(flags) == 1 else "have"
    why = why.replace("drop them", "drop it") if len(flags) == 1 else why.replace("drop it", "drop them")
    return CalibpruneError(f"{', '.join(flags)} {verb} no effect {why}")


def audit(ctx: typer.Context, groups: list[tuple[Group, Any]], flags: Flags) -> None:
    """Refuse every typed option the run would not use, by its own rule (on its group's
    object), in declaration order."""
    for group, obj in groups:
        leaves = {group.param(leaf): leaf for leaf in group.leaves()}
        given = typed(ctx, list(leaves))
        if not given:
            continue
        by_reason: dict[str, list[str]] = {}
        for param in given:
            leaf = leaves[param]
            rule = leaf.spec.applies
            if rule is not None and not rule.holds(obj):
                why = render(rule.explain(obj), flags.scoped(group.name))
                by_reason.setdefault(why, []).append(flags.table[f"{group.name}.{leaf.path}"])
        for why, names in by_reason.items():
            raise refusal(names, why)
