"""The search driver: every image of the pool into a resumable target cache, chunk by chunk.

The pieces, kept apart as in evosax/EvoTorch: the model (`models`, behind the staged-model
contract), the problem (`problem.StagedProblem`: score candidates by running the rest of the
model), the strategy (`strategy`: Params, State, pure ask/tell), the engine (`engine`: chunk
loop over search points, compile, layouts) and hooks (`hooks`: progress, curves, timings).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from . import distributed
from .cache import TargetCache, search_fingerprint
from .engine import chunk_size, search_images
from .errors import UserError
from .hooks import ChunkRecorder, Progress
from .models import is_user_model, user_model_source_hash
from .problem import StagedProblem, build_search_model, configure_search_mode
from .strategy import Params


def fingerprint_for(cfg, prep, limit: int = 0, network: torch.nn.Module | None = None) -> str:
    """The cache's identity; a given search network (not built from the config) adds its weights' hash."""
    source = user_model_source_hash(cfg.model.name) if is_user_model(cfg.model.name) else ""
    fp = search_fingerprint(cfg, prep.dataset.fingerprint(), source) + (f"-limit{limit}" if limit else "")
    return fp + (f"-net{weights_hash(network)}" if network is not None else "")


def weights_hash(model: torch.nn.Module) -> str:
    """sha256 of a model's parameters and buffers (names, shapes, bytes), 12 hex digits."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


def open_search(cfg, prep, cache_path=None, network=None):
    """The search network set up for search, its problem and the strategy's Params; with
    `cache_path` of an existing cache, the network is the one stored there. `network`: a given
    staged model (e.g. a learned one) instead of the config's untrained search network."""
    train_x, _ = prep.images("train")
    model, shapes = build_search_model(cfg, prep.dataset.shape, prep.dataset.num_classes, train_x, prep.device,
                                       network=network)
    if cache_path is not None and (Path(cache_path) / "network.pt").exists():
        model.load_state_dict(torch.load(Path(cache_path) / "network.pt", weights_only=True))
    configure_search_mode(model, cfg.search, cfg.engine)
    return StagedProblem(model, shapes, precision=cfg.search.precision), check_against_model(cfg, shapes)


def check_against_model(cfg, shapes: list[tuple]) -> Params:
    """The settings whose validity depends on the model's search points; returns the strategy's Params."""
    params = Params.from_config(cfg.search, shapes)
    bad = [p for p in cfg.engine.compile if p >= len(shapes)]
    if bad:
        raise UserError(f"engine.compile lists search points 0-{len(shapes) - 1} for this model; got {bad}")
    from .learn import check_supervise
    check_supervise(cfg.learn.supervise, len(shapes) - 1)  # [] = every stage
    return params


def preflight(cfg, prep) -> None:
    """Build the search network and the learner and check the config against them, so that a bad
    model or setting is one line before anything is written. The learner's stages must have the
    search network's output shapes: they regress to its searched representations."""
    from .models import build_model
    args = (prep.dataset.shape, prep.dataset.num_classes)
    _, shapes = build_model(cfg, "search", *args, init="dirac")
    check_against_model(cfg, shapes)
    _, learner = build_model(cfg, "learner", *args, depth=cfg.learn.groups_per_block, init=cfg.learn.init)
    if learner[:-1] != shapes[:-1]:
        raise UserError(f"the learner's stage outputs {learner[:-1]} differ from the search network's {shapes[:-1]}; "
                        "a factory may give the learner more depth (role='learner'), not other stage shapes")


