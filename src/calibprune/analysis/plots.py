"""Pictures of analysis results (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

from ..utils.plotting import pyplot as _pyplot


def _short(name: str) -> str:
    return name if len(name) <= 28 else "..." + name[-25:]


def heatmap(names: list[str], matrix: list[list[float]], title: str, path: Path) -> Path:
    """Off-diagonal similarities; the diagonal (always 1) is greyed out so that the colour
    scale spans the values that differ."""
    import numpy as np

    plt = _pyplot()
    values = np.array(matrix, dtype=float)
    off = values[~np.eye(len(names), dtype=bool)]
    top = float(off.max()) if off.size and off.max() > 0 else 1.0
    shown = np.ma.masked_where(np.eye(len(names), dtype=bool), values)
    size = max(4.0, 0.9 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    image = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=top)
    labels = [_short(n) for n in names]
    ax.set_xticks(range(len(names)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels)
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            light = i == j or value > 0.6 * top
            ax.text(j, i, f"{value:.4f}", ha="center", va="center", color="black" if light else "white", fontsize=8)
    fig.colorbar(image, ax=ax, label="estimated Jaccard similarity")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# Which way "looks like training data" points on each score's axis (scoring/membership.py).
TRAINING_LIKE = {"mink++": "up", "mink": "up", "ppl": "down"}


def violins(scores: dict[str, dict[str, list[float]]], kinds: tuple[str, ...], title: str, path: Path) -> Path:
    """One panel per score, one violin per set, labelled with its number of scored texts;
    each panel's y label says which direction means "training-like"."""
    plt = _pyplot()
    names = list(scores)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.5 * len(kinds), 4.8), squeeze=False)  # one kind: still a row
    for ax, kind in zip(axes[0], kinds, strict=True):
        data = [[v for v in scores[n][kind] if v == v] for n in names]  # drop NaN
        ax.violinplot(data, showmedians=True)
        labels = [f"{_short(n)}\n(n={len(d)})" for n, d in zip(names, data, strict=True)]
        ax.set_xticks(range(1, len(names) + 1), labels, rotation=30, ha="right")
        ax.set_title(kind + (" (log scale)" if kind == "ppl" else ""))
        direction = TRAINING_LIKE.get(kind)
        if direction:
            ax.set_ylabel(f"{kind}  ({'higher' if direction == 'up' else 'lower'} = more training-like)")
        if kind == "ppl":
            ax.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
