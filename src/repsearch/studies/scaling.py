"""Paper Figure 2, fitness scaling: how the best cross-entropy reached at one block improves with
population size and with the number of generations (is more search worth it, and where?).

It runs the search on a few training images without learning anything. Every search goes
through `search.driver.Searcher`, so `engine.*` (chunking, compile) applies as everywhere else.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from repsearch.errors import UserError
from repsearch.search.engine import initial_population
from repsearch.search.noise import per_image_rng, stream_seed
from repsearch.search.pool import images_for, open_search
from repsearch.search.strategy import Params

PAPER_SPLIT = (20, 100, 120)  # paper's top_k / n_explore / n_refine of its 240-member population


def scaled_population(pop_size: int, split=PAPER_SPLIT) -> tuple[int, int, int]:
    """(top_k, n_explore, n_refine) summing to pop_size in the proportion of `split` (a config's own
    parents / explorers / refiners; the paper's 20:100:120 by default), so a population sweep
    changes the size and not the balance, and passes through the config's own point: at the
    split's own size it is the split itself. At least one parent and one refiner are kept."""
    if pop_size < 2:
        raise UserError(f"population size must be >= 2 (one parent and one refiner); got {pop_size}")
    if pop_size == sum(split):
        return tuple(split)
    total = sum(split)
    top_k = max(1, round(pop_size * split[0] / total))
    n_explore = round(pop_size * split[1] / total)
    n_explore = max(0, min(n_explore, pop_size - top_k - 1))
    return top_k, n_explore, pop_size - top_k - n_explore


def sample_images(prep, n_images: int, seed: int) -> torch.Tensor:
    """A seeded choice of n_images dataset indices from the pool (sorted, for readable records)."""
    pool = prep.split.pool
    g = torch.Generator().manual_seed(20_000 + int(seed))
    pick = torch.randperm(len(pool), generator=g)[:min(int(n_images), len(pool))]
    return pool[pick].sort().values


def search_rows(searcher, prep, rows: torch.Tensor, cfg_search=None, seed: int | None = None, keep_reps: bool = True,
                start_pop: int = 0):
    """Search the dataset images `rows` with `searcher`'s network and engine (another search config
    or seed may be given: a sweep's point); per-image results do not depend on the chunking (each
    image has its own random stream). `start_pop` > 0: the first search point starts from an
    initial population of that size instead of `pop_size`. Returns the driver's `Found`."""
    from repsearch.search.driver import Searcher
    params = Params.from_config(cfg_search, searcher.problem.shapes) if cfg_search is not None else searcher.params
    run = Searcher(searcher.problem, params, searcher.engine, searcher.seed if seed is None else seed, prep.device)

    def load(a, b):
        r = rows[a:b]
        x, y = (t.to(prep.device) for t in images_for(prep, r))
        start = None
        if start_pop:
            rng = per_image_rng(params.rng, stream_seed(run.seed, params.stream), r.tolist(), x.device)
            start = initial_population(run.problem, x, start_pop, params.init_noise, rng,
                                       normalize=params.target_space == "normalized")
        return x, y, r.tolist(), start

    return run.search_all(len(rows), load, keep_reps=keep_reps, to_cpu=True)


def _fixed_budget(cfg_search, n_points: int):
    """A copy of the search config with adaptive stopping off (a sweep compares fixed budgets)
    and each per-point list spelled out for every point."""
    s = copy.deepcopy(cfg_search)
    params = Params.from_config(s, [()] * n_points)
    for name in ("alpha", "boost", "blur"):
        setattr(s, name, [getattr(p, name) for p in params.points])
    s.generations = [p.generations for p in params.points]
    s.target_ce, s.extra_generations = [0.0] * n_points, [0] * n_points
    return s


def _only_block(s, block: int, generations: int):
    s.generations = [0] * len(s.generations)
    s.generations[block] = int(generations)
    return s


def _positive(values) -> bool:
    return all(v > 0 for v in values)


def fitness_scaling(prep, cfg, n_images: int = 1000, pop_sizes=(12, 24, 60, 120, 240, 480),
                    generations=(0, 10, 30, 100, 300), out_dir=None, on_point=None) -> dict:
    """Figure 2: mean best cross-entropy after evolving ONE block, against population size (at the
    config's generations for that block) and against generations (at the config's population).

    Every other search point gets 0 generations, so it only carries the best it receives: the
    measured CE is that of the block's best representation forwarded through the rest of the
    network. Block 0 starts from a noisy-input population of the swept size; later blocks start
    from the forward of the best of a noisy-input population of the config's size, whatever the
    swept size (a larger population must not also mean a better input to the block it sweeps).
    `on_point(record)` is called after each point."""
    searcher = open_search(cfg, prep)
    problem = searcher.problem
    base = _fixed_budget(cfg.search, problem.num_points)
    rows = sample_images(prep, n_images, cfg.seed)
    split = (base.top_k, base.n_explore, base.n_refine)
    result = {"images": int(len(rows)), "seed": cfg.seed, "split": list(split),
              "config_population": base.pop_size, "config_generations": list(base.generations[:-1]), "blocks": {}}

    def point(s, block, axis, value, key):
        found = search_rows(searcher, prep, rows, s, keep_reps=False, start_pop=base.pop_size if block > 0 else 0)
        ce, ev = found.ce, found.evaluations
        rec = {key: int(value), "mean_best_ce": ce.mean().item(), "median_best_ce": ce.median().item(),
               "evaluations_per_image": ev.double().mean().item()}
        if on_point is not None:
            on_point({"block": block, "axis": axis, **rec})
        return rec

    for block in range(problem.num_points - 1):
        by_pop = []
        for p in pop_sizes:
            s = _only_block(copy.deepcopy(base), block, base.generations[block])
            s.pop_size = int(p)
            s.top_k, s.n_explore, s.n_refine = scaled_population(int(p), split)
            by_pop.append(point(s, block, "population", p, "pop_size"))
        by_gen = [point(_only_block(copy.deepcopy(base), block, g), block, "generations", g, "generations")
                  for g in generations]
        result["blocks"][block] = {"population": by_pop, "generations": by_gen}

    if out_dir is not None:
        _write_scaling(result, Path(out_dir))
    return result


def _write_scaling(result: dict, out: Path) -> None:
    from repsearch.report.plots import plot_xy
    from repsearch.store.atomic import atomic_write_json
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "scaling.json", result)
    for axis, key, label in (("population", "pop_size", "population size"),
                             ("generations", "generations", "generations")):
        series = {f"block {b}": ([r[key] for r in v[axis]], [r["mean_best_ce"] for r in v[axis]])
                  for b, v in result["blocks"].items()}
        xs = [x for s in series.values() for x in s[0]]
        ys = [y for s in series.values() for y in s[1]]
        plot_xy(series, label, "mean best cross-entropy", out / f"scaling_{axis}.png",
                logx=_positive(xs), logy=_positive(ys), title=f"fitness vs {label} ({result['images']} images)")
