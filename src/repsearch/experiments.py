"""Paper experiments on the search alone: fitness scaling (Figure 2) and diversity (Figure 3).

Both run the search on a few training images, without learning anything, to answer two
questions about the search itself:
  - `fitness_scaling`: how the best cross-entropy reached at one block improves with population
    size and with the number of generations (is more search worth it, and where?).
  - `diversity`: do independent searches on the same image find the same representation or
    different ones? N_eff of the solutions found by k runs says how many distinct ones there are.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import UserError
from .engine import initial_population, search_images
from .noise import per_image_rng, stream_seed
from .search import images_for, open_search
from .strategy import Params

PAPER_SPLIT = (20, 100, 120)  # paper's top_k / n_explore / n_refine of its 240-member population


def scaled_population(pop_size: int) -> tuple[int, int, int]:
    """(top_k, n_explore, n_refine) summing to pop_size in the paper's 20:100:120 proportion, so a
    population sweep changes the size and not the balance of parents, explorers and refiners.
    At least one parent and one refiner are kept (the search needs both)."""
    if pop_size < 2:
        raise UserError(f"population size must be >= 2 (one parent and one refiner); got {pop_size}")
    total = sum(PAPER_SPLIT)
    top_k = max(1, round(pop_size * PAPER_SPLIT[0] / total))
    n_explore = round(pop_size * PAPER_SPLIT[1] / total)
    n_explore = max(0, min(n_explore, pop_size - top_k - 1))
    return top_k, n_explore, pop_size - top_k - n_explore


def sample_images(prep, n_images: int, seed: int) -> torch.Tensor:
    """A seeded choice of n_images dataset indices from the pool (sorted, for readable records)."""
    pool = prep.split.pool
    g = torch.Generator().manual_seed(20_000 + int(seed))
    pick = torch.randperm(len(pool), generator=g)[:min(int(n_images), len(pool))]
    return pool[pick].sort().values


def _search_rows(problem, prep, rows: torch.Tensor, cfg_search, engine, seed: int, chunk: int, keep_reps: bool,
                 start_pop: int = 0):
    """Search the images `rows` in chunks (bounded memory); per-image results do not depend on
    the chunking (each image has its own random stream). `start_pop` > 0: the first search point
    starts from an initial population of that size instead of `pop_size` (see fitness_scaling).
    Returns (reps or None, ce, evaluations)."""
    params = Params.from_config(cfg_search, problem.shapes)
    reps, ces, evals = [[] for _ in problem.shapes], [], []
    for a in range(0, len(rows), chunk):
        r = rows[a:a + chunk]
        x, y = (t.to(prep.device) for t in images_for(prep, r))
        start = None
        if start_pop:
            rng = per_image_rng(params.rng, stream_seed(seed, params.stream), r.tolist(), x.device)
            start = initial_population(problem, x, start_pop, params.init_noise, rng,
                                       normalize=params.target_space == "normalized")
        res = search_images(problem, x, y, r.tolist(), params, engine, seed, pad_to=chunk, start=start)
        ces.append(res.ce.float().cpu())
        evals.append(res.evaluations.cpu())
        if keep_reps:
            for point, rep in enumerate(res.reps):
                reps[point].append(rep.float().cpu())
    ce, ev = torch.cat(ces), torch.cat(evals)
    return ([torch.cat(t) for t in reps] if keep_reps else None), ce, ev


def _fixed_budget(cfg_search, n_points: int):
    """A copy of the search config with adaptive stopping off (a sweep compares fixed budgets)
    and each per-point list spelled out for every point."""
    s = copy.deepcopy(cfg_search)
    params = Params.from_config(s, [()] * n_points)
    for name in ("alpha", "boost", "blur"):
        setattr(s, name, [getattr(p, name) for p in params.points])
    s.generations = [p.generations for p in params.points]
    s.target_ce, s.patience = [0.0] * n_points, [0] * n_points
    return s


def _only_block(s, block: int, generations: int):
    s.generations = [0] * len(s.generations)
    s.generations[block] = int(generations)
    return s


def _positive(values) -> bool:
    return all(v > 0 for v in values)


def fitness_scaling(prep, cfg, n_images: int = 1000, pop_sizes=(12, 24, 60, 120, 240, 480),
                    generations=(0, 10, 30, 100, 300), out_dir=None, progress=None, chunk_images: int = 64) -> dict:
    """Figure 2: mean best cross-entropy after evolving ONE block, against population size (at the
    config's generations for that block) and against generations (at the config's population).

    Every other search point gets 0 generations, so it only carries the best it receives: the
    measured CE is that of the block's best representation forwarded through the rest of the
    network. Block 0 starts from a noisy-input population of the swept size; later blocks start
    from the forward of the best of a noisy-input population of the config's size, whatever the
    swept size (a larger population must not also mean a better input to the block it sweeps).
    `progress(record)` is called after each point."""
    problem, _ = open_search(cfg, prep)
    base = _fixed_budget(cfg.search, problem.num_points)
    rows = sample_images(prep, n_images, cfg.seed)
    result = {"images": int(len(rows)), "seed": cfg.seed, "split": list(PAPER_SPLIT),
              "config_population": base.pop_size, "config_generations": list(base.generations[:-1]), "blocks": {}}

    def point(s, block, axis, value, key):
        _, ce, ev = _search_rows(problem, prep, rows, s, cfg.engine, cfg.seed, chunk_images, keep_reps=False,
                                 start_pop=base.pop_size if block > 0 else 0)
        rec = {key: int(value), "mean_best_ce": ce.mean().item(), "median_best_ce": ce.median().item(),
               "evaluations_per_image": ev.double().mean().item()}
        if progress is not None:
            progress({"block": block, "axis": axis, **rec})
        return rec

    for block in range(problem.num_points - 1):
        by_pop = []
        for p in pop_sizes:
            s = _only_block(copy.deepcopy(base), block, base.generations[block])
            s.pop_size = int(p)
            s.top_k, s.n_explore, s.n_refine = scaled_population(int(p))
            by_pop.append(point(s, block, "population", p, "pop_size"))
        by_gen = [point(_only_block(copy.deepcopy(base), block, g), block, "generations", g, "generations")
                  for g in generations]
        result["blocks"][block] = {"population": by_pop, "generations": by_gen}

    if out_dir is not None:
        _write_scaling(result, Path(out_dir))
    return result


def _write_scaling(result: dict, out: Path) -> None:
    from .plots import plot_xy
    from .storage import atomic_write_json
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


def n_eff_batched(solutions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """N_eff per image of its kept solutions: solutions (B, n, ...), mask (B, n) bool -> (B,).

    The same quantity as `analysis.n_eff` (exp of the collision entropy of the cosine Gram
    matrix, (tr K)^2 / sum K_ij^2), for all images at once with one batched matrix product.
    Masked-out solutions drop out of K; an image with none kept gets NaN."""
    v = F.normalize(solutions.flatten(2).double(), dim=2)
    gram = torch.bmm(v, v.transpose(1, 2))  # (B, n, n)
    m = torch.ones(gram.shape[:2], dtype=torch.double, device=gram.device) if mask is None else mask.double()
    kept = gram * m[:, :, None] * m[:, None, :]
    trace = kept.diagonal(dim1=1, dim2=2).sum(1)
    out = trace.pow(2) / kept.pow(2).sum((1, 2))
    return torch.where(trace > 0, out, torch.full_like(out, math.nan))


@torch.no_grad()
def solution_logits(problem, point: int, solutions: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """The logits a search point's solutions give through the rest of the search network."""
    dev = next(problem.model.parameters()).device
    return torch.cat([problem.logits_from(point, solutions[i:i + batch].to(dev)).float().cpu()
                      for i in range(0, len(solutions), batch)])


