"""User-facing errors.

Every error raised because of bad input is a :class:`CalibpruneError`: its message
names the offending value and says how to fix it. The CLI prints these without a
traceback; anything else is a bug and keeps its traceback.
"""


class CalibpruneError(ValueError):
    """Bad input or a missing asset, explained for the person who typed it."""


class MissingAssetError(CalibpruneError):
    """An offline asset (preset model package, corpus, evaluation data) is not installed."""
