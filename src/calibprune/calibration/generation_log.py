"""Where a resumable self-generation keeps its finished batches, and how far it got.

The log itself is written by :class:`~calibprune.calibration.synthetic.GenerationLog`
(``generations.jsonl``, one generated text a line, in its work folder); this module
only names the folder and reads the log, without torch, so that a front end can say
where a rerun resumes before any model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

LOG_FILE = "generations.jsonl"  # GenerationLog's file in the work folder


def generation_work_dir(output: str | Path) -> Path:
    """Where a resumable generation for ``output`` keeps its finished batches."""
    output = Path(output)
    return output.parent / f".{output.name}.generation"


def finished_batches(work_dir: Path) -> tuple[int, int]:
    """(batches, texts) an interrupted generation left in ``work_dir`` (a torn last line
    does not count; :class:`~calibprune.calibration.synthetic.GenerationLog` drops it)."""
    batches: set[int] = set()
    texts = 0
    log = Path(work_dir) / LOG_FILE
    if log.exists():
        with open(log, encoding="utf-8") as f:
            for line in f:
                try:
                    batches.add(json.loads(line)["batch"])
                except (json.JSONDecodeError, KeyError):
                    break
                texts += 1
    return len(batches), texts
