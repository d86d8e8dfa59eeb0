"""The run folder, written only by the driver, every file atomically::

    RUNDIR/study.yaml          the spec of the last sweep (study.json: its report section)
    RUNDIR/cells/<key>.json    one per cell: status ok | failed, attributes, metrics, timings
    RUNDIR/dense/<key>.json    the dense model's evaluation, once per (model, evaluation)
    RUNDIR/calib/<key>/        calibration sets (calibprune calib folders)
    RUNDIR/pools/<key>/        shared self-generated pools
    RUNDIR/analysis/<name>/    similarity / membership outputs
    RUNDIR/models/<key>/       pruned weights, only with keep_models: true
    RUNDIR/sweeps.jsonl        one line per sweep: what ran, what failed, stage executions

A killed sweep leaves at most hidden ``.*.tmp-*`` entries, never a file that looks finished.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..calibration import CalibrationSet
from ..utils.io import write_json

CELL_FORMAT = "calibprune.cell/1"


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def clean_partial(self) -> int:
        """Delete what an interrupted sweep left half-written (temporary siblings)."""
        removed = 0
        for sub in ("cells", "dense", "calib", "pools", "analysis", "models"):
            for tmp in (self.root / sub).glob(".*.tmp-*") if (self.root / sub).is_dir() else []:
                shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
                removed += 1
        return removed

    # cells and dense evaluations: one JSON each
    def cell_path(self, key: str) -> Path:
        return self.root / "cells" / f"{key}.json"

    def read_cell(self, key: str) -> dict | None:
        return _read(self.cell_path(key))

    def write_cell(self, key: str, record: dict) -> None:
        write_json(self.cell_path(key), {"format": CELL_FORMAT, "key": key, **record})

    def cells(self, keys: list[str] | None = None) -> list[dict]:
        """Every finished cell's record, or those of ``keys`` only."""
        return self._records("cells", keys)

    def _records(self, kind: str, keys: list[str] | None) -> list[dict]:
        folder = self.root / kind
        paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
        wanted = None if keys is None else set(keys)
        return [r for p in paths if (wanted is None or p.stem in wanted) and (r := _read(p))]

    def dense_path(self, key: str) -> Path:
        return self.root / "dense" / f"{key}.json"

    def read_dense(self, key: str) -> dict | None:
        return _read(self.dense_path(key))

    def denses(self, keys: list[str] | None = None) -> list[dict]:
        """Every dense evaluation's record, or those of ``keys`` only."""
        return self._records("dense", keys)

    # calibration sets and pools: calibprune calib folders
    def set_path(self, kind: str, key: str) -> Path:
        return self.root / ("pools" if kind == "pool" else "calib") / key

    def has_set(self, kind: str, key: str) -> bool:
        return (self.set_path(kind, key) / "manifest.json").exists()

    def load_set(self, kind: str, key: str) -> CalibrationSet:
        return CalibrationSet.load(self.set_path(kind, key))

    def save_set(self, kind: str, key: str, calib: CalibrationSet) -> None:
        calib.save(self.set_path(kind, key), overwrite=True)

    def log_sweep(self, record: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "sweeps.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def sweeps(self) -> list[dict]:
        path = self.root / "sweeps.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
