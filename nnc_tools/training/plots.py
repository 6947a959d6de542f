"""The pictures NNC shows: the learning curve (cost, training and validation error by epoch) and the confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from ..fileio import atomic_output


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(history: Sequence, path: Path, title: str = "Learning curve") -> None:
    """Cost, training error and validation error by epoch, like NNC's learning-curve panel."""
    plot_learning_curves({"": history}, path, title)


def plot_learning_curves(runs: Dict[str, Sequence], path: Path, title: str = "Learning curves") -> None:
    """Several runs' curves in one plot (solid: validation error, dashed: cost, dotted: training error)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, history) in enumerate(runs.items()):
        colour = colours[k % len(colours)]
        epochs = [r.epoch for r in history]
        prefix = f"{name}: " if name else ""
        ax.plot(epochs, [r.cost for r in history], "--", color=colour, label=f"{prefix}cost")
        for attribute, style, label in (("train_error", ":o", "training error"), ("valid_error", "-", "validation error")):
            values = [np.nan if getattr(r, attribute) is None else getattr(r, attribute) for r in history]
            if not all(np.isnan(values)):
                mask = ~np.isnan(values)
                ax.plot(np.array(epochs)[mask], np.array(values)[mask], style, color=colour, markersize=3, label=f"{prefix}{label}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross entropy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(path) as temp:
        fig.savefig(temp, format="png")
    plt.close(fig)


def plot_confusion_matrix(matrix: np.ndarray, classes: List[str], path: Path, title: str = "Confusion matrix") -> None:
    """Rows: true class, columns: predicted class, counts in the cells."""
    plt = _pyplot()
    n = len(classes)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9), dpi=110)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticklabels(classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 20:
        top = matrix.max() if matrix.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > top / 2 else "black")
    fig.tight_layout()
    with atomic_output(path) as temp:
        fig.savefig(temp, format="png")
    plt.close(fig)
