"""One declaration per option, for every command: each declared field of prune's calibration
and perplexity requests, eval's perplexity and task requests and each analysis's options is
a flag of its command with the declared default, a key of the study spec, and a keyword of
Python, and a value set from each reaches the job. (PruneConfig's fields: test_options.py;
the calibration strategies': test_strategies.py.)"""

from __future__ import annotations

import inspect
from dataclasses import MISSING

import pytest
import typer
from conftest import other_scalar_value

from calibprune.analysis.options import MembershipOptions, SimilarityOptions
from calibprune.cli.analyze import analyze_membership, analyze_similarity, membership_groups, similarity_groups
from calibprune.cli.app import app
from calibprune.cli.evaluate import eval_, eval_groups
from calibprune.cli.prune import prune, prune_groups
from calibprune.cli_options import flags_of, make
from calibprune.errors import CalibpruneError
from calibprune.experiments.spec import ANALYSIS_KEYS, JOB_KEYS, PPL_KEYS, TASK_KEYS, _analyses, _evaluation

# (command name, its function, its groups, the group names whose fields this test walks)
COMMANDS = {
    "prune": (prune, prune_groups, ("calibration", "perplexity")),
    "eval": (eval_, eval_groups, ("perplexity", "tasks")),
    "similarity": (analyze_similarity, similarity_groups, ("similarity",)),
    "membership": (analyze_membership, membership_groups, ("membership",)),
}

# what a study spec calls each group's fields
SPEC_KEYS = {
    "calibration": set(JOB_KEYS),  # a calibration strategy entry: CalibJob's job keys
    "perplexity": PPL_KEYS,
    "tasks": TASK_KEYS,
    "similarity": ANALYSIS_KEYS["similarity"] | {"model"},  # model: the study's own (test below)
    "membership": ANALYSIS_KEYS["membership"],
}

# defaults a command gives on purpose instead of the declared one, with the reason
CLI_EXCEPTIONS: dict = {}


def _cases():
    for command, (_, groups, walked) in COMMANDS.items():
        for group in groups():
            if group.name in walked:
                for leaf in group.leaves():
                    yield pytest.param(command, group, leaf, id=f"{command}:{group.name}.{leaf.path}")


def _other_value(leaf):
    """A valid value different from the default."""
    samples = {
        "source": "kjv",
        "text_field": "body",
        "corpora": ["wiki-en"],
        "names": ["boolq"],
        "sampling": "document",
        "split": "heldout",
        "reference": "corpus:kjv",
        "model": "smollm2-135m",
        "encoding": "latin-1",
        "batch_size": 3,
        "max_windows": 4,
        "limit": 4,
        "nsamples": 4,
        "seqlen": 64,
    }
    if leaf.path in samples:
        return samples[leaf.path]
    if leaf.path == "windows":
        return "random"
    value = other_scalar_value(leaf)
    if value is not None:
        return value
    raise AssertionError(f"no sample value for {leaf.path}")


def _cli(command: str, args: list[str]) -> dict:
    """The command's parsed parameters (typer's conversion included)."""
    root = typer.main.get_command(app)
    if command in ("similarity", "membership"):
        root = root.commands["analyze"]
    click_command = root.commands[command]
    required = {"prune": ["--output", "x"], "eval": ["--model", "m"]}.get(command, ["--sets", "a", "--output", "x"])
    return dict(click_command.make_context(command, [*required, *args]).params)


@pytest.mark.parametrize("command, group, leaf", list(_cases()))
def test_every_declared_option_of_every_command_is_settable_from_the_cli_a_spec_and_python(command, group, leaf):
    function, groups_of, _ = COMMANDS[command]
    declared = leaf.default()
    assert declared is not MISSING, f"{group.name}.{leaf.path} has no default"
    # Python: the dataclass's keyword, with the declared default
    assert getattr(group.cls(), leaf.path) == declared
    # CLI: a flag with the same default
    parameters = inspect.signature(function).parameters
    param = group.param(leaf)
    assert param in parameters, f"{command} has no flag for {group.name}.{leaf.path}"
    cli_default = parameters[param].default.default
    expected = CLI_EXCEPTIONS.get((command, group.name, leaf.path), declared)
    if isinstance(expected, list):
        assert cli_default in (None, expected)  # a list flag left out keeps the declared default
    else:
        assert cli_default == expected or str(cli_default) == str(expected)
    # the spec: a key
    assert leaf.path in SPEC_KEYS[group.name], f"a study cannot set {group.name}.{leaf.path}"
    # a value set from the CLI reaches the options object
    value = _other_value(leaf)
    flag = group.flag(leaf)
    typed = ",".join(value) if isinstance(value, list) else str(value)
    groups = groups_of()
    built = make(group, _cli(command, [flag, typed]), flags_of(groups))
    assert getattr(built, leaf.path) == value


