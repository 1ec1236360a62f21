"""Accuracy vs number of candidates K for V-F and F-V (the papers' Fig. 5), as a PNG.

matplotlib's Agg backend is selected before pyplot is imported, so plotting works on machines
without a display (CI, GPU servers).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from launch.eval.tables import DIRS, curve  # noqa: E402


def plot_accuracy_vs_k(rows: list[tuple[str, dict]], path: str | os.PathLike, title: str = "") -> Path:
    """One panel per direction, one line (with its 95 % CI band) per checkpoint, chance = 1/K."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, (d, label) in zip(axes, DIRS):
        all_ks: set[int] = set()
        for name, res in rows:
            c = curve(res, d)
            if not c:
                continue
            ks = sorted(c)
            all_ks.update(ks)
            acc = [100 * c[k]["acc"] for k in ks]
            lo = [100 * c[k]["ci"][0] for k in ks]
            hi = [100 * c[k]["ci"][1] for k in ks]
            ax.plot(ks, acc, marker="o", label=name)
            ax.fill_between(ks, lo, hi, alpha=0.2)
        if all_ks:
            ks = sorted(all_ks)
            ax.plot(ks, [100.0 / k for k in ks], "k--", linewidth=1, label="chance (1/K)")
            ax.set_xticks(ks)
        ax.set_title(f"{label} matching")
        ax.set_xlabel("number of candidates K")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[1].legend(loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
