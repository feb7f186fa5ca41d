"""The search of a data pool into a resumable target cache, chunk by chunk (`repsearch search`).

The pieces, kept apart as in evosax/EvoTorch: the model (`models`, behind the staged-model
contract), the search network (`network`), the problem (`problem.StagedProblem`: score
candidates by running the rest of the model), the strategy (`strategy`: Params, State, pure
ask/tell), the engine (`engine`: one chunk through every search point, compile, layouts), the
driver (`driver.Searcher`) and hooks (`hooks`: progress, curves, timings). This module adds
the cache: which chunks are left, who searches them under torchrun, and the record of each.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch

from repsearch.config import per_point
from repsearch.config.validation import check_supervise
from repsearch.data import normalize
from repsearch.errors import UserError
from repsearch.models import build_model, is_user_model, user_model_source_hash
from repsearch.models.staged import check_staged
from repsearch.store import distributed
from repsearch.store.cache import TargetCache, search_fingerprint

from .driver import Searcher
from .hooks import ChunkRecorder, Progress
from .network import build_search_network
from .problem import StagedProblem
from .strategy import Params
from .summary import summarize_cache


def fingerprint_for(cfg, prep, limit: int = 0, network: torch.nn.Module | None = None) -> str:
    """The cache's identity; a given search network (not built from the config) adds its weights' hash.
    The config's per-point lists are fitted to the model first (`fit_points`), as the search uses them."""
    fit_points(cfg, prep, network)
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


def open_search(cfg, prep, cache_path=None, network=None) -> Searcher:
    """The config's search, ready to run: its network, problem, Params and engine. With
    `cache_path` of an existing cache, the network is the one stored there. `network`: a given
    staged model (e.g. a learned one) instead of the config's untrained search network."""
    train_x, _ = prep.images("train")
    stored = Path(cache_path) / "network.pt" if cache_path is not None else None
    weights = torch.load(stored, weights_only=True) if stored is not None and stored.exists() else None
    model, shapes = build_search_network(cfg, prep.dataset.shape, prep.dataset.num_classes, train_x, prep.device,
                                         network=network, weights=weights)
    params = check_against_model(cfg, shapes)
    return Searcher(StagedProblem(model, shapes, precision=cfg.search.precision), params, cfg.engine, cfg.seed,
                    prep.device)


def fit_points(cfg, prep, network: torch.nn.Module | None = None) -> list[tuple]:
    """The model's search point shapes, and the config's per-point lists fitted to them in place
    (`check_against_model`), before anything is hashed or searched. The global RNG is left as it was."""
    if network is not None:
        shapes = check_staged(network, tuple(prep.dataset.shape), prep.dataset.num_classes, name="search network")
    else:
        with torch.random.fork_rng(devices=[]):
            _, shapes = build_model(cfg, "search", prep.dataset.shape, prep.dataset.num_classes, init="dirac")
    check_against_model(cfg, shapes)
    return shapes


def check_against_model(cfg, shapes: list[tuple]) -> Params:
    """The settings whose validity depends on the model's search points, the per-point lists fitted
    to them in `cfg` (`config.per_point`); returns the strategy's Params."""
    explicit = getattr(cfg, "explicit", frozenset())
    for key, values in per_point.fit(cfg.search, len(shapes), explicit).items():
        if len(getattr(cfg.search, key)) not in (1, len(shapes)):  # a preset's list, fitted by role: what the
            setattr(cfg.search, key, values)                        # run uses, printed and kept in config.json
    if "engine.compile" not in explicit:  # a preset's compiled points that this model lacks are dropped
        cfg.engine.compile = [p for p in cfg.engine.compile if p < len(shapes)]
    params = Params.from_config(cfg.search, shapes, explicit)
    for key in ("compile", "fused"):
        bad = [p for p in getattr(cfg.engine, key) if p >= len(shapes)]
        if bad:
            raise UserError(f"engine.{key} lists search points 0-{len(shapes) - 1} for this model; got {bad}")
    check_supervise(cfg.learn.supervise, len(shapes) - 1)  # [] = every stage
    return params


def run_search(prep, cfg, cache_path, limit: int = 0, log=None, network=None):
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
        searcher, cache = opened
    else:
        cache = TargetCache.open(cache_path, fp)
        searcher = open_search(cfg, prep, cache_path, network)
    todo = distributed.mine([c for c in range(cache.manifest["num_chunks"]) if c not in cache.done_chunks()])
    images = sum(b - a for a, b in map(cache.chunk_rows, todo))
    bar = Progress(searcher.params.max_evaluations_per_image * images, enabled=distributed.is_main())
    t_start = time.time()
    for c in todo:
        bar.chunk = f"chunk {c + 1}/{cache.manifest['num_chunks']} "
        record = search_chunk(searcher, prep, cache, c, pool, bar)
        if log:
            log({"tag": "search-chunk", "chunk": c, **{k: v for k, v in record.items() if k != "curves"}})
    bar.close()
    distributed.barrier()  # every rank's chunks are recorded
    summary = summarize_cache(cache, searcher.problem)
    summary["search_wall_time_s_this_call"] = time.time() - t_start
    if distributed.is_main():
        cache.finalize({"summary": summary})
    distributed.barrier()
    return cache, summary


def _open_or_create(cfg, prep, cache_path: Path, fp: str, pool, network=None):
    """The search, and its cache: resumed (space reserved again) or created."""
    exists = (cache_path / "manifest.json").exists()
    cache = TargetCache.open(cache_path, fp) if exists else None
    searcher = open_search(cfg, prep, cache_path if exists else None, network)
    if cache is None:
        problem = searcher.problem
        cache = TargetCache.create(
            cache_path, config=cfg.to_dict(), fingerprint=fp, dataset=prep.dataset.name, indices=pool.numpy(),
            labels=prep.dataset.train_y[pool].numpy(), shapes=problem.shapes, dtype=cfg.search.dtype,
            chunk_images=searcher.chunk, network_state={k: v.cpu() for k, v in problem.model.state_dict().items()})
    elif not cache.complete:
        cache.reserve()
    return searcher, cache


def search_chunk(searcher: Searcher, prep, cache, c: int, pool, bar) -> dict:
    """Search chunk `c` and write it (arrays, then its record: the chunk is then complete)."""
    a, b = cache.chunk_rows(c)
    rows = pool[a:b]
    x, y = (t.to(prep.device) for t in images_for(prep, rows))
    recorder = ChunkRecorder(searcher.params.n_children)
    res = searcher.search_chunk(x, y, rows.tolist(), hooks=(recorder, bar), pad_to=cache.manifest["chunk_images"])
    record = {"images": b - a, "curves": recorder.padded_curves(searcher.budgets),
              "point_seconds": recorder.seconds,
              "point_evaluations": recorder.evaluations, "ce_mean": res.ce.mean().item(),
              "accuracy": (res.reps[-1].argmax(1) == y).float().mean().item(), "rank": distributed.rank()}
    cache.write_chunk(c, res.reps, res.ce, res.evaluations, record)
    return record


def images_for(prep, dataset_rows):
    """Normalized training images and labels of the given dataset indices (on the CPU)."""
    d = prep.dataset
    return normalize(d.train_x[dataset_rows], prep.mean, prep.std), d.train_y[dataset_rows]
