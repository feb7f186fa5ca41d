"""The stages studies are built from, each resumable: a search into a target cache (opened when
complete, resumed when partial), and a training stage whose run directory is reused once it has
its summary.json."""
from __future__ import annotations

import copy
from pathlib import Path

from repsearch.search.pool import fingerprint_for, run_search
from repsearch.store import distributed, records
from repsearch.store.cache import TargetCache
from repsearch.store.rundir import RunDir


def stage(path: Path, config: dict, device: str, fn) -> dict:
    """Run fn(run) unless path/summary.json exists; return the stage's summary. Under torchrun
    every rank takes rank 0's decision (they train together) and only rank 0 writes; no rank
    returns before rank 0's files are on disk, so a rank may read them next (a learned model)."""
    done = path / "summary.json"
    if distributed.broadcast(done.exists()):
        return records.summary(path)
    run = RunDir(path, config, device)
    summary = run.summary(fn(run))
    distributed.barrier()
    return summary


def search_or_open(prep, cfg, cache_path: Path, network=None):
    """The cache at `cache_path`: opened when complete (its fingerprint checked), else searched
    or resumed. `network`: the search network to use instead of the config's (`run_search`)."""
    if distributed.broadcast(records.cache_complete(cache_path)):
        cache = TargetCache.open(cache_path, fingerprint_for(cfg, prep, network=network))
        return cache, records.search_summary(cache.manifest["summary"])
    return run_search(prep, cfg, cache_path, network=network)


def stream_config(cfg, k: int):
    """The config of the k-th independent search of the same images with the same network, counted
    from the config's own stream (k = 0: the config itself)."""
    c = copy.deepcopy(cfg)
    c.search.stream = cfg.search.stream + k
    return c


def search_streams(prep, cfg, seed_dir: Path) -> tuple[list, list[dict]]:
    """The seed's target caches: its own search (`cache/`, stream 0) and, with
    `learn.target_searches = K`, streams 1..K-1 of the same images (`cache-stream{k}/`)."""
    found = [search_or_open(prep, stream_config(cfg, k), seed_dir / ("cache" if k == 0 else f"cache-stream{k}"))
             for k in range(cfg.learn.target_searches)]
    return [c for c, _ in found], [s for _, s in found]
