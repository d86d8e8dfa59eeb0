"""What a stage key hashes of a request: its fields, less the late additions left at their default.

A field added to a request after run folders were keyed (``encoding``) is marked with
:data:`KEYED_WHEN_SET`; while it holds its default it is left out of the key, so every
existing key (and the results filed under it) stays valid, and setting it makes a new key.
"""

from __future__ import annotations

from dataclasses import asdict, fields

KEYED_WHEN_SET = {"keyed_when_set": True}


def key_fields(request) -> dict:
    """``asdict(request)`` without the :data:`KEYED_WHEN_SET` fields that hold their default."""
    out = asdict(request)
    for f in fields(request):
        if f.metadata.get("keyed_when_set") and getattr(request, f.name) == f.default:
            del out[f.name]
    return out
