"""The jobs behind the CLI and the study stages, one module each.

* :mod:`.requests` -- what a job is asked for (calibration, perplexity, tasks) and the
  checks that need only the arguments;
* :mod:`.prune` -- ``calibprune prune``: :func:`~.prune.run_prune`, the report, :func:`~.prune.save_pruned`;
* :mod:`.evaluate` -- ``calibprune eval``: :func:`~.evaluate.run_eval`;
* :mod:`.calibrate` -- ``calibprune calib``: :class:`~.calibrate.CalibJob`, :func:`~.calibrate.run_calib`;
* :mod:`.estimates` -- what each job will compute, said before it starts.

Nothing is imported here: ``import calibprune.jobs.requests`` loads only what it needs.
"""
