"""`repsearch sweep`: paper Figure 4, validation accuracy against search compute.

As the paper (Section 4.4): one axis varies the population size with the generations held at the
config's, the other scales every point's generations with the population held at the config's.
Each point searches the config's images (`data.subset`) into its own target cache, learns from
it, and records validation (and test) accuracy with the compute it used. Points are appended to
OUT/sweep.jsonl as they finish, so a killed sweep continues at the next point (an interrupted
point resumes its search cache and its learning checkpoint).
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from repsearch.errors import UserError
from repsearch.report.plots import plt, save
from repsearch.store import records
from repsearch.store.atomic import append_line, atomic_write_json

from .scaling import scaled_population


def points(cfg, pop_sizes, generation_scales) -> list[dict]:
    """(name, axis, value, config) of every sweep point; the config's own point appears on both axes."""
    out = []
    for pop in pop_sizes:
        c = copy.deepcopy(cfg)
        c.search.pop_size = pop
        c.search.top_k, c.search.n_explore, c.search.n_refine = scaled_population(
            pop, (cfg.search.top_k, cfg.search.n_explore, cfg.search.n_refine))  # through the config's own point
        out.append({"name": f"pop-{pop}", "axis": "population", "value": pop, "cfg": c})
    for scale in generation_scales:
        c = copy.deepcopy(cfg)
        c.search.generations = [max(1, round(g * scale)) for g in cfg.search.generations]
        out.append({"name": f"gen-x{scale:g}", "axis": "generations", "value": scale, "cfg": c})
    return out


def run_point(point: dict, prep, out: Path) -> dict:
    from repsearch.learn.regression import train_from_cache
    from repsearch.search.pool import run_search
    from repsearch.store.rundir import RunDir
    cfg, d = point["cfg"], out / point["name"]
    t0 = time.time()
    cache, search = run_search(prep, cfg, d / "cache")
    learn_dir = RunDir(d / "learn", cfg.to_dict(), cfg.device)
    _, learned = train_from_cache(prep, cfg, cache, learn_dir)
    learn_dir.summary(learned)  # POINT/learn/summary.json, as every learning stage (the report's table reads it)
    return {"name": point["name"], "axis": point["axis"], "value": point["value"],
            "pop_size": cfg.search.pop_size, "generations": cfg.search.generations, "search": vars(cfg.search),
            "evaluations_per_image": search["evaluations_per_image_mean"], "searched_ce_mean": search["searched_ce_mean"],
            "val_accuracy": learned["val_accuracy"], "test_accuracy": learned["test_accuracy"],
            "seconds": time.time() - t0}


def sweep(prep, cfg, out_dir: Path, pop_sizes=(6, 12, 24), generation_scales=(0.25, 0.5, 1.0)) -> dict:
    if min(pop_sizes, default=2) < 2 or min(generation_scales, default=1) <= 0:
        raise UserError("--pop-sizes need values >= 2 and --generation-scales values > 0")
    out = Path(out_dir)
    log = out / "sweep.jsonl"
    done = {r["name"]: r for r in records.lines(log)}
    todo = [p for p in points(cfg, pop_sizes, generation_scales) if p["name"] not in done]
    for p in todo:
        twin = next((r for r in done.values() if r.get("search") == vars(p["cfg"].search)), None)
        # the config's own point is on both axes: searched and learned once
        rec = done[p["name"]] = ({**twin, "name": p["name"], "axis": p["axis"], "value": p["value"], "seconds": 0.0}
                                 if twin else run_point(p, prep, out))
        append_line(log, json.dumps(rec))
        print(json.dumps({k: rec[k] for k in ("name", "evaluations_per_image", "val_accuracy", "seconds")}), flush=True)
    measured = [done[p["name"]] for p in points(cfg, pop_sizes, generation_scales)]
    plot_sweep(measured, out / "sweep.png", prep.dataset.name, cfg.data.subset)
    result = {"dataset": prep.dataset.name, "images": cfg.data.subset, "points": measured}
    atomic_write_json(out / "sweep.json", result)
    return result


def plot_sweep(records: list[dict], path: Path, dataset: str, images: int) -> None:
    """Validation accuracy (the paper's y axis) and test accuracy vs population size (left) and vs
    generations (right), each point labeled with its evaluations per image. Test is drawn too: a
    small validation split moves in coarse steps (1/160 at 2,000 images)."""
    from matplotlib.ticker import FixedLocator, NullLocator
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, axis, xlabel in ((axes[0], "population", "population size"),
                             (axes[1], "generations", "generations (x the config's per point)")):
        pts = sorted((r["value"], r["val_accuracy"], r.get("test_accuracy"), r["evaluations_per_image"])
                     for r in records if r["axis"] == axis)
        if not pts:
            continue
        xs, val, test, evals = zip(*pts)
        ax.plot(xs, [100 * y for y in val], "o-", color="tab:red", label="validation")
        if None not in test:
            ax.plot(xs, [100 * y for y in test], "s--", color="tab:gray", label="test")
        for x, y, e in zip(xs, val, evals):
            ax.annotate(f"{e:,.0f} eval/img", (x, 100 * y), textcoords="offset points", xytext=(0, -13), ha="center",
                        fontsize=7)
        ax.set(xscale="log", xlabel=xlabel, ylabel="accuracy (%)")
        ax.margins(x=0.12, y=0.15)
        ax.xaxis.set_major_locator(FixedLocator(xs))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{x:g}" for x in xs])
    fig.suptitle(f"Accuracy vs search compute, {dataset}" + (f", {images:,} images" if images else ""), fontsize=10)
    save(fig, path, dpi=110, legends=[axes[0]])
