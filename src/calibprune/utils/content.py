"""Content hashes of local files, cached so an unchanged file is not read twice.

:func:`files_digest` is what a cache key holds of a local file or folder: the sha256 of
each file's bytes, in sorted relative-path order, together with the relative paths (so a
renamed or moved file changes it, and a copy elsewhere keeps it).

The fast path: each file's sha256 is remembered in ``$CALIBPRUNE_CACHE/hashes.json``
under its absolute path, with the file's (size, mtime_ns, ctime_ns, inode). A file whose
five values all match is not read again. Size and mtime alone are not enough: a rewrite
of the same length followed by ``touch -d`` / ``os.utime`` restores both. The ctime
(inode change time) cannot be set by a user: the kernel sets it to *now* on every write
and on every ``utime`` call, so such an edit still changes it and the file is rehashed.
The inode catches a file replaced by another (``mv new old``). Anything unusual (the
cache unreadable, a concurrent writer) only costs a rehash: the cache is written through
a temporary file and a rename, and a lost update is recomputed next time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

CACHE_NAME = "hashes.json"
_CHUNK = 1 << 20

_memo: dict[str, dict] = {}  # this process's view of the cache file, loaded once


def _cache_path() -> Path:
    from ..paths import cache_dir

    return cache_dir() / CACHE_NAME


def _load() -> dict[str, dict]:
    if not _memo:
        try:
            _memo.update(json.loads(_cache_path().read_text()))
        except (OSError, ValueError):
            pass
    return _memo


def _signature(stat: os.stat_result) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of the file's bytes (from the cache when size, mtime, ctime and inode match)."""
    hashes, changed = _hashes([Path(path)])
    if changed:
        _save()
    return hashes[0]


def _hashes(paths: list[Path]) -> tuple[list[str], bool]:
    cache = _load()
    out, changed = [], False
    for path in paths:
        where = str(path.resolve())
        signature = _signature(path.stat())
        entry = cache.get(where)
        if entry is None or entry.get("signature") != signature:
            entry = {"signature": signature, "sha256": _read_sha256(path)}
            cache[where] = entry
            changed = True
        out.append(entry["sha256"])
    return out, changed


def _read_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _save() -> None:
    from .io import write_json

    for where in [w for w in _memo if not os.path.exists(w)]:  # files gone for good: forget them
        del _memo[where]
    try:
        write_json(_cache_path(), _memo, indent=0)
    except OSError:  # a read-only cache only costs rehashing next time
        pass


def files_digest(files: Iterable[str | os.PathLike], root: str | os.PathLike) -> str:
    """sha256 over (relative path, file sha256) of ``files``, sorted by relative path.

    ``root`` is what paths are relative to: the folder, or for a single file its parent
    (so the file's name is part of the digest)."""
    root = Path(root)
    named = sorted((Path(f).relative_to(root).as_posix(), Path(f)) for f in files)
    hashes, changed = _hashes([path for _, path in named])
    if changed:
        _save()
    text = json.dumps([[rel, sha] for (rel, _), sha in zip(named, hashes, strict=True)])
    return hashlib.sha256(text.encode()).hexdigest()


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def tree_digest(path: str | os.PathLike) -> str:
    """:func:`files_digest` of a file, or of every file under a folder (hidden ones skipped:
    temporary siblings and editor droppings are not content)."""
    path = Path(path)
    if path.is_file():
        return files_digest([path], path.parent)
    files = [p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path))]
    return files_digest(files, path)
