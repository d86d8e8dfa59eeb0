"""One declaration per option.

An option is a dataclass field made with :func:`option`: its default, its help text, its
check and the rule that says when it applies, in one place. Everything else derives from
the declarations:

* the CLI's flags and their help, and its "this run would not use X" audit
  (:mod:`calibprune.cli_options`);
* the study spec's schema: :func:`build` makes an options object from a mapping, refusing
  unknown keys with their key path;
* the Python API: the dataclasses themselves, whose keyword arguments are the fields;
* the resolved config in reports: :func:`to_dict`.

**Errors name fields, not flags.** Below the CLI a bad value raises :class:`OptionError`,
whose message is a template in which ``{owl.lam}`` stands for a field (by its path from the
object that raised) and ``{allocation=owl}`` for a field holding a value. Each front end
renders the template in its own words: the CLI as its flags (``--owl-lambda``,
``--allocation owl``), a study spec as key paths (``pruning[1].owl.lam``,
``pruning[1].allocation: owl``), Python as keywords (``owl.lam``, ``allocation='owl'``),
which is also what ``str(error)`` says.

A message that suggests a whole command (rebuild the set with ...) holds a
:func:`command_line` placeholder: the CLI renders it as a shell line
(``calibprune calib --nsamples 256``), Python as a call of the command with keywords
(``calib(nsamples=256)``). No module below the CLI spells a flag: the flags live in
:mod:`calibprune.cli_options` (``CLI_FLAGS`` and the rule ``derived_flag``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any

from .errors import CalibpruneError, MissingAssetError

# {path} or {path=value}; a path is dotted field names
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?:=([^{}]*))?\}")

# a command line: {@<its spec as percent-quoted JSON>} (see command_line)
_COMMAND = re.compile(r"\{@([^{}]*)\}")
# what render reads: {{ and }} (literal braces, see literal), a command line, a field
_TOKEN = re.compile(r"(\{\{|\}\})|" + _COMMAND.pattern + "|" + _PLACEHOLDER.pattern)


def literal(text) -> str:
    """``text`` (a path, a value the user gave) put in a template as it is: its braces doubled."""
    return str(text).replace("{", "{{").replace("}", "}}")


Namer = Callable[[str, "str | None"], str]  # (field path, value or None) -> words
Commander = Callable[["Command"], str]  # a command line -> words


def python_name(path: str, value: str | None) -> str:
    """How Python code names a field: its keyword path (``owl.lam``, ``allocation='owl'``,
    ``owl.mixed_nm=True``, ``sparsity=0.5``)."""
    if value is None:
        return path
    if value in ("true", "false"):
        return f"{path}={value == 'true'}"
    try:
        float(value)
    except ValueError:
        return f"{path}={value!r}"
    return f"{path}={value}"


@dataclass(frozen=True)
class Command:
    """A command a message suggests: ``calibprune <name> <positional...>`` with ``fields``
    (path -> value, as :func:`command_line` took them). ``argv``: the arguments as a
    command line recorded them (a rebuild command replays them), or None."""

    name: str
    positional: tuple[str, ...] = ()
    fields: tuple[tuple[str, Any], ...] = ()
    argv: tuple[str, ...] | None = None


def command_line(name: str, *positional: str, argv=None, fields: dict | None = None, **keywords) -> str:
    """A placeholder for the command ``calibprune <name>`` with these options (fields by
    path, ``fields=`` for dotted paths such as ``generation.top_p``), to put in a template.
    A value of True is a switch that is on, None leaves the option out."""
    given = {**(fields or {}), **keywords}
    spec = {
        "name": name,
        "positional": [str(p) for p in positional],
        "fields": [[k, v] for k, v in given.items() if v is not None],
        "argv": None if argv is None else [str(a) for a in argv],
    }
    from urllib.parse import quote

    return "{@" + quote(json.dumps(spec), safe="") + "}"


def _command(encoded: str) -> Command:
    from urllib.parse import unquote

    spec = json.loads(unquote(encoded))
    argv = spec.get("argv")
    return Command(
        spec["name"],
        tuple(spec.get("positional") or ()),
        tuple((k, v) for k, v in spec.get("fields") or ()),
        None if argv is None else tuple(argv),
    )


def python_command(command: Command) -> str:
    """How Python code names a command: a call with keywords (``calib(output='sets/a', overwrite=True)``)."""
    args = [repr(p) for p in command.positional]
    args += [f"{path}={value!r}" for path, value in command.fields]
    return f"{command.name}({', '.join(args)})"


def render(template: str, name: Namer = python_name, command: Commander = python_command) -> str:
    """``template`` with every ``{path}`` / ``{path=value}`` put in a front end's words, and
    every command line (:func:`command_line`) too."""

    def one(m: re.Match) -> str:
        if m.group(1):
            return m.group(1)[0]
        if m.group(2) is not None:
            return command(_command(m.group(2)))
        return name(m.group(3), m.group(4))

    return _TOKEN.sub(one, template)


def _restore(cls, path: str, template: str, state: dict):
    error = cls.__new__(cls)
    error.path, error.template = path, template
    error.__dict__.update(state)
    Exception.__init__(error, render(template))
    return error


class OptionError(CalibpruneError):
    """A bad option value. ``path``: the field at fault, from the object that raised (``""``
    when the message names fields without one at fault); ``template``: the message, with
    ``{path}`` / ``{path=value}`` placeholders for fields and :func:`command_line` ones.
    ``str(error)`` is its Python rendering; it pickles (it crosses process pools and Ray)."""

    def __init__(self, path: str, template: str):
        self.path = path
        self.template = template
        super().__init__(self.render(python_name))

    def __reduce__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("path", "template")}
        return (_restore, (type(self), self.path, self.template, state))

    def within(self, prefix: str) -> OptionError:
        """The same error seen from an object that holds the raiser under ``prefix``."""
        if not prefix:
            return self

        def moved(match: re.Match) -> str:
            if match.group(3) is None:  # a literal brace or a command line: as it was
                return match.group(0)
            value = "" if match.group(4) is None else f"={match.group(4)}"
            return f"{{{prefix}.{match.group(3)}{value}}}"

        path = f"{prefix}.{self.path}" if self.path else prefix
        return OptionError(path, _TOKEN.sub(moved, self.template))

    def render(self, name: Namer, command: Commander = python_command) -> str:
        return render(self.template, name, command)

    def fields(self) -> list[str]:
        """Every field the message names (the one at fault first)."""
        named = [m.group(3) for m in _TOKEN.finditer(self.template) if m.group(3)]
        return [self.path] + [p for p in named if p != self.path]


class MissingAsset(OptionError, MissingAssetError):
    """A missing asset whose message names fields or a command (``{@...}``): an
    :class:`OptionError` that is also a :class:`~calibprune.errors.MissingAssetError`."""

    def __init__(self, template: str, path: str = ""):
        super().__init__(path, template)


@dataclass(frozen=True)
class Rule:
    """When an option changes a run. ``test(root)``: whether it does, on the resolved
    options of the whole command; ``why``: what a refusal says after "has no effect", a
    template (or a function of ``root`` giving one) such as
    ``"without {allocation=owl}: drop it or pass {allocation=owl}"``."""

    test: Callable[[Any], bool]
    why: str | Callable[[Any], str]

    def holds(self, root) -> bool:
        return bool(self.test(root))

    def explain(self, root) -> str:
        return self.why(root) if callable(self.why) else self.why


@dataclass(frozen=True)
class Declared:
    """What :func:`option` records about a field."""

    help: str
    check: Callable[[Any], str | None] | None = None  # value -> the problem (a template; {} = this field), or None
    applies: Rule | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    show_default: str | None = None  # how --help shows a default that is not a plain value
    keyed_when_set: bool = False  # left out of stage keys while at its default (see utils.keys)


def option(
    default: Any = MISSING,
    *,
    help: str,
    default_factory: Any = MISSING,
    check: Callable[[Any], str | None] | None = None,
    choices: tuple[str, ...] | None = None,
    applies: Rule | None = None,
    metavar: str | None = None,
    show_default: str | None = None,
    keyed_when_set: bool = False,
) -> Any:
    """A dataclass field that is an option (see the module docstring). ``choices``: the
    allowed values (checked like ``check``)."""
    declared = Declared(help, check, applies, choices, metavar, show_default, keyed_when_set)
    metadata = {"option": declared}
    if keyed_when_set:
        metadata["keyed_when_set"] = True
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declared_as(cls: type, name: str, default: Any = MISSING, **changes) -> Any:
    """A field declared like ``cls``'s option ``name`` (its check, choices and help), with
    ``changes`` to its :class:`Declared` (``help``, ``applies``, ``show_default``, ...) and
    another ``default`` if given: the check of a value is written once, where the option is
    first declared, and an option that means the same elsewhere reuses it."""
    source = {f.name: f for f in fields(cls)}[name]
    spec = dataclasses.replace(declared(source), **changes)
    metadata = {"option": spec}
    if spec.keyed_when_set:
        metadata["keyed_when_set"] = True
    if default is MISSING and source.default_factory is not MISSING:
        return dataclasses.field(default_factory=source.default_factory, metadata=metadata)
    return dataclasses.field(default=source.default if default is MISSING else default, metadata=metadata)


def declared(f: dataclasses.Field) -> Declared | None:
    return f.metadata.get("option")


def check_fields(obj) -> None:
    """Run every declared check of ``obj``'s own fields (call from ``__post_init__``)."""
    for f in fields(obj):
        spec = declared(f)
        if spec is None:
            continue
        value = getattr(obj, f.name)
        check_values(type(obj), **{f.name: value})


