"""The paper's per-epoch figures from `repsearch run` directories: Figure 5 (cosine distance to the
searched targets) and Figures 6-7 (within/between-class collision entropy), search-based learning
against SGD at the depth the baseline selected, mean and a band of one std over seeds.

The numbers come from the runs' metrics.jsonl (logged per epoch from epoch 0 by
`learn.diagnostics`), read through `store.records`; nothing is recomputed here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from repsearch.store import records

from .plots import plt

METHOD_COLORS = {"SGD": "tab:blue", "Search-based": "tab:red"}


def seed_dirs(run_dir: Path) -> list[Path]:
    return sorted(p for p in Path(run_dir).glob("seed*") if p.is_dir())


def method_records(run_dir: Path, aug: str = "noaug", variant: str = "all") -> dict[str, list[list[dict]]]:
    """{"SGD": [records per seed], "Search-based": [...]}; SGD at the depth its validation chose."""
    out = {"SGD": [], "Search-based": []}
    for seed in seed_dirs(run_dir):
        sgd = seed / f"sgd-{aug}"
        done = records.summary(sgd)
        if done:
            out["SGD"].append(records.epoch_records(sgd, f"sgd-depth{done['best_depth']}"))
        learn = seed / f"learn-{variant}-{aug}"
        if (learn / "metrics.jsonl").exists():
            out["Search-based"].append(records.epoch_records(learn))
    return {k: [r for r in v if r] for k, v in out.items() if any(v)}


def band(per_seed: list[list[dict]], key: str, transform=lambda v: v):
    """(epochs, mean, std) over seeds at the epochs every seed logged `key` at."""
    series = [{r["epoch"]: transform(r[key]) for r in recs if key in r} for recs in per_seed]
    series = [s for s in series if s]
    if not series:
        return None
    epochs = sorted(set.intersection(*(set(s) for s in series)))
    values = np.array([[s[e] for e in epochs] for s in series], dtype=float)
    return np.array(epochs), values.mean(0), values.std(0)


def num_blocks(methods: dict) -> int:
    keys = {k for runs in methods.values() for recs in runs for r in recs for k in r}
    return sum(1 for b in range(64) if f"cos_block{b}" in keys)


def _draw(ax, methods: dict, key: str, transform=lambda v: v, style: str = "-", suffix: str = "") -> None:
    for name, per_seed in methods.items():
        b = band(per_seed, key, transform)
        if b is None:
            continue
        epochs, mean, std = b
        color = METHOD_COLORS.get(name)
        ax.plot(epochs, mean, style, color=color, label=f"{name}{suffix}")
        if len(per_seed) > 1:
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)


def plot_cosine_distance(methods: dict, path: Path, title: str = "") -> bool:
    """Figure 5: 1 - cosine to the held-out searched targets vs epoch, one panel per block."""
    n = num_blocks(methods)
    if not n:
        return False
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.2), squeeze=False)
    for b, ax in enumerate(axes[0]):
        _draw(ax, methods, f"cos_block{b}", lambda v: 1.0 - v)
        ax.set_title(f"point {b} (stage {b})")
        ax.set_xlabel("epoch")
        ax.set_ylim(bottom=0)
    axes[0][0].set_ylabel("cosine distance to searched targets")
    return _save(fig, path, title)


def plot_collision_entropy(methods: dict, path: Path, title: str = "") -> bool:
    """Figures 6-7: within-class (solid) and between-class (dashed) collision entropy vs epoch."""
    n = num_blocks(methods)
    if not n or band(next(iter(methods.values())), "hcoll_within_block0") is None:
        return False
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.2), squeeze=False)
    for b, ax in enumerate(axes[0]):
        _draw(ax, methods, f"hcoll_within_block{b}", suffix=", within class")
        _draw(ax, methods, f"hcoll_between_block{b}", style="--", suffix=", between classes")
        ax.set_title(f"point {b} (stage {b})")
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("collision entropy (nats)")
    return _save(fig, path, title)


def _save(fig, path: Path, title: str) -> bool:
    """One legend for all panels, right of them, so that it never hides a curve."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def write_run_figures(run_dir: Path) -> dict[str, Path]:
    """Figures 5 and 6-7 of one `repsearch run` directory, written into it; {name: path} of those
    its data allow (none for a run without both metrics)."""
    run_dir = Path(run_dir)
    methods = method_records(run_dir)
    dataset = records.dataset(run_dir)
    written = {}
    for name, fn, label in (("figure5_cosine_distance.png", plot_cosine_distance, "Cosine distance"),
                            ("figure6_7_collision_entropy.png", plot_collision_entropy, "Collision entropy")):
        if methods and fn(methods, run_dir / name, f"{label} on {dataset} (validation, no augmentation)"):
            written[name] = run_dir / name
    return written
