"""Atomic outputs: a folder or file either appears complete or not at all.

Temporaries are hidden siblings named ``.<name>.tmp-<pid>-<random>``. A process killed
with -9 (or a power loss) cannot remove its own; the next writer of the same output
removes those whose ``<pid>`` no longer runs, so concurrent writers are never touched.
A write that fails (disk full, Ctrl-C, an exception) removes its temporary and leaves
any existing output exactly as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..options import OptionError, literal

_TEMPORARY = re.compile(r"\.tmp-(?P<pid>\d+)-[0-9a-f]{8}")  # the tail of a temporary_sibling name
Inputs = Iterable[tuple[str, "str | os.PathLike | None"]]


def refuse_overlap(output: str | os.PathLike, inputs: Inputs, field: str = "output") -> None:
    """Refuse an output that is, lies inside or contains one of ``inputs``, with or without
    ``overwrite``: replacing it would delete what the command reads, writing into it
    would mix the result with its input. Call before any expensive work.

    ``inputs``: (what, path) pairs, ``what`` a template naming the input's field, e.g.
    ``("the {model} folder", "out/x")``; a None path, or one that is not on disk (a preset,
    corpus or hub name), is no folder and is skipped. ``field``: the output's field.
    """
    target = Path(output).expanduser().resolve()
    for what, given in inputs:
        if given is None or not Path(given).expanduser().exists():
            continue
        source = Path(given).expanduser().resolve()
        if target == source:
            relation = "is"
        elif source in target.parents:
            relation = "lies inside"
        elif target in source.parents:
            relation = "contains"
        else:
            continue
        raise OptionError(
            field,
            f"{{{field}}} {literal(repr(str(output)))} {relation} {what} {literal(repr(str(given)))}, which this "
            f"command reads: choose a {{{field}}} outside every input (writing there would replace or mix with it)",
        )


def check_output_dir(path: str | os.PathLike, overwrite: bool, inputs: Inputs = (), field: str = "output") -> Path:
    """Refuse an output folder that overlaps ``inputs`` (:func:`refuse_overlap`), or that
    exists unless ``overwrite``; call before any expensive work."""
    path = Path(path)
    refuse_overlap(path, inputs, field)
    shown = literal(repr(str(path)))
    if path.exists() and not overwrite:
        raise OptionError(
            field, f"output folder {shown} already exists: choose another {{{field}}} or pass {{overwrite=true}}"
        )
    if path.exists() and not path.is_dir():
        raise OptionError(field, f"output {shown} exists and is not a folder: choose another {{{field}}}")
    return path


def check_output_file(path: str | os.PathLike, overwrite: bool, inputs: Inputs = (), field: str = "output") -> Path:
    """:func:`check_output_dir` for an output that is one file."""
    path = Path(path)
    refuse_overlap(path, inputs, field)
    shown = literal(repr(str(path)))
    if path.is_dir():
        raise OptionError(
            field, f"{{{field}}} {shown} is a folder: pass a file name (e.g. {literal(path / 'results.json')})"
        )
    if path.exists() and not overwrite:
        raise OptionError(
            field, f"output file {shown} already exists: choose another {{{field}}} or pass {{overwrite=true}}"
        )
    return path


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success rename it to ``path``.

    An interrupted run leaves only ``.<name>.tmp-*`` behind, never a folder that looks
    finished. With ``overwrite`` an existing folder is replaced only once the new one
    is complete (rename old away, rename new in, delete old).
    """
    final = Path(path)
    check_output_dir(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_dead_temporaries(final)
    tmp = temporary_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_directory(tmp, final, overwrite=overwrite)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normalize_modes(folder: Path) -> None:
    """Give every file under ``folder`` the mode ``open()`` gives (0o666 & ~umask: 0644 under the
    usual 022) and every folder 0o777 & ~umask: safetensors writes its files 0600, which would
    leave a model or set that nobody else can read beside files everyone can."""
    mask = current_umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


def publish_directory(tmp: Path, final: Path, overwrite: bool) -> bool:
    """Rename a finished ``tmp`` folder to ``final`` (modes normalized first, see
    :func:`normalize_modes`). Returns False if another writer won.

    Without ``overwrite`` an existing ``final`` is kept and ``tmp`` deleted: two concurrent
    writers of the same content (e.g. two runs converting one preset) both succeed.
    """
    normalize_modes(tmp)
    if final.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        return True
    try:
        os.rename(tmp, final)
    except OSError:  # lost a race with a concurrent writer that renamed first
        if final.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        raise
    return True


def write_json(path: str | os.PathLike, data, indent: int = 2) -> Path:
    """Write JSON through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:  # disk full, a value that does not serialise, Ctrl-C: the old file stays
        tmp.unlink(missing_ok=True)
        raise
    return path


def temporary_sibling(final: Path) -> Path:
    """``.<name>.tmp-<pid>-<random>`` beside ``final``: hidden, and traceable to its writer."""
    return final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (someone else's live process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_dead_temporaries(final: Path) -> list[Path]:
    """Remove the temporaries of ``final`` whose writing process is gone (kill -9 debris).

    Temporaries without a pid (written before pids were recorded) are left alone: their
    writer cannot be told dead from alive."""
    removed = []
    for tmp in final.parent.glob(f".{final.name}.tmp-*"):
        match = _TEMPORARY.fullmatch(tmp.name[len(final.name) + 1 :])
        if match and not pid_alive(int(match["pid"])):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _json_default(obj):
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