def check_values(cls: type, **values) -> None:
    """Run the declared checks of ``cls``'s fields named in ``values`` on those values, without
    building a ``cls`` (for a function that takes some of its options as plain arguments: it
    checks them by the same declarations, not by a copy)."""
    known = {f.name: f for f in fields(cls)}
    for name, value in values.items():
        spec = declared(known[name])
        if spec.choices is not None and value not in spec.choices:
            raise OptionError(name, f"{{{name}}} {value!r} is unknown: use one of {', '.join(map(str, spec.choices))}")
        problem = spec.check(value) if spec.check else None
        if problem:
            raise OptionError(name, problem.replace("{}", "{" + name + "}"))


def at_least(bound, note: str = "") -> Callable[[Any], str | None]:
    """A check: the value is ``None`` or >= ``bound`` (``note``: why, or an example)."""
    suffix = f" ({note})" if note else ""
    return lambda v: None if v is None or v >= bound else f"{{}} {v} must be >= {bound}{suffix}"


def in_interval(low, high, closed: str = "()", note: str = "") -> Callable[[Any], str | None]:
    """A check: ``low < v < high`` with the ends ``closed`` gives (``"(]"``: ``low < v <= high``)."""
    above = (lambda v: v >= low) if closed[0] == "[" else (lambda v: v > low)
    below = (lambda v: v <= high) if closed[1] == "]" else (lambda v: v < high)
    suffix = f": {note}" if note else ""
    return lambda v: (
        None if above(v) and below(v) else f"{{}} {v} must be in {closed[0]}{low}, {high}{closed[1]}{suffix}"
    )


