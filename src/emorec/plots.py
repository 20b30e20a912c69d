"""Figures written next to reports (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emorec.files import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(cm: np.ndarray, classes: list[str], path: Path, title: str = "Confusion matrix",
                         predicted: list[str] | None = None) -> Path:
    """Rows: true ``classes``; columns: ``predicted`` (default the same; photos add "no face")."""
    plt = _plt()
    predicted = predicted or classes
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(predicted) + 2, 1.1 * len(classes) + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(predicted)), predicted, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(predicted)):
            ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    try:
        with atomic_path(path, "figure") as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path


def training_curves_png(history: list[dict], path: Path) -> Path:
    plt = _plt()
    step = np.arange(1, len(history) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(step, [h["train_loss"] for h in history], label="train loss")
    a.plot(step, [h["val_loss"] for h in history], label="val loss")
    b.plot(step, [h["train_acc"] for h in history], label="train acc")
    b.plot(step, [h["val_acc"] for h in history], label="val acc")
    b.plot(step, [h["val_macro_f1"] for h in history], label="val macro-F1")
    from matplotlib.ticker import MaxNLocator

    stage2 = [i + 1 for i, h in enumerate(history) if h["stage"] == 2]
    for ax in (a, b):
        if stage2:
            ax.axvline(stage2[0] - 0.5, color="grey", ls="--", lw=1,
                       label=f"stage 2 from epoch {stage2[0]} (backbone unfrozen)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_xlabel("epoch (both stages)")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_path(path, "figure") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path
