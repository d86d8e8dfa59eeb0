"""A run folder's spec, and its one writer at a time.

**The folder remembers its spec** (``RUN/study.yaml``; ``study.json`` lists every stage key
that spec planned). A sweep of SPEC into RUN is

* accepted when RUN has no spec yet, or SPEC's text is the folder's (the same spec again);
* accepted when SPEC's grid only grows: every stage key of the folder's spec is in SPEC's
  plan (new axis values, a renamed setting). SPEC becomes the folder's spec;
* otherwise refused, before any work (``--dry-run`` too), unless ``--overwrite``: then SPEC
  becomes the folder's spec all the same.

When SPEC replaces the folder's spec, the old one is kept as ``study.<UTC time>.yaml`` and
named in ``sweeps.jsonl``. Nothing is deleted, with or without ``--overwrite``: results
are keyed by content, so the old spec's cells stay and are reused if it is swept again.
(A bumped algorithm revision or changed source content changes the keys, so an edited
spec is then refused as different; the unedited spec is still accepted.)

**One writer**: a sweep holds an advisory lock (``fcntl.flock`` on ``RUN/.lock``, which
records its pid) from before it reads the folder's spec until it ends. Without it a second
sweep would delete the first one's half-written results as leftovers of a killed sweep
(every result goes through a temporary sibling that the start of a sweep sweeps away),
and replace its ``study.yaml``. The kernel drops the lock when the process ends, however
it ends, so a killed sweep never leaves the folder locked. ``--dry-run`` only reads and
takes no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from ..options import OptionError, literal

LOCK = ".lock"


@contextlib.contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / LOCK, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "unknown"
        handle.close()
        raise OptionError(
            "output",
            f"another sweep (pid {literal(pid)}) is writing into {literal(root)}: wait for it or use another "
            "{output}",
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def stored_keys(root: Path) -> set[str] | None:
    """Every stage key the folder's spec planned (None: no study.json)."""
    try:
        meta = json.loads((root / "study.json").read_text())
    except (OSError, ValueError):
        return None
    if "stages" in meta:
        return set(meta["stages"])
    return set(meta.get("cells") or {}) | set(meta.get("denses") or [])  # written before "stages" existed


def check_spec(root: Path, spec: Path, plan_keys: set[str], overwrite: bool) -> str:
    """How SPEC relates to the folder's spec: ``new``, ``same``, ``grown`` or ``overwrite``;
    raises when it is another spec and not ``overwrite`` (rule: module docstring)."""
    current = root / "study.yaml"
    if not current.is_file():
        return "new"
    if spec.resolve() == current.resolve() or spec.read_bytes() == current.read_bytes():
        return "same"
    old = stored_keys(root)
    if old and old <= plan_keys:
        return "grown"
    if overwrite:
        return "overwrite"
    missing = len(old - plan_keys) if old else None
    what = f"{missing} of its {len(old)} stages are not in {spec}'s grid" if missing else "it is another spec"
    raise OptionError(
        "output",
        f"{literal(root)} holds the results of another study spec ({literal(current)}: {literal(what)}): sweep into "
        f"another {{output}}, or pass {{overwrite=true}} to make {literal(spec)} this folder's spec (the old one is "
        "kept as study.<time>.yaml, and no result is deleted)",
    )


def adopt_spec(root: Path, spec: Path, relation: str) -> str | None:
    """Make SPEC the folder's study.yaml; returns the name the replaced spec is kept under."""
    current = root / "study.yaml"
    kept = None
    if relation in ("grown", "overwrite"):
        stamp, n = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), 0
        kept = f"study.{stamp}.yaml"
        while (root / kept).exists():  # two replacements within a second
            n += 1
            kept = f"study.{stamp}-{n}.yaml"
        shutil.copyfile(current, root / kept)
    if relation != "same":
        tmp = root / f".study.yaml.tmp-{os.getpid()}"
        shutil.copyfile(spec, tmp)
        os.replace(tmp, current)
    return kept
