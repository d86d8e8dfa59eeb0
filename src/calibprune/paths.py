"""Where calibprune keeps converted models and corpora: ``$CALIBPRUNE_CACHE``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$CALIBPRUNE_CACHE`` if set, else ``~/.cache/calibprune`` (created on demand)."""
    root = os.environ.get("CALIBPRUNE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "calibprune")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
