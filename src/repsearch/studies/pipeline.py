"""`repsearch run`: SGD baseline + search + learning for each seed, and the paper's tables.

Layout of a run directory:
    RUN/seed{S}/cache/                 the target cache (reused when complete, resumed when partial)
    RUN/seed{S}/sgd-{aug}/             SGD baseline (best of baseline.depths), with cosine diagnostics
    RUN/seed{S}/learn-{variant}-{aug}/ search-based learning for each supervision variant
    RUN/results.json, RUN/results.md   Tables 1/2 style: mean +- std over seeds
Every stage that already has its summary.json is reused, so an interrupted run resumes.
"""
from __future__ import annotations

import copy
import statistics
from pathlib import Path

from repsearch.data import prepare
from repsearch.learn.baseline import run_baseline
from repsearch.learn.diagnostics import Diagnostics
from repsearch.learn.regression import train_from_cache
from repsearch.report.tables import LABELS
from repsearch.store import distributed
from repsearch.store.atomic import atomic_write_json, atomic_write_text

from .stages import search_streams, stage


def supervision(variant: str, num_stages: int) -> list[int]:
    """The stages a supervision variant regresses: "all", or "skip0" (every stage but the first)."""
    return list(range(num_stages)) if variant == "all" else list(range(1, num_stages))


def _aug_name(augment: bool) -> str:
    return "aug" if augment else "noaug"


def run_seed(cfg, root: Path) -> dict:
    prep = prepare(cfg)
    seed_dir = root / f"seed{cfg.seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    caches, searches = search_streams(prep, cfg, seed_dir)
    cache, search_summary = caches[0], searches[0]
    diagnostics = Diagnostics.for_learner(prep, cache, cfg.learn)
    out = {"search": search_summary, "sgd": {}, "learn": {}, "search_streams": searches[1:]}
    for augment in cfg.run.augment_variants:
        c = copy.deepcopy(cfg)
        c.baseline.augment = c.learn.augment = augment  # what each stage's config.json records
        out["sgd"][_aug_name(augment)] = stage(
            seed_dir / f"sgd-{_aug_name(augment)}", c.to_dict(), c.device,
            lambda run, c=c: run_baseline(prep, c, run, (diagnostics,)))
        for variant in cfg.run.supervision_variants:
            tag = f"learn-{variant}-{_aug_name(augment)}"
            out["learn"][f"{variant}-{_aug_name(augment)}"] = stage(
                seed_dir / tag, c.to_dict(), c.device,
                lambda run, v=variant, a=augment, t=tag, c=c: train_from_cache(
                    prep, c, caches, run, supervise=supervision(v, cache.num_stages), augment=a, tag=t,
                    diagnostics=diagnostics)[1])
    return out


def _mean_std(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def tabulate(cfg, seeds: list[dict], dataset: str) -> dict:
    """Tables 1 and 2: test accuracy mean +- std over seeds, per method and augmentation."""
    table = {}
    for augment in cfg.run.augment_variants:
        a = _aug_name(augment)
        table.setdefault("sgd", {})[a] = _mean_std([s["sgd"][a]["test_accuracy"] for s in seeds])
        for variant in cfg.run.supervision_variants:
            table.setdefault(variant, {})[a] = _mean_std([s["learn"][f"{variant}-{a}"]["test_accuracy"] for s in seeds])
    return {"dataset": dataset, "seeds": len(seeds), "table": table}


def markdown(results: dict, cfg) -> str:
    augs = [_aug_name(a) for a in cfg.run.augment_variants]
    head = {"noaug": "no augmentation", "aug": "with augmentation"}
    lines = [f"Test accuracy (%) on {results['dataset']}, mean ± std over {results['seeds']} seed(s).", "",
             "| method | " + " | ".join(head[a] for a in augs) + " |", "|---|" + "---|" * len(augs)]
    for method, cols in results["table"].items():
        cells = [f"{100 * cols[a]['mean']:.1f} ± {100 * cols[a]['std']:.1f}" for a in augs]
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_pipeline(cfg, root: Path) -> dict:
    seeds = []
    for s in range(cfg.run.seeds):
        c = copy.deepcopy(cfg)
        c.seed = cfg.seed + s
        seeds.append(run_seed(c, root))
    dataset = seeds[0]["search"]["dataset"]
    train_images = seeds[0]["sgd"][_aug_name(cfg.run.augment_variants[0])]["train_images"]
    results = tabulate(cfg, seeds, dataset)
    results["per_seed"] = seeds
    if distributed.is_main():
        atomic_write_json(root / "results.json", results)
        atomic_write_text(root / "results.md", markdown(results, cfg))
        from repsearch.report.figures import write_run_figures
        write_run_figures(root)  # Figures 5-7 (the variant "all", no augmentation, where it ran)
    a = _aug_name(cfg.run.augment_variants[0])
    v = cfg.run.supervision_variants[0]
    first = seeds[0]
    last = len(first["search"]["points"]) - 2  # the last stage
    sgd, learned = results["table"]["sgd"][a], results["table"][v][a]
    gaps = [100 * (x - y) for x, y in zip(sgd["values"], learned["values"])]
    summary = {
        "dataset": dataset, "seeds": len(seeds), "train_images": train_images,
        "sgd_test_accuracy": sgd["mean"], "search_test_accuracy": learned["mean"],
        "gap_points": 100 * (sgd["mean"] - learned["mean"]),
        "sgd_test_accuracy_std": sgd["std"], "search_test_accuracy_std": learned["std"],
        "gap_points_std": statistics.stdev(gaps) if len(gaps) > 1 else 0.0, "gap_points_max": max(gaps),
        "sgd_test_accuracy_per_seed": sgd["values"], "search_test_accuracy_per_seed": learned["values"],
        "sgd_depth_per_seed": [s["sgd"][a].get("best_depth") for s in seeds],  # the depth validation chose
        "tables": results["table"],  # Tables 1-2: every method and augmentation (kept in record.json)
        "search_probe_last_block": statistics.mean(s["learn"][f"{v}-{a}"][f"probe_block{last}"] for s in seeds),
        "searched_ce_mean": statistics.mean(s["search"]["searched_ce_mean"] for s in seeds),
        "search_evaluations_per_image": first["search"]["evaluations_per_image_mean"],
        "search_flops": sum(t["flops_total"] for s in seeds for t in [s["search"], *s.get("search_streams", [])]),
    }
    return summary, results
