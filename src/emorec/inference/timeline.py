"""A video's timeline picture: each person's smoothed emotions over time, one panel per person,
in the class colours of the annotated images (``draw.label_color``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emorec.errors import require
from emorec.files import atomic_path
from emorec.inference.draw import label_color

MAX_PANELS = 12  # the people seen longest; a crowd would make panels too thin to read


def timeline_png(series: dict[int, tuple[np.ndarray, np.ndarray]], classes: list[str], path: str | Path,
                 title: str = "", duration_s: float | None = None) -> Path:
    """``People.series()`` -> a PNG at ``path``; the x axis spans the whole video."""
    matplotlib = require("matplotlib", "video")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tracks = sorted(series, key=lambda t: -len(series[t][0]))[:MAX_PANELS]
    tracks.sort()
    end = duration_s or max((float(series[t][0][-1]) for t in tracks if len(series[t][0])), default=1.0)
    fig, axes = plt.subplots(max(1, len(tracks)), 1, figsize=(10, 1.2 + 1.6 * max(1, len(tracks))), sharex=True,
                             squeeze=False)
    for ax, track in zip(axes[:, 0], tracks):
        times, probs = series[track]
        # a gap longer than a few frames (the person left) is drawn as a gap, not a line across it
        step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        breaks = np.flatnonzero(np.diff(times) > max(0.5, 4 * step)) + 1
        for c, name in enumerate(classes):
            colour = np.array(label_color(name)) / 255
            for j, (part_t, part_p) in enumerate(zip(np.split(times, breaks), np.split(probs[:, c], breaks))):
                ax.plot(part_t, part_p, color=colour, lw=1.6, label=None if j else name)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"#{track}", rotation=0, ha="right", va="center", fontsize=12)
        ax.grid(alpha=0.3)
        ax.set_facecolor("#f4f4f4")
    if not tracks:
        axes[0, 0].text(0.5, 0.5, "no face found", ha="center", va="center", transform=axes[0, 0].transAxes)
    axes[-1, 0].set_xlim(0, max(end, 1e-3))
    axes[-1, 0].set_xlabel("time (s)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:  # above the panels, the title above it
        fig.legend(handles, labels, loc="upper center", ncol=len(classes), frameon=False,
                   bbox_to_anchor=(0.5, 1 - 0.3 / fig.get_figheight()))
    fig.suptitle(title, y=1 - 0.06 / fig.get_figheight(), fontsize=10, va="top", x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / fig.get_figheight()))
    with atomic_path(path, "timeline") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