def p_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax probability of the true class: (B, K), (B,) -> (B,)."""
    return logits.float().softmax(1).gather(1, labels[:, None]).squeeze(1)


def diversity(prep, cfg, n_images: int = 32, runs: int = 8, out_dir=None, *, seed_stride: int = 1000,
              chunk_images: int = 64) -> dict:
    """Figure 3: N_eff of the solutions that `runs` independent full searches find per image.

    Run r uses seed cfg.seed + seed_stride * r (0 makes every run identical: N_eff = 1). Per image
    and block, only runs whose solution at that block gives p(correct) > 0.5 through the rest of
    the search network count (a solution that does not solve the image is not a solution), and N_eff over the first k runs' kept solutions is
    averaged over the images with at least one kept, for k = 1..runs."""
    if runs < 1:
        raise UserError(f"diversity needs runs >= 1; got {runs}")
    problem, _ = open_search(cfg, prep)
    rows = sample_images(prep, n_images, cfg.seed)
    labels = prep.dataset.train_y[rows]
    per_run, ok, ce = [], [], []
    for r in range(runs):  # runs outermost: each seed's noise bank is drawn once
        reps, c, _ = _search_rows(problem, prep, rows, cfg.search, cfg.engine, cfg.seed + seed_stride * r,
                                  chunk_images, True)
        per_run.append(reps[:-1])
        ok.append(torch.stack([p_correct(solution_logits(problem, point, sol), labels) > 0.5
                               for point, sol in enumerate(reps)], 1))  # (N, points)
        ce.append(c)
    ok = torch.stack(ok, 1)  # (N, R, points)
    first_k = torch.arange(runs)[None, :]
    result = {"images": int(len(rows)), "runs": runs, "seeds": [cfg.seed + seed_stride * r for r in range(runs)],
              "p_correct_fraction": [ok[:, r, -1].float().mean().item() for r in range(runs)],
              "p_correct_fraction_per_block": {b: [ok[:, r, b].float().mean().item() for r in range(runs)]
                                               for b in range(problem.num_points - 1)},
              "mean_best_ce": [c.mean().item() for c in ce], "blocks": {}}
    for block in range(problem.num_points - 1):
        sols = torch.stack([reps[block] for reps in per_run], 1)  # (N, R, *S)
        curve = []
        for k in range(1, runs + 1):
            vals = n_eff_batched(sols, ok[:, :, block] & (first_k < k))
            has = ~vals.isnan()
            curve.append({"runs": k, "n_eff": vals[has].mean().item() if bool(has.any()) else None,
                          "images": int(has.sum())})
        result["blocks"][block] = curve

    if out_dir is not None:
        from .plots import plot_xy
        from .storage import atomic_write_json
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "diversity.json", result)
        series = {}
        for b, curve in result["blocks"].items():
            pts = [(c["runs"], c["n_eff"]) for c in curve if c["n_eff"] is not None]
            series[f"block {b}"] = ([p[0] for p in pts], [p[1] for p in pts])
        series["n_eff = runs"] = (list(range(1, runs + 1)), list(range(1, runs + 1)))
        plot_xy(series, "independent runs", "N_eff of correct solutions", out / "diversity.png",
                title=f"diversity ({result['images']} images)")
    return result