@dataclass(frozen=True)
class Leaf:
    """One option of a tree of options objects, by its path from the root."""

    path: str
    field: dataclasses.Field
    spec: Declared
    owner: type

    @property
    def name(self) -> str:
        return self.field.name

    def default(self):
        if self.field.default is not MISSING:
            return self.field.default
        if self.field.default_factory is not MISSING:
            return self.field.default_factory()
        return MISSING


def is_options(tp) -> bool:
    return isinstance(tp, type) and is_dataclass(tp) and any(declared(f) for f in fields(tp))


def _field_type(owner: type, f: dataclasses.Field):
    return typing.get_type_hints(owner).get(f.name)


def walk(cls: type, prefix: str = "") -> Iterator[Leaf]:
    """Every declared option of ``cls`` and of the options objects it nests, depth first."""
    for f in fields(cls):
        tp = _field_type(cls, f)
        path = f"{prefix}{f.name}"
        if is_options(tp):
            yield from walk(tp, f"{path}.")
        elif declared(f) is not None:
            yield Leaf(path, f, declared(f), cls)


def get(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def build(cls: type, values: dict | None, path_prefix: str = "", keys: Callable[[str], str] | None = None):
    """``cls`` from a (nested) mapping, as a study spec gives it: unknown keys are refused
    with their key path; nested options objects are built from nested mappings; any
    :class:`OptionError` comes out with its path from ``cls``."""
    values = dict(values or {})
    known = {f.name: f for f in fields(cls) if f.init}
    unknown = sorted(set(values) - set(known))
    if unknown:
        allowed = ", ".join(sorted(known))
        raise OptionError(unknown[0], f"{{{unknown[0]}}}: unknown key: use one of {allowed}")
    kwargs = {}
    for name, value in values.items():
        tp = _field_type(cls, known[name])
        if is_options(tp) and (isinstance(value, dict) or value is None):
            try:
                value = build(tp, value)
            except OptionError as error:
                raise error.within(name) from None
        elif typing.get_origin(tp) is tuple and isinstance(value, list):  # YAML has lists, not tuples
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as error:  # a wrong-typed value reached a dataclass
        raise OptionError("", f"bad value ({error})") from None


def to_dict(obj) -> dict:
    """The resolved options, as reports record them (nested objects as mappings)."""
    return dataclasses.asdict(obj)
