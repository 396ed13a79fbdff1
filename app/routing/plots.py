"""PNG reports for `llmgw router eval --report` and `llmgw cache eval --report` (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    curves: dict[str, tuple[Sequence[float], Sequence[float]]]  # label -> (x, y)
    points: dict[str, tuple[float, float]] = field(default_factory=dict)  # label -> (x, y) operating points
    diagonal: bool = False  # draw y = x (random routing)
    xlim: tuple[float, float] = (0.0, 1.0)
    ylim: tuple[float, float] = (0.0, 1.05)


def write_report(path: str | Path, title: str, panels: list[Panel]) -> Path:
    """One figure with a panel per entry, saved as PNG (100 dpi, ~1000 px wide)."""
    try:
        import matplotlib
    except ImportError as exc:  # dev extra
        raise RuntimeError("the --report plots need matplotlib: pip install -e '.[dev]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.6), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for label, (x, y) in panel.curves.items():
            ax.plot(np.asarray(x), np.asarray(y), label=label, linewidth=1.8)
        if panel.diagonal:
            ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="random")
        for label, (x, y) in panel.points.items():
            ax.scatter([x], [y], zorder=5, s=40)
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, -12), fontsize=8)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.set_xlim(*panel.xlim)
        ax.set_ylim(*panel.ylim)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png", dpi=100)
    plt.close(fig)
    return target
