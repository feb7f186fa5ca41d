"""Figures in the units a reader of the paper uses: accuracies in percent, cross-entropies in nats,
FLOPs and rates with SI prefixes, times in seconds, minutes or hours."""
from __future__ import annotations

import math

PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(value: float, unit: str) -> str:
    """1.2e12 FLOPs -> '1.20 TFLOP'."""
    for scale, prefix in PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def label(key: str) -> str:
    """'wall_time_s' -> 'wall time': the value carries its unit, so the label does not."""
    for suffix in ("_s", "_seconds"):
        if key.endswith(suffix) and not key.endswith("per_s"):
            key = key[: -len(suffix)]
    return key.replace("_", " ")


def readable(key: str, value) -> str:
    """A summary figure as text, by what its key says it measures."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    k = key.lower()
    if "accuracy" in k or "probe" in k or "fraction" in k:
        return f"{100 * value:.2f}%"
    if "flops" in k:
        return si(value, "FLOP")
    if k.endswith(("_s", "seconds")) and "per_s" not in k:
        return duration(value)
    if "images_per_s" in k:
        return f"{value:,.0f} images/s"
    if "evaluations_per_s" in k:
        return si(value, "evaluations/s")
    if "gap_points" in k:
        return f"{value:.2f} points"
    if "ce" in k.split("_") or "loss" in k or k.startswith("searched_ce"):
        return f"{value:.4g} nats"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.4g}"
