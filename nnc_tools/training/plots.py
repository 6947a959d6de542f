"""The pictures NNC shows: the learning curve (loss and validation accuracy by epoch) and the confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..fileio import atomic_output


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(history: Sequence, path: Path, title: str = "Learning curve") -> None:
    """Loss (cost, training-set and validation cross-entropy) and validation accuracy by epoch, as NNC's learning-curve
    panel shows them."""
    plot_learning_curves({"": history}, path, title)


def monitor_epochs(history: Sequence, attribute: str) -> List[int]:
    """The epochs at which a monitor ran (the training-set one runs every ``monitor_interval`` epochs and at the end)."""
    return [r.epoch for r in history if getattr(r, attribute) is not None]


def _interval(epochs: List[int]) -> str:
    if len(epochs) == 1:
        return f"at epoch {epochs[0]} only"
    steps = sorted({b - a for a, b in zip(epochs, epochs[1:])})
    return "every epoch" if steps == [1] else f"every {steps[0]} epochs" if len(steps) == 1 else f"at epochs {', '.join(map(str, epochs))}"


def _series(ax, history: Sequence, attribute: str, style: str, colour, label: str, with_interval: bool = False) -> None:
    epochs = monitor_epochs(history, attribute)
    if not epochs:
        return
    values = [getattr(r, attribute) for r in history if getattr(r, attribute) is not None]
    if with_interval:
        label = f"{label} ({_interval(epochs)})"
    ax.plot(epochs, values, style, color=colour, markersize=3, label=label)


def plot_learning_curves(runs: Dict[str, Sequence], path: Path, title: str = "Learning curves",
                         groups: Optional[Dict[str, str]] = None) -> None:
    """Several runs' curves, one row of panels per group (an arm and its seeds), so that nine runs stay readable: on the
    left the loss (solid: validation, dashed: cost, dotted with points: training set, its monitoring interval in the
    legend), on the right the validation accuracy; a group's runs share a colour, and a dotted vertical line marks
    where a phase begins. Epoch ticks are whole numbers."""
    plt = _pyplot()
    group_of = groups or {name: name for name in runs}
    order = list(dict.fromkeys(group_of[name] for name in runs)) or [""]
    fig, axes = plt.subplots(len(order), 2, figsize=(11, 3.4 * len(order)), dpi=110, squeeze=False, sharey="col")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, group in enumerate(order):
        loss, accuracy = axes[row]
        colour = colours[row % len(colours)]
        members = [name for name in runs if group_of[name] == group]
        for k, name in enumerate(members):
            history = runs[name]
            first = k == 0  # one legend entry for each of a group's series

            def label(text: str) -> str:
                return text if first else "_nolegend_"

            _series(loss, history, "cost", "--", colour, label("cost (training batches)"))
            _series(loss, history, "train_error", ":o", colour, label("training-set loss"), with_interval=first)
            _series(loss, history, "valid_error", "-", colour, label("validation loss"))
            _series(accuracy, history, "valid_accuracy", "-o", colour, label("validation accuracy"))
            if first:
                for epoch in phase_starts(history):
                    for ax in (loss, accuracy):
                        ax.axvline(epoch - 0.5, color="grey", linestyle=":", linewidth=1)
        name = f"{group} ({len(members)} run{'s' * (len(members) != 1)})" if group else ""
        _style(loss, accuracy, name)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_output(path) as temp:
        fig.savefig(temp, format="png")
    plt.close(fig)


def phase_starts(history: Sequence) -> List[int]:
    """The epochs at which a new training phase begins (``--phases``), after the first."""
    return [r.epoch for prev, r in zip(history, history[1:]) if getattr(r, "phase", None) != getattr(prev, "phase", None)]


def _style(loss, accuracy, name: str) -> None:
    from matplotlib.ticker import MaxNLocator

    loss.set_ylabel("loss (cross-entropy)")
    accuracy.set_ylabel("validation accuracy")
    accuracy.set_ylim(0, 1)
    for ax in (loss, accuracy):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if name:
            ax.set_title(name, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)


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
