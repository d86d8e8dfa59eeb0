"""Studies: the paper's experiments as resumable, cached sweeps (spec -> plan -> executors
-> run folder -> aggregation, plots and verdicts). Built on :mod:`calibprune.jobs`;
nothing below this package knows about sweeps."""
