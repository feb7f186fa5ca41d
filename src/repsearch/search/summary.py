"""A complete target cache's headline figures, and the cost of scoring a candidate."""
from __future__ import annotations

import json

import numpy as np
import torch

from .problem import StagedProblem


def summarize_cache(cache, problem: StagedProblem) -> dict:
    """Headline figures of a complete cache: CE per point (start -> end), evaluations, FLOPs, speed."""
    recs = [json.loads(p.read_text()) for p in sorted((cache.path / "chunks").glob("*.json"))]
    arr, curves, n = cache.arrays(), cache.curves(), problem.num_points
    point_evals = [sum(_per_point(r, "evaluations")[p] for r in recs) for p in range(n)]
    point_secs = [sum(_per_point(r, "seconds")[p] for r in recs) for p in range(n)]
    flops = [flops_from(problem, p) for p in range(n)]
    ce, evals, labels = arr["ce"], arr["evals"], arr["labels"]
    return {
        "dataset": cache.manifest["dataset"], "images": int(len(labels)), "model": cache.manifest["config"]["model"]["name"],
        "searched_ce_mean": float(np.mean(ce)), "searched_ce_max": float(np.max(ce)),
        **{f"searched_ce_p{q}": float(np.quantile(ce, q / 100)) for q in (50, 90, 99)},
        "searched_accuracy": float(np.mean(np.argmax(arr["logits"], 1) == labels)),
        "searched_ce_fraction_at_most_0.01": float(np.mean(ce <= 0.01)),
        "evaluations_per_image_mean": float(np.mean(evals)),
        "evaluations_per_image_p10_p50_p90": [float(q) for q in np.quantile(evals, [0.1, 0.5, 0.9])],
        "evaluations_total": int(sum(point_evals)),
        "points": [{"point": p, "name": cache.names[p], "ce_start": curves[p]["best"][0], "ce_end": curves[p]["best"][-1],
                    "evaluations": point_evals[p], "seconds": point_secs[p],
                    "evaluations_per_s": point_evals[p] / max(1e-9, point_secs[p]),
                    "flops_per_evaluation": flops[p]} for p in range(n)],
        "flops_total": int(sum(e * f for e, f in zip(point_evals, flops))),
    }


def flops_from(problem: StagedProblem, point: int) -> int:
    """FLOPs of scoring one candidate at `point` (the rest of the model; counted on two, halved:
    BatchNorm on batch statistics needs more than one value per channel)."""
    from torch.utils.flop_counter import FlopCounterMode
    dev = next(problem.model.parameters()).device
    h = torch.zeros(2, *problem.shapes[point], device=dev)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        problem.logits_from(point, h)
    return int(counter.get_total_flops()) // 2


def _per_point(record: dict, what: str) -> list:
    """A chunk record's per-point list (caches written before the word "point" say "layer")."""
    return record[f"point_{what}"] if f"point_{what}" in record else record[f"layer_{what}"]