def run_search(prep, cfg, cache_path, limit: int = 0, progress: bool = True, log=None, network=None):
    """Search every image of the pool (train + validation), or the first `limit`, into a target
    cache at `cache_path`; resumes a matching partial cache; returns (cache, summary). Under
    torchrun the ranks share the chunks (each searched by exactly one rank); an image's result
    depends on (seed, image) only, so the cache is the same bytes for any number of ranks.
    `network`: search with this staged model's weights (`open_search`)."""
    pool = prep.split.pool[:limit] if limit else prep.split.pool
    fp, cache_path = fingerprint_for(cfg, prep, limit, network), Path(cache_path)
    # rank 0 creates (or resumes) the cache and its network; the other ranks then load both
    opened = distributed.main_first(lambda: _open_or_create(cfg, prep, cache_path, fp, pool, network))
    if distributed.is_main():
        problem, params, cache = opened
    else:
        cache = TargetCache.open(cache_path, fp)
        problem, params = open_search(cfg, prep, cache_path, network)
    todo = distributed.mine([c for c in range(cache.manifest["num_chunks"]) if c not in cache.done_chunks()])
    images = sum(b - a for a, b in map(cache.chunk_rows, todo))
    bar = Progress(params.max_evaluations_per_image * images, enabled=progress and distributed.is_main())
    t_start = time.time()
    for c in todo:
        bar.chunk = f"chunk {c + 1}/{cache.manifest['num_chunks']} "
        record = search_chunk(problem, params, cfg, prep, cache, c, pool, bar)
        if log:
            log({"tag": "search-chunk", "chunk": c, **{k: v for k, v in record.items() if k != "curves"}})
    bar.close()
    distributed.barrier()  # every rank's chunks are recorded
    summary = summarize_cache(cache, problem)
    summary["search_wall_time_s_this_call"] = time.time() - t_start
    if distributed.is_main():
        cache.finalize({"summary": summary})
    distributed.barrier()
    return cache, summary


def _open_or_create(cfg, prep, cache_path: Path, fp: str, pool, network=None):
    """The search's problem and params, and its cache: resumed (space reserved again) or created."""
    exists = (cache_path / "manifest.json").exists()
    cache = TargetCache.open(cache_path, fp) if exists else None
    problem, params = open_search(cfg, prep, cache_path if exists else None, network)
    if cache is None:
        cache = TargetCache.create(
            cache_path, config=cfg.to_dict(), fingerprint=fp, dataset=prep.dataset.name, indices=pool.numpy(),
            labels=prep.dataset.train_y[pool].numpy(), shapes=problem.shapes, dtype=cfg.search.dtype,
            chunk_images=chunk_size(problem.shapes, params, cfg.engine, cfg.device),
            network_state={k: v.cpu() for k, v in problem.model.state_dict().items()})
    elif not cache.complete:
        cache.reserve()
    return problem, params, cache


def search_chunk(problem, params, cfg, prep, cache, c: int, pool, bar) -> dict:
    """Search chunk `c` and write it (arrays, then its record: the chunk is then complete)."""
    a, b = cache.chunk_rows(c)
    rows = pool[a:b]
    x, y = (t.to(prep.device) for t in images_for(prep, rows))
    recorder = ChunkRecorder(params.n_children)
    res = search_images(problem, x, y, rows.tolist(), params, cfg.engine, cfg.seed, hooks=(recorder, bar),
                        pad_to=cache.manifest["chunk_images"])
    record = {"images": b - a, "curves": recorder.padded_curves([p.budget for p in params.points]),
              "layer_seconds": recorder.seconds,
              "layer_evaluations": recorder.evaluations, "ce_mean": res.ce.mean().item(),
              "accuracy": (res.reps[-1].argmax(1) == y).float().mean().item(), "rank": distributed.rank()}
    cache.write_chunk(c, res.reps, res.ce, res.evaluations, record)
    return record


def images_for(prep, dataset_rows):
    """Normalized training images and labels of the given dataset indices (on the CPU)."""
    from .data import normalize
    d = prep.dataset
    return normalize(d.train_x[dataset_rows], prep.mean, prep.std), d.train_y[dataset_rows]


def summarize_cache(cache, problem: StagedProblem) -> dict:
    """Headline figures of a complete cache: CE per point (start -> end), evaluations, FLOPs, speed."""
    recs = [json.loads(p.read_text()) for p in sorted((cache.path / "chunks").glob("*.json"))]
    arr, curves, n = cache.arrays(), cache.curves(), problem.num_points
    point_evals = [sum(r["layer_evaluations"][p] for r in recs) for p in range(n)]
    point_secs = [sum(r["layer_seconds"][p] for r in recs) for p in range(n)]
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
        "layers": [{"layer": p, "name": cache.names[p], "ce_start": curves[p]["best"][0], "ce_end": curves[p]["best"][-1],
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
