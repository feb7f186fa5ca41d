"""The learnability gap against the paper's levers (issue 12): images searched, search compute,
learning epochs, learner depth and width, each varied alone around one base protocol.

    python experiments/levers.py --preset cpu-mnist --data-root data --out runs/levers-mnist \
        [--base-subset 2000] [--only base,epochs-10] [--extra "images=10000:runs/cpu-mnist"]

Each row is a full `repsearch run` (SGD baseline on the same images + search + learning) in
OUT/<row>/; rows that change only the learner reuse the base row's cache and baseline. Writes
OUT/levers.jsonl (one summary per row), OUT/levers.md (the table) and OUT/levers.png.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import rowlog

from repsearch.config import resolve
from repsearch.errors import UserError
from repsearch.studies.pipeline import run_pipeline

# The base, pinned so the table does not move when a preset changes: the search population
# (4/10/10, 60/30/30/5 generations) the CPU presets had when the table was measured, and the
# best-by-validation epoch it was measured with (before `select = "auto"`).
BASE_SETTINGS = ["search.pop_size=24", "search.top_k=4", "search.n_explore=10", "search.n_refine=10",
               "search.generations=[60,30,30,5]", "learn.select=best", "baseline.select=best"]


def rows(base_subset: int) -> list[dict]:
    """(lever, value, overrides, learn_only). Generations scale the pinned base's [60, 30, 30, 5]."""
    return [
        dict(name="base", lever="base", value=base_subset, sets=[]),
        dict(name="images-1000", lever="images searched", value=1000, sets=["data.subset=1000"]),
        dict(name="compute-x0.33", lever="search generations", value="x1/3",
             sets=["search.generations=[20,10,10,2]"]),
        dict(name="compute-x2", lever="search generations", value="x2", sets=["search.generations=[120,60,60,10]"]),
        dict(name="pop-12", lever="population shape", value="2/5/5, x2 generations",
             sets=["search.pop_size=12", "search.top_k=2", "search.n_explore=5", "search.n_refine=5",
                   "search.generations=[120,60,60,10]"]),
        dict(name="epochs-5", lever="learning epochs", value=5, sets=["learn.epochs=5"], learn_only=True),
        dict(name="epochs-40", lever="learning epochs", value=40, sets=["learn.epochs=40"], learn_only=True),
        dict(name="depth-1", lever="learner groups per block", value=1, sets=["learn.groups_per_block=1"],
             learn_only=True),
        dict(name="depth-3", lever="learner groups per block", value=3, sets=["learn.groups_per_block=3"],
             learn_only=True),
        dict(name="width-32", lever="width", value=32, sets=["model.widths=[32,32,32]"]),
        # options beyond the defaults (docs/method.md): measured on the same protocol
        dict(name="loss-class-weighted", lever="loss", value="class_weighted", sets=["learn.loss=class_weighted"],
             learn_only=True),
        dict(name="smooth-child", lever="search smoothing", value="child", sets=["search.smooth=child"]),
        dict(name="target-raw", lever="target space", value="raw", sets=["search.target_space=raw"]),
        # notes.md's reference point: 3,600 images, a shallow search (~880 evaluations/image), 40 epochs
        dict(name="reference", lever="notes.md reference", value="3600, x1/3, 40 ep",
             sets=["data.subset=3600", "search.generations=[20,10,10,2]", "learn.epochs=40"]),
    ]


def link_shared(base_dir: Path, row_dir: Path, names=("cache", "sgd-noaug")) -> None:
    """A learn-only row reuses the base row's cache and SGD baseline (same images, same search)."""
    seed = row_dir / "seed0"
    seed.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (seed / name).exists():
            os.symlink((base_dir / "seed0" / name).resolve(), seed / name)


def table(results: list[dict]) -> str:
    lines = ["| lever | value | images searched | searched CE | evals/image | SGD test | search-based test | gap (points) "
             "| probe block 2 | cosine block 0/1/2 | wall s |", "|---" * 11 + "|"]
    for r in results:
        s = r["summary"]
        cos = "/".join(f"{c:.2f}" for c in r["cosines"])
        lines.append(f"| {r['lever']} | {r['value']} | {s['train_images'] + r['val_images']:,} | {s['searched_ce_mean']:.3f} "
                     f"| {s['search_evaluations_per_image']:.0f} | {100 * s['sgd_test_accuracy']:.2f} "
                     f"| {100 * s['search_test_accuracy']:.2f} | {s['gap_points']:.2f} | {100 * s['search_probe_last_block']:.1f} "
                     f"| {cos} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"{r['lever']}\n{r['value']}" for r in results]
    gaps = [r["summary"]["gap_points"] for r in results]
    top = max(12.0, 1.2 * sorted(gaps)[-3]) if len(gaps) > 2 else max(gaps + [1.0]) * 1.2
    ax.bar(range(len(results)), [min(g, top) for g in gaps], color="tab:red")
    for i, g in enumerate(gaps):  # every gap written on its bar; bars past the axis are cut
        ax.text(i, min(g, top), f"{g:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, top * 1.08)
    ax.set_xticks(range(len(results)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("SGD - search-based test accuracy (points)")
    ax.set_title(f"Learnability gap by lever ({results[0]['summary']['dataset']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def collect(name, lever, value, run_dir: Path, seconds: float) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    seed = json.loads((run_dir / "results.json").read_text())["per_seed"][0]
    first = seed["learn"][sorted(seed["learn"])[0]]
    return {"name": name, "lever": lever, "value": value, "summary": summary, "seconds": seconds,
            "val_images": seed["sgd"][sorted(seed["sgd"])[0]]["val_images"],
            "cosines": [first[f"cos_block{b}"] for b in range(3)], "search": seed["search"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-mnist")
    p.add_argument("--data-root", default="data")
    p.add_argument("--out", required=True)
    p.add_argument("--base-subset", type=int, default=2000)
    p.add_argument("--only", default="", help="comma-separated row names (default: all)")
    p.add_argument("--extra", action="append", default=[], help="LEVER=VALUE:RUN_DIR, a finished `repsearch run` to add")
    p.add_argument("--set", action="append", default=[], dest="sets", help="override for every row")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(filter(None, a.only.split(",")))
    log = out / "levers.jsonl"
    done = rowlog.load(log)
    for row in rows(a.base_subset):
        if (only and row["name"] not in only) or row["name"] in done:
            continue
        cfg = resolve(a.preset, [f"data.subset={a.base_subset}", *BASE_SETTINGS, *a.sets, *row["sets"]],
                      **{"data.root": a.data_root})
        row_dir = out / row["name"]
        if row.get("learn_only"):
            link_shared(out / "base", row_dir)
        t0 = time.time()
        summary, _ = run_pipeline(cfg, row_dir)
        (row_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        rec = collect(row["name"], row["lever"], row["value"], row_dir, time.time() - t0)
        done[row["name"]] = rec
        rowlog.append(log, rec)
        print(json.dumps({k: rec[k] for k in ("name", "seconds")} | {"gap": rec["summary"]["gap_points"]}), flush=True)
    for extra in a.extra:
        spec, run_dir = extra.rsplit(":", 1)
        lever, value = spec.split("=", 1)
        done[f"extra-{spec}"] = collect(f"extra-{spec}", lever, value, Path(run_dir), float("nan"))
    results = rowlog.in_order(done, [r["name"] for r in rows(a.base_subset)])
    (out / "levers.md").write_text(table(results))
    plot(results, out / "levers.png")
    print(table(results))


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        sys.exit(f"levers.py: {e}")
