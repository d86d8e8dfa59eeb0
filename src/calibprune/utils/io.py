"""Atomic outputs: a folder or file either appears complete or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..errors import CalibpruneError


def check_output_dir(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an existing output folder unless ``overwrite``; call before any expensive work."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise CalibpruneError(
            f"output folder {str(path)!r} already exists: choose another --output or pass --overwrite"
        )
    if path.exists() and not path.is_dir():
        raise CalibpruneError(f"output {str(path)!r} exists and is not a folder: choose another --output")
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
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
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
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=indent, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)
    return path


def _json_default(obj):
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
