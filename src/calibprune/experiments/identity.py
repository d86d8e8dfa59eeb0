"""What a stage key holds of the things a stage reads, beyond their names.

A name is enough only where the name fixes the content:

* a **local file or folder** (a calibration source, a perplexity corpus, an analysis set
  or reference): the sha256 of the files it reads, in sorted relative-path order, with
  their relative paths (:func:`calibprune.utils.content.files_digest`). Editing one
  file, even to the same size and with its mtime put back, changes every key that read
  it and no other;
* a **calibration-set folder** (``manifest.json``): its window fingerprint (the
  manifest's ``fingerprint``) and the sha256 of its files;
* a **local model folder**: the sha256 of its files;
* a **registered corpus** (offline: ``wiki-en``, ``kjv``, ... ; hub: ``c4``, ...), a model
  **preset** or a **hub id**: nothing beyond the name, as before. What these names resolve
  to is fixed by calibprune's own code (which no algorithm revision covers, see
  :mod:`.revisions`: a change to how a corpus is converted or split needs a new name):
  the Wikipedia corpora come from a pinned pip package, the other offline corpora are
  converted by this code from named Debian packages, the presets are pinned GGUF files.
  Their version strings (``path:size:mtime`` of the installed file) are *not* in the key:
  they differ between machines holding the same text and would invalidate every committed
  cell (``docs/replication/runs``). Not covered: a Debian archive that ships a new version
  of a package between two installs, a hub dataset or model changed upstream, and an
  installed corpus file edited by hand.

Only a source with content adds a ``content`` entry to a key, so every key without a local
input is the same digest as before this rule existed.
"""

from __future__ import annotations

import json
from pathlib import Path


def source_identity(source) -> dict | None:
    """The content entry of a source as stages resolve it (``get_corpus``: a registered
    name first, else a local path); None for a registered or hub corpus."""
    from ..corpora import CORPORA

    if not isinstance(source, str) or source in CORPORA or source.startswith("corpus:"):
        return None
    path = Path(source).expanduser()
    if not path.exists():
        return None  # resolved (and refused) by the stage itself
    from ..calibration.calibset import MANIFEST
    from ..utils.content import tree_digest

    if path.is_dir() and (path / MANIFEST).is_file():
        manifest = json.loads((path / MANIFEST).read_text())
        return {"set": manifest.get("fingerprint"), "sha256": tree_digest(path)}
    from ..corpora.local import LocalCorpus

    return {"sha256": LocalCorpus(path).version()}


def model_identity(model: str) -> dict | None:
    """The content entry of a local model folder; None for a preset or a hub id."""
    from ..models.presets import PRESETS

    if model in PRESETS or not Path(model).expanduser().is_dir():
        return None
    from ..utils.content import tree_digest

    return {"sha256": tree_digest(Path(model).expanduser())}


def with_content(inputs: dict, **parts) -> dict:
    """``inputs`` plus ``content``: the parts that have content (nothing added if none)."""
    content = {k: v for k, v in parts.items() if v}
    return {**inputs, "content": content} if content else inputs


def sources_identity(names) -> dict:
    """Name -> content entry, for the names that have content."""
    return {name: ident for name in names or [] if (ident := source_identity(name))}