@pytest.mark.parametrize("group", ["perplexity", "tasks"])
def test_a_spec_sets_every_evaluation_option(group):
    cls = dict((g.name, g.cls) for g in eval_groups())[group]
    from calibprune.options import walk

    for leaf in walk(cls):
        value = _other_value(leaf)
        required = {"perplexity": {"corpora": ["wiki-en"]}, "tasks": {"names": ["boolq"]}}[group]
        entry = required | {leaf.path: value}
        resolved = _evaluation({"ppl" if group == "perplexity" else "tasks": entry})
        request = resolved.ppl if group == "perplexity" else resolved.tasks
        assert getattr(request, leaf.path) == value, leaf.path


@pytest.mark.parametrize("kind, cls", [("similarity", SimilarityOptions), ("membership", MembershipOptions)])
def test_a_spec_sets_every_analysis_option_and_refuses_bad_values_with_the_key_path(kind, cls):
    from calibprune.experiments.spec import analysis_options
    from calibprune.options import walk

    for leaf in walk(cls):
        if leaf.path == "model":  # a study's analysis tokenizes with the study's model
            continue
        value = _other_value(leaf)
        (step,) = _analyses([{"kind": kind, leaf.path: value}])
        assert getattr(analysis_options(step, "smollm2-135m"), leaf.path) == value
    (step,) = _analyses([{"kind": "similarity", "unit": "token"}])
    assert analysis_options(step, "gemma-3-270m").model == "gemma-3-270m"
    bad = {"similarity": ("ngram", 0, "must be >= 1"), "membership": ("k", 1.5, r"must be in \(0, 1\]")}[kind]
    with pytest.raises(CalibpruneError, match=rf"^analysis\[0\]\.{bad[0]} {bad[1]} {bad[2]}"):
        _analyses([{"kind": kind, bad[0]: bad[1]}])


def test_a_spec_names_a_bad_evaluation_value_by_its_key_path():
    with pytest.raises(CalibpruneError, match=r"^evaluation\.ppl\.seqlen 1 must be >= 2"):
        _evaluation({"ppl": {"corpora": ["wiki-en"], "seqlen": 1}})
    with pytest.raises(CalibpruneError, match=r"^evaluation\.tasks\.scoring 'fast' is unknown: use one of"):
        _evaluation({"tasks": {"names": ["boolq"], "scoring": "fast"}})
    with pytest.raises(CalibpruneError, match=r"^evaluation\.tasks\.batch_size 'many' must be a positive integer"):
        _evaluation({"tasks": {"names": ["boolq"], "batch_size": "many"}})


def test_shared_flags_set_both_fields_and_each_group_names_where_its_value_comes_from():
    """prune's one --encoding decodes --calib and --ppl; eval's one --batch-size serves the
    tasks and the perplexity windows: the shared field has no flag of its own."""
    (_, calibration, perplexity) = prune_groups()
    assert perplexity.shared == {"encoding": "calibration.encoding"}
    assert "encoding" not in [leaf.path for leaf in perplexity.leaves()]
    (ppl_group, tasks_group) = eval_groups()
    assert ppl_group.shared == {"batch_size": "tasks.batch_size"}
    params = _cli("eval", ["--batch-size", "3", "--tasks", "boolq", "--ppl", "wiki-en"])
    flags = flags_of(eval_groups())
    tasks = make(tasks_group, params, flags)
    ppl = make(ppl_group, params, flags, batch_size=tasks.batch_size)
    assert tasks.batch_size == ppl.batch_size == 3
