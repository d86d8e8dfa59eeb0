"""Calibration strategies as registered objects: one declaration per option, the same in the
CLI, a study spec and Python; a new strategy is one class; the stage keys of the paper's three
keep the layout every committed cell was keyed with."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass

import pytest
import torch

from calibprune.calibration import CalibrationSet
from calibprune.calibration.job import CalibJob
from calibprune.calibration.strategies import STRATEGIES, Strategy, all_strategies, get_strategy, names
from calibprune.options import OptionError, check_fields, option, walk


def _calib_parameters():
    """The calib command's typer parameters, by name (what the CLI offers and its defaults)."""
    import inspect

    from calibprune.cli.calib import calib

    return {p.name: p.default for p in inspect.signature(calib).parameters.values()}


def test_the_paper_strategies_are_registered_in_its_order():
    assert names()[:3] == ["sample", "synthetic", "detect"]
    assert [s.name for s in all_strategies()] == names()
    with pytest.raises(OptionError, match="^strategy 'zipcal2' is unknown: use one of sample, synthetic, detect"):
        CalibJob(strategy="zipcal2")


def test_every_declared_calibration_option_is_settable_from_the_cli_a_spec_and_python_with_one_default():
    from calibprune.cli.calib import calib_groups
    from calibprune.experiments.spec import strategy_keys

    parameters = _calib_parameters()
    groups = {g.name: g for g in calib_groups()}
    owners = [(CalibJob, "job", None)] + [(s.options, s.section, s) for s in all_strategies() if s.options]
    seen = 0
    for cls, section, strategy in owners:
        for leaf in walk(cls):
            param = groups[section].param(leaf)
            assert param in parameters, f"{section}.{leaf.path} has no CLI flag"
            cli_default = parameters[param].default
            declared = leaf.default()
            if leaf.path != "strategy":
                assert cli_default == declared, (section, leaf.path, cli_default, declared)
            python = getattr(CalibJob() if strategy is None else strategy.default_options(), leaf.path)
            assert python == declared
            key = leaf.path if strategy is None else section
            assert key in strategy_keys(), f"a study cannot set {section}.{leaf.path}"
            seen += 1
    assert seen >= 8 + 9 + 4  # the job's, the generation's and the detection's options


def test_a_spec_sets_a_strategys_options_and_refuses_them_for_another(tmp_path, text_corpus):
    from calibprune.experiments.spec import _strategy

    (variant,) = _strategy(
        {"source": str(text_corpus), "strategy": "detect", "detect": {"k": 0.5, "detector": "mink++"}},
        {"nsamples": 2, "seqlen": 16},
        "calibration.strategies[0]",
    )
    assert variant.job.options.k == 0.5 and variant.attrs()["keep_top"] == 0.5
    with pytest.raises(Exception, match=r"calibration.strategies\[0\].generation: applies to strategy: synthetic"):
        _strategy({"source": str(text_corpus), "generation": {"top_k": 3}}, {}, "calibration.strategies[0]")
    with pytest.raises(Exception, match=r"calibration.strategies\[0\].generation.filter_top 1.0 must be in \[0, 1\)"):
        _strategy(
            {"source": str(text_corpus), "strategy": "synthetic", "generation": {"filter_top": 1.0}},
            {"nsamples": 2, "seqlen": 16},
            "calibration.strategies[0]",
        )


