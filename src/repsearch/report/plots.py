"""Figures written into run directories (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


class PlainLogFormatter(matplotlib.ticker.LogFormatter):
    """Log-axis labels written plainly (0.6, 2) where matplotlib writes 6e-01; it still decides
    which minor ticks get one."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:g}"


def save(fig, path: Path, dpi: int = 120, integer_x=(), legends=()) -> None:
    """Finish a figure: integer ticks on the x axes of `integer_x`, a small legend on `legends`,
    tight layout, write, close (so long runs do not accumulate open figures)."""
    from matplotlib.ticker import MaxNLocator
    for ax in integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in legends:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)

def point_title(point: int, n_points: int) -> str:
    """A search point's name in figures: "point 0 (stage 0)" ... "point N (logits)"."""
    return f"point {point} ({'logits' if point == n_points - 1 else f'stage {point}'})"


def plot_search_curves(curves: dict, path: Path) -> None:
    """Mean best and mean population cross-entropy per generation, one panel per search point."""
    n = len(curves)
    fig, axes = plt.subplots(1, n, figsize=(3.5 * n, 3.2), sharey=False, squeeze=False)
    for point, ax in enumerate(axes[0]):
        c = curves.get(point) or curves.get(str(point))
        if c:
            ax.plot(c["best"], label="best")
            ax.plot(c["mean"], label="population mean", alpha=0.6)
        ax.set_title(point_title(point, n))
        ax.set_xlabel("generation")
        ax.set_yscale("log")
    axes[0][0].set_ylabel("cross-entropy")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_xy(series: dict, xlabel: str, ylabel: str, path: Path, logx: bool = False, logy: bool = False,
            title: str = "") -> None:
    """One line per name: series = {name: (xs, ys)}."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:  # ticks at the measured values, written plainly (12, 24, 60 rather than 2x10^1)
        from matplotlib.ticker import NullLocator
        ax.set_xscale("log")
        xs_all = sorted({x for xs, _ in series.values() for x in xs})
        ax.set_xticks(xs_all, [f"{x:g}" for x in xs_all])
        ax.xaxis.set_minor_locator(NullLocator())
    if logy:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
