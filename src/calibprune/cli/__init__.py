"""``calibprune`` command line: thin front ends over :mod:`calibprune.jobs`, one module per command group.

* :mod:`.app` -- the typer app, :func:`main`, how errors and interrupts are put in words;
* :mod:`.prune`, :mod:`.evaluate`, :mod:`.calib`, :mod:`.analyze`, :mod:`.study`
  (studies, sweep, report), :mod:`.catalog` (models, corpora), :mod:`.train` (train-reference)
  -- the commands;
* :mod:`.audit` -- the "this run would not use X" refusals the declarations do not carry;
* :mod:`.render` -- the tables.

The commands are registered here, in the order ``calibprune --help`` lists them.
Importing this package imports neither torch nor transformers (``--help`` stays fast;
every command imports its job only after its options are audited).
"""

from . import analyze, calib, catalog, evaluate, prune, study, train
from .app import app as _app  # the typer app; `calibprune.cli.app` stays the module
from .app import main

_app.command()(prune.prune)
_app.command("eval")(evaluate.eval_)
_app.command()(catalog.models)
_app.command()(calib.calib)
_app.command()(catalog.corpora)
_app.command("train-reference")(train.train_reference)
_app.add_typer(analyze.analyze_app, name="analyze")
_app.command()(study.studies)
_app.command()(study.sweep)
_app.command()(study.report)

__all__ = ["main"]
