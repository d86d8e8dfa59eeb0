"""Who may import whom, read from the source (every import statement, those inside functions too).

From the bottom up: the library (pruning, models, calibration, corpora, evaluation,
scoring, analysis, utils and the top-level modules such as config.py) -> the jobs
(``calibprune.jobs``) -> the Python API (``calibprune.api``) and the studies
(``calibprune.experiments``) -> the CLI (``calibprune.cli`` and its option layer
``calibprune.cli_options``). No module imports one above it. ``calibprune.pipeline``
only re-exports names for code written against it: nothing in the package imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "calibprune"

CLI = ("calibprune.cli", "calibprune.cli_options")
EXPERIMENTS = ("calibprune.experiments",)
API = ("calibprune.api",)
JOBS = ("calibprune.jobs",)
COMPAT = ("calibprune.pipeline",)
LIBRARY = tuple(
    f"calibprune.{name}"
    for name in ("pruning", "models", "calibration", "corpora", "evaluation", "scoring", "analysis", "utils")
) + (
    "calibprune.config",
    "calibprune.options",
    "calibprune.errors",
    "calibprune.estimate",
    "calibprune.paths",
    "calibprune.results",
)

# what each layer must not import (everything above it)
FORBIDDEN = {
    LIBRARY: JOBS + API + EXPERIMENTS + CLI + COMPAT,
    JOBS: API + EXPERIMENTS + CLI + COMPAT,
    API: EXPERIMENTS + CLI + COMPAT,
    EXPERIMENTS: API + CLI + COMPAT,
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(path: Path) -> str:
    module = _module(path)
    return module if path.name == "__init__.py" else module.rsplit(".", 1)[0]


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported from, names imported, line) for every import in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(path).split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            out.append((target, names, node.lineno))
            if (SRC / target.replace(".", "/")).is_dir():  # `from . import prune` names a module too
                out += [(f"{target}.{name}", [], node.lineno) for name in names]
    return out


def sources() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_no_layer_imports_one_above_it():
    wrong = []
    for path in sources():
        module = _module(path)
        for layer, above in FORBIDDEN.items():
            if not _within(module, layer):
                continue
            for target, _, line in imports(path):
                if _within(target, above):
                    wrong.append(f"{path.relative_to(SRC)}:{line} imports {target}")
    assert wrong == []


def test_only_the_cli_imports_the_cli_and_nothing_imports_the_compatibility_module():
    wrong = []
    for path in sources():
        module = _module(path)
        for target, _, line in imports(path):
            if _within(target, CLI) and not _within(module, CLI):
                wrong.append(f"{path.relative_to(SRC)}:{line} imports {target}")
            if _within(target, COMPAT) and not _within(module, COMPAT):
                wrong.append(f"{path.relative_to(SRC)}:{line} imports {target}")
            if _within(target, EXPERIMENTS) and not _within(module, EXPERIMENTS + CLI):
                wrong.append(f"{path.relative_to(SRC)}:{line} imports {target}")
    assert wrong == []


def test_no_private_name_is_imported_from_another_package():
    """``from ..scoring.tokens import _reduce`` in evaluation/ would tie two packages to a
    helper that neither declares as an interface: make it public or move it."""
    wrong = []
    for path in sources():
        package = _package(path)
        for target, names, line in imports(path):
            if not target.startswith("calibprune"):
                continue
            folder = SRC / target.replace(".", "/")
            source_package = target if folder.is_dir() else target.rsplit(".", 1)[0]
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and source_package != package:
                wrong.append(f"{path.relative_to(SRC)}:{line} imports {', '.join(private)} from {target}")
    assert wrong == []


def test_the_checks_read_real_imports():
    """The walker sees relative, absolute and function-level imports (a guard against a vacuous pass)."""
    seen = {target for target, _, _ in imports(ROOT / "cli" / "prune.py")}
    assert {"calibprune.cli_options", "calibprune.cli.app", "calibprune.jobs.prune"} <= seen
    assert "calibprune.jobs.requests" in {target for target, _, _ in imports(ROOT / "experiments" / "spec.py")}
    names = {n for _, ns, _ in imports(ROOT / "evaluation" / "prefix.py") for n in ns}
    assert "reduce_logits" in names  # public since evaluation/ uses it
