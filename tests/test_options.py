"""One declaration per option: every declared field is settable from the CLI, a study spec
and Python, with one default; errors name fields and each front end renders them in its
own words; the audit comes from each field's own rule."""

from __future__ import annotations

import re
from dataclasses import MISSING

import pytest
import typer
from conftest import other_scalar_value

from calibprune.cli.app import app
from calibprune.cli.prune import prune_groups, target_flags
from calibprune.cli_options import make, parameters
from calibprune.config import PruneConfig, SparsityTarget
from calibprune.errors import CalibpruneError
from calibprune.experiments.spec import _settings
from calibprune.options import OptionError, build, get, render, walk

LEAVES = list(walk(PruneConfig))
# defaults a front end gives on purpose instead of the declared one (each with its reason in cli.py)
CLI_EXCEPTIONS = {"runner.activation_store": "auto"}


def _other_value(leaf):
    """A valid value different from the default, by the field's kind."""
    value = other_scalar_value(leaf)
    if value is not None:
        return value
    if isinstance(leaf.default(), tuple):
        return ("self_attn.*",)
    if leaf.path == "method":
        return "sparsegpt"
    if leaf.path == "allocation":  # checked against the allocation registry
        return "owl"
    raise AssertionError(f"no sample value for {leaf.path}")


def _context(leaf, value) -> dict:
    """Other settings under which ``leaf`` applies (its rule holds): field path -> value, with
    the target as ``sparsity`` or ``pattern``."""
    top = leaf.path.split(".")[0]
    extra = {"sparsegpt": {"method": "sparsegpt"}, "owl": {"allocation": "owl"}, "dsnot": {"refine": "dsnot"}}
    extra |= {"ria": {"method": "ria"}, "admm": {"method": "admm"}}
    out = {"sparsity": 0.5, **extra.get(top, {})}
    if leaf.path in ("owl.mixed_nm", "owl.nm_lambda"):  # OWL's N:M variant: a pattern and a per-block N
        out = {"pattern": "4:8", "allocation": "owl", "owl.mixed_nm": True}
    if leaf.path == "ria.permutation":  # channel permutation: N:M only
        out = {"pattern": "2:4", "method": "ria"}
    if leaf.path in ("ria.column_order", "ria.lsa_blocks"):  # the permutation's own knobs
        out = {"pattern": "2:4", "method": "ria", "ria.permutation": "lsa"}
    return out


def _nested(flat: dict) -> dict:
    out: dict = {}
    for path, value in flat.items():
        node = out
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = list(value) if isinstance(value, tuple) else value
    return out


def _python(flat: dict) -> PruneConfig:
    values = _nested({k: v for k, v in flat.items() if k not in ("sparsity", "pattern")})
    return build(PruneConfig, values | {"target": SparsityTarget.parse(flat.get("sparsity"), flat.get("pattern"))})


def _cli_config(args: list[str]) -> PruneConfig:
    command = typer.main.get_command(app).commands["prune"]
    ctx = command.make_context("prune", ["--output", "x", *args])
    params = dict(ctx.params)
    groups = prune_groups()
    target = SparsityTarget.parse(params.pop("sparsity"), params.pop("pattern"))
    return make(groups[0], params, target_flags(groups), target=target), ctx


def _cli_args(flat: dict) -> list[str]:
    group = prune_groups()[0]
    by_path = {leaf.path: leaf for leaf in group.leaves()}
    args = []
    for path, value in flat.items():
        flag = group.flag(by_path[path]) if path in by_path else f"--{path}"
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{flag[2:]}")
        else:
            args += [flag, ",".join(value) if isinstance(value, tuple) else str(value)]
    return args