def test_the_paper_strategies_keys_keep_the_layout_of_the_committed_cells():
    """The 0.1 CalibJob's asdict, transcribed: a key layout change would recompute every cell."""
    generation = {"prefix_tokens": 1, "temperature": 0.6, "top_p": 0.95, "top_k": 50, "repetition_penalty": 1.2,
                  "max_new_tokens": None, "batch_size": 32, "num_texts": None, "filter_top": 0.2}  # fmt: skip
    common = {"source": "wiki-en", "nsamples": 128, "seqlen": 2048, "seed": 0, "sampling": None, "text_field": "text",
              "windows": "disjoint"}  # fmt: skip
    detect = {"detector": "mink++", "keep_top": 0.5, "mink_k": 0.2, "num_candidates": None}
    assert CalibJob().key() == {**common, "strategy": "sample", "generation": generation, **detect}
    from calibprune.calibration import DetectOptions, GenerationOptions

    job = CalibJob(strategy="synthetic", options=GenerationOptions(filter_top=0.1), encoding="latin-1")
    assert job.key() == {**common, "strategy": "synthetic", "generation": {**generation, "filter_top": 0.1},
                         **detect, "encoding": "latin-1"}  # fmt: skip
    job = CalibJob(strategy="detect", options=DetectOptions(k=0.5, keep_top=0.3))
    assert job.key() == {**common, "strategy": "detect", "generation": generation, **detect, "mink_k": 0.5,
                         "keep_top": 0.3}  # fmt: skip


@dataclass(frozen=True)
class EveryNth:
    every: int = option(2, help="Keep every n-th text.", check=lambda v: None if v >= 1 else f"{{}} {v} must be >= 1")

    def __post_init__(self):
        check_fields(self)


class EveryNthStrategy(Strategy):
    """A toy strategy, registered by the test alone: one class and its options is all it takes."""

    name = "every-nth"
    summary = "every n-th text of the source"
    options = EveryNth
    section = "every_nth"

    def build(self, job, inputs):
        from calibprune.calibration.sampling import windows_from_texts

        texts = [d.text for d in inputs.corpus.documents("calib")][:: job.options.every]
        ids, _ = windows_from_texts(texts, inputs.tokenizer, job.nsamples, job.seqlen, job.seed, mode="stream")
        return CalibrationSet(ids, manifest={"source": job.source, "strategy": self.name})


@pytest.fixture
def toy_strategy():
    STRATEGIES.register(EveryNthStrategy.name)(EveryNthStrategy())
    yield get_strategy("every-nth")
    STRATEGIES.unregister("every-nth")


def test_a_new_strategy_is_one_class_usable_from_python_and_a_spec(toy_strategy, model_dir, text_corpus, tmp_path):
    from calibprune.experiments.spec import _strategy
    from calibprune.jobs.calibrate import run_calib

    job = CalibJob(source=str(text_corpus), nsamples=2, seqlen=16, strategy="every-nth", options=EveryNth(every=3))
    first = run_calib(str(model_dir), job, tmp_path / "set", progress=False)
    again = run_calib(str(model_dir), job, None, progress=False)
    assert torch.equal(first.input_ids, again.input_ids)  # same seed, same set
    assert CalibrationSet.load(tmp_path / "set").manifest["strategy"] == "every-nth"
    assert job.key()["every_nth"] == {"every": 3} and job.key()["strategy"] == "every-nth"
    from calibprune.experiments.revisions import algorithms

    toy = algorithms()["calib/every-nth"]  # a study keys its sets by the strategy's own revision
    assert toy.revision == 1 and toy.file.endswith("test_strategies.py")
    assert job.key() != CalibJob(**{**_job_args(job), "options": EveryNth(every=2)}).key()
    (variant,) = _strategy(
        {"source": str(text_corpus), "strategy": "every-nth", "every_nth": {"every": 4}},
        {"nsamples": 2, "seqlen": 16},
        "calibration.strategies[0]",
    )
    assert variant.job.options == EveryNth(every=4) and variant.label == f"every-nth:{text_corpus}"
    with pytest.raises(Exception, match=r"calibration.strategies\[0\].every_nth.every 0 must be >= 1"):
        _strategy({"source": str(text_corpus), "strategy": "every-nth", "every_nth": {"every": 0}}, {},
                  "calibration.strategies[0]")  # fmt: skip


def _job_args(job: CalibJob) -> dict:
    return {k: v for k, v in asdict(job).items() if k != "options"}


def test_a_strategys_options_of_the_wrong_kind_are_refused():
    from calibprune.calibration import GenerationOptions

    with pytest.raises(OptionError, match="strategy='sample' takes no options, not a GenerationOptions"):
        CalibJob(options=GenerationOptions())
    assert all(leaf.default() is not MISSING for leaf in walk(CalibJob))
