"""The pipeline's own subcommands: SGD baseline, search, learning from a cache, and all of it."""
from __future__ import annotations

from pathlib import Path

from repsearch.errors import UserError
from repsearch.store import distributed

from .setup import finish, set_up


def cmd_baseline(args) -> int:
    from repsearch.learn.baseline import run_baseline
    c = set_up(args, "baseline", batches=("baseline",), preflight="baseline")
    summary = run_baseline(c.prep, c.cfg, c.run)
    finish(c, "baseline", summary)
    return 0


def cmd_search(args) -> int:
    from repsearch.report.plots import plot_search_curves
    from repsearch.search.pool import run_search
    if args.limit < 0:
        raise UserError("--limit must be >= 0")
    c = set_up(args, "search", batches=())
    cache_path = Path(args.cache) if args.cache else c.run.path / "cache"
    cache, summary = run_search(c.prep, c.cfg, cache_path, limit=args.limit, log=c.run.log)
    if not distributed.is_main():
        return 0
    plot_search_curves(cache.curves(), c.run.path / "search_curves.png")
    for point in summary["points"]:
        print(f"point {point['point']} ({point['name']}): mean best CE {point['ce_start']:.4f} -> {point['ce_end']:.4f}, "
              f"{point['evaluations_per_s']:.0f} evaluations/s")
    finish(c, "search", {"cache": str(cache_path), **summary})
    return 0


def cmd_train(args) -> int:
    from repsearch.learn.regression import target_caches, train_from_cache
    if not args.cache:
        raise UserError("train needs --cache DIR (a target cache written by 'repsearch search')")
    caches = []

    def configure(cfg):
        if len(args.cache) > 1 and cfg.learn.target_searches not in (1, len(args.cache)):
            raise UserError(f"learn.target_searches is {cfg.learn.target_searches} but {len(args.cache)} caches were given")
        cfg.learn.target_searches = len(args.cache)  # what the run's config.json records

    def check(cfg, prep):  # the caches are checked before the run directory exists
        from repsearch.search.pool import fingerprint_for
        from repsearch.store.cache import TargetCache
        from repsearch.studies.stages import stream_config
        caches.extend(target_caches([TargetCache.open(path, fingerprint_for(stream_config(cfg, k), prep))
                                     for k, path in enumerate(args.cache)], cfg.learn))

    c = set_up(args, "train", batches=("learn",), configure=configure, check=check)
    _, summary = train_from_cache(c.prep, c.cfg, caches, c.run)
    used = args.cache[0] if len(args.cache) == 1 else args.cache
    finish(c, "train", {"dataset": c.prep.dataset.name, "cache": used, **summary})
    return 0


def cmd_run(args) -> int:
    from repsearch.studies.pipeline import markdown, run_pipeline

    def configure(cfg):
        if args.seeds is not None:
            if args.seeds < 1:
                raise UserError("--seeds must be >= 1")
            cfg.run.seeds = args.seeds

    c = set_up(args, "run", configure=configure)
    summary, results = run_pipeline(c.cfg, c.run.path)
    finish(c, "run", summary, seeds=list(range(c.cfg.seed, c.cfg.seed + c.cfg.run.seeds)))
    if not distributed.is_main():
        return 0
    print(markdown(results, c.cfg))
    from repsearch.report.html import write_report
    print(f"report: {write_report([c.run.path], c.run.path / 'report.html')}")
    return 0


def search_args(p):
    p.add_argument("--limit", type=int, default=0, help="search only the first N images of the pool")
    p.add_argument("--cache", help="target cache directory (default RUN_DIR/cache); an existing matching "
                   "cache is resumed")


def train_args(p):
    p.add_argument("--cache", nargs="+", help="target cache directory written by 'repsearch search' with the same "
                   "config; K directories (searches with search.stream = s, s+1, ..., s+K-1 in that order; s: the "
                   "config's): the learner's targets are their mean (learn.target_searches)")


def run_args(p):
    p.add_argument("--seeds", type=int, help="number of seeds (default run.seeds)")