@pytest.mark.parametrize("leaf", LEAVES, ids=[leaf.path for leaf in LEAVES])
def test_every_declared_field_has_one_default_and_is_settable_from_cli_spec_and_python(leaf):
    target = SparsityTarget.unstructured(0.5)
    default = leaf.default()
    assert default is not MISSING, f"{leaf.path} has no default"
    # defaults: Python, spec and CLI
    assert get(PruneConfig(target=target), leaf.path) == default
    (from_spec,) = _settings({"sparsity": 0.5}, "pruning[0]")
    assert get(from_spec.config, leaf.path) == default
    cli_default = {p.name: p.default.default for p in parameters(prune_groups())}[prune_groups()[0].param(leaf)]
    expected = CLI_EXCEPTIONS.get(leaf.path, default)
    assert (tuple(cli_default) if isinstance(expected, tuple) and cli_default is not None else cli_default) in (
        expected,
        None if isinstance(expected, tuple) else expected,
    )
    # set from each front end to the same value
    value = _other_value(leaf)
    flat = _context(leaf, value) | {leaf.path: value}
    assert get(_python(flat), leaf.path) == value
    (setting,) = _settings(_nested(flat), "pruning[0]")
    assert get(setting.config, leaf.path) == value
    config, _ = _cli_config(_cli_args(flat))
    assert get(config, leaf.path) == value


@pytest.mark.parametrize("leaf", [leaf for leaf in LEAVES if leaf.spec.applies], ids=lambda leaf: leaf.path)
def test_the_audit_refuses_a_typed_option_exactly_when_its_rule_says_the_run_ignores_it(leaf):
    from calibprune.cli_options import audit

    value = _other_value(leaf)
    groups = prune_groups()
    flags = target_flags(groups)
    config, ctx = _cli_config(_cli_args(_context(leaf, value) | {leaf.path: value}))
    audit(ctx, [(groups[0], config)], flags)  # it applies here: accepted
    unused = {"method": "magnitude"} if leaf.path.startswith(("sparsegpt", "runner")) else {}
    config, ctx = _cli_config(_cli_args({"sparsity": 0.5, **unused, leaf.path: value}))
    with pytest.raises(CalibpruneError, match=f"^{re.escape(groups[0].flag(leaf))} has no effect"):
        audit(ctx, [(groups[0], config)], flags)


def test_an_error_names_the_field_and_each_front_end_renders_it():
    with pytest.raises(OptionError) as raised:
        build(PruneConfig, {"allocation": "owl", "owl": {"lam": 0.3}, "target": SparsityTarget.unstructured(0.6)})
    error = raised.value
    assert error.path == "owl.lam" and str(error).endswith("lower owl.lam")  # Python: the keyword path
    assert error.render(target_flags(prune_groups()).scoped("config")).endswith("lower --owl-lambda")
    with pytest.raises(
        CalibpruneError, match=r"^pruning\[1\] \(sparsity=0.6, allocation=owl\): .*lower pruning\[1\]\.owl\.lam$"
    ):
        _settings({"sparsity": 0.6, "allocation": "owl", "owl": {"lam": 0.3}}, "pruning[1]")
    # a check declared on a nested field comes out with its path from the outer object
    with pytest.raises(OptionError) as nested:
        build(PruneConfig, {"dsnot": {"cycles": -1}, "target": SparsityTarget.unstructured(0.5)})
    assert nested.value.path == "dsnot.cycles" and str(nested.value).startswith("dsnot.cycles -1 must be >= 0")
    assert render("pass {owl.mixed_nm=true} or {sparsity=0.5}") == "pass owl.mixed_nm=True or sparsity=0.5"


def test_unknown_spec_keys_are_refused_with_their_path():
    with pytest.raises(CalibpruneError, match=r"pruning\[0\]\.owl\.lamda: unknown key: use one of hyper_m, lam"):
        _settings({"sparsity": 0.5, "allocation": "owl", "owl": {"lamda": 0.1}}, "pruning[0]")


# (that no module below the CLI names a flag: tests/test_messages.py)


def test_an_option_error_from_deep_in_a_run_reaches_the_cli_in_its_flags(model_dir, tmp_path):
    from conftest import run_cli

    args = ["--pattern", "1:3", "--nsamples", "2", "--seqlen", "32", "--output", str(tmp_path / "out")]
    done = run_cli("prune", "--model", str(model_dir), *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "not divisible by M=3" in done.stderr and "exclude the layer with --ignore" in done.stderr
    with pytest.raises(OptionError, match="exclude the layer with ignore$"):  # Python: the keyword
        from calibprune.pruning.masks import check_nm_width

        check_nm_width(32, 3)
