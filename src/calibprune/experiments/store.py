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
from ..options import OptionError, command_line, literal
from ..results import StageRecord
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
        return self._read(self.cell_path(key), "that cell")

    def write_cell(self, key: str, record: StageRecord | dict) -> None:
        record = record.to_json() if isinstance(record, StageRecord) else record
        write_json(self.cell_path(key), {"format": CELL_FORMAT, "key": key, **record})

    def cells(self, keys: list[str] | None = None) -> list[StageRecord]:
        """Every finished cell's record, or those of ``keys`` only."""
        return [StageRecord.from_json(r) for r in self._records("cells", keys)]

    def _records(self, kind: str, keys: list[str] | None) -> list[dict]:
        folder = self.root / kind
        paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
        wanted = None if keys is None else set(keys)
        what = "that cell" if kind == "cells" else "that dense evaluation"
        return [r for p in paths if (wanted is None or p.stem in wanted) and (r := self._read(p, what))]

    def dense_path(self, key: str) -> Path:
        return self.root / "dense" / f"{key}.json"

    def read_dense(self, key: str) -> dict | None:
        return self._read(self.dense_path(key), "that dense evaluation")

    def denses(self, keys: list[str] | None = None) -> list[StageRecord]:
        """Every dense evaluation's record, or those of ``keys`` only."""
        return [StageRecord.from_json(r) for r in self._records("dense", keys)]

    def read_meta(self) -> dict | None:
        """study.json (what ``report`` needs of the study), or None in a run folder without one."""
        fix = f"rerun `{self.rerun()}` to rewrite it (finished cells are kept)"
        return self._checked(self.root / "study.json", fix)

    def analyses(self, kind: str) -> list[tuple[dict, dict]]:
        """(result, {path: strategy label}) of each stored analysis of ``kind`` (similarity | membership)."""
        folder = self.root / "analysis"
        out = []
        for step in sorted(folder.glob(f"{kind}-*")) if folder.is_dir() else []:
            if step.is_dir():
                labels = step.parent / f"{step.name}.labels.json"
                fix = (
                    f"delete {literal(step)} and {literal(labels.name)}, and rerun `{self.rerun()}` to recompute "
                    "that analysis"
                )
                result = self._checked(step / f"{kind}.json", fix, ANALYSIS_KEYS[kind], must_exist=True)
                out.append((result, self._checked(labels, fix, must_exist=True)))
        return out

    def rerun(self) -> str:
        """The command that recomputes what is missing from this run folder (a
        :func:`~calibprune.options.command_line` placeholder, for a template)."""
        spec = self.root / "study.yaml"
        return command_line("sweep", str(spec) if spec.exists() else "SPEC", output=str(self.root))

    def _read(self, path: Path, what: str) -> dict | None:
        """A cell's or dense evaluation's record, None if not computed yet."""
        return self._checked(path, f"delete it and rerun `{self.rerun()}` to recompute {what}", ("status", "attrs"))

    def _checked(self, path: Path, fix: str, required: tuple[str, ...] = (), must_exist: bool = False) -> dict | None:
        """The JSON object at ``path`` (None if absent and not ``must_exist``); a damaged or
        missing one is refused, naming the file and ``fix``."""
        if not path.exists():
            if must_exist:
                raise OptionError("", f"{literal(path)} is missing: {fix}")
            return None
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
            problem = None if isinstance(value, dict) else f"holds a JSON {type(value).__name__}, not an object"
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            problem = f"is not valid JSON ({error})"
        missing = [k for k in required if k not in value] if problem is None else []
        problem = problem or (f"lacks {', '.join(map(repr, missing))}" if missing else None)
        if problem:
            raise OptionError("", f"{literal(path)} {literal(problem)}: it is damaged; {fix}")
        return value

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


ANALYSIS_KEYS = {"membership": ("scores",), "similarity": ("names", "matrix")}
