"""Fetch Debian packages and unpack them into a folder, without root and without dpkg.

``apt-get download`` fetches a ``.deb`` into the current folder as any user. If the
machine's package lists do not know a package (a fresh container), the lists are
refreshed into a private folder (``-o Dir::State::Lists=...``), which also needs no
root. A ``.deb`` is an ``ar`` archive whose ``data.tar.*`` member holds the files;
both formats are read with the standard library.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from ..errors import MissingAssetError


def _apt(args: list[str], cwd: Path, lists: Path | None) -> subprocess.CompletedProcess:
    options = []
    if lists is not None:
        (lists / "partial").mkdir(parents=True, exist_ok=True)
        options = [
            "-o",
            f"Dir::State::Lists={lists}",
            "-o",
            f"Dir::Cache::Archives={lists.parent / 'archives'}",
            "-o",
            "Debug::NoLocking=1",
        ]
    return subprocess.run(["apt-get", *options, *args], cwd=cwd, capture_output=True, text=True)


def download(packages: list[str], dest: Path, private_lists: Path) -> list[Path]:
    """``.deb`` files of ``packages`` in ``dest`` (fetched with apt-get)."""
    if shutil.which("apt-get") is None:
        raise MissingAssetError(
            f"apt-get is not available to fetch the Debian packages {', '.join(packages)}: "
            "offline corpora other than Wikipedia need a Debian-based machine (or copy their files by hand)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    done = _apt(["download", *packages], dest, None)
    if done.returncode != 0:  # lists missing or stale: refresh a private copy and retry
        (private_lists.parent / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        update = _apt(["update"], dest, private_lists)
        done = _apt(["download", *packages], dest, private_lists)
        if done.returncode != 0:
            raise MissingAssetError(
                f"could not download Debian packages {', '.join(packages)}: {done.stderr.strip()[-500:]} "
                f"(apt-get update said: {update.stderr.strip()[-300:]})"
            )
    found = []
    for package in packages:
        matches = sorted(dest.glob(f"{package}_*.deb"))
        if not matches:
            raise MissingAssetError(f"apt-get did not produce a .deb for {package} in {dest}")
        found.append(matches[-1])
    return found


def _ar_members(data: bytes) -> dict[str, bytes]:
    if data[:8] != b"!<arch>\n":
        raise ValueError("not an ar archive")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def extract(deb: Path, dest: Path) -> None:
    """Unpack the files of a ``.deb`` under ``dest`` (like ``dpkg -x``)."""
    members = _ar_members(deb.read_bytes())
    name = next((n for n in members if n.startswith("data.tar")), None)
    if name is None:
        raise ValueError(f"{deb} has no data.tar member")
    if name.endswith(".zst"):
        raise MissingAssetError(f"{deb} uses zstd compression, which needs `dpkg -x`; unpack it by hand into {dest}")
    with tarfile.open(fileobj=io.BytesIO(members[name]), mode="r:*") as tar:
        tar.extractall(dest, filter="data")


def fetch_and_extract(packages: list[str], dest: Path, cache: Path) -> Path:
    """Download ``packages`` and unpack all of them into ``dest``; returns ``dest``."""
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        for deb in download(packages, Path(tmp), cache / "apt-lists"):
            extract(deb, dest)
    return dest
