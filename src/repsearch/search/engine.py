"""The search engine: runs the strategy over a chunk of images through every search point.

How fast it runs is the engine's business (config section `engine`: chunking, memory, compile,
layouts) and never changes what is found beyond float rounding. Per point: the population starts
from the forward of the previous point's best (point 0: noisy copies of the input), then
generations run until the schedule ends or, with adaptive compute, every image is at its target.
A compiled point runs `strategy.generation` under torch.compile: the same function the eager path
calls, so there is one scoring path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from repsearch.errors import UserError
from repsearch.events import Hooks
from repsearch.models.staged import sample_normalize

from . import fastpaths, strategy
from .noise import NoiseBank, PerImageRNG, per_image_rng, stream_seed
from .problem import StagedProblem
from .strategy import Params, PointParams, State


@dataclass
class ChunkResult:
    reps: list[torch.Tensor]  # best representation per search point, (B, *S) each
    ce: torch.Tensor  # final best CE per image (B,)
    evaluations: torch.Tensor  # candidate evaluations spent per image (B,)


@torch.no_grad()
def initial_population(problem: StagedProblem, x: torch.Tensor, n_pop: int, noise_scale: float, rng: PerImageRNG,
                       normalize: bool = False):
    """n_pop noisy variants of each input (noise per element, scaled by each input's per-channel
    std; a vector input counts as one channel), taken to search point 0. Returns (B, n_pop, *S0).
    `normalize`: a second per-sample normalization (stage 0 ends in SampleNorm already, so it only
    changes rounding; kept so that caches stay byte-identical with earlier versions)."""
    b = x.shape[0]
    std = x.flatten(2).std(dim=2, unbiased=False) if x.dim() > 2 else x.std(dim=1, unbiased=False)[:, None]
    noise = rng.randn((n_pop, *x.shape[1:]))
    noisy = x[:, None] + noise * (noise_scale * std).reshape(b, 1, -1, *(1,) * (x.dim() - 2))
    h = problem.enter(noisy.reshape(b * n_pop, *x.shape[1:]))
    h = sample_normalize(h) if normalize else h
    return h.reshape(b, n_pop, *h.shape[1:])


@torch.no_grad()
def search_images(problem: StagedProblem, x: torch.Tensor, y: torch.Tensor, image_ids, params: Params, engine,
                  seed: int, hooks=(), pad_to: int = 0, start: torch.Tensor | None = None) -> ChunkResult:
    """Search one chunk of images through every search point; returns the best per point.

    `start`: the population to begin point 0 from, (B, P, *S0), or one representation per image
    (B, *S0), instead of noisy copies of the input (e.g. a learned network's representations).
    `pad_to`: with compiled points, a short chunk (the last one) is padded to this many rows
    (copies of its first image on throwaway random streams) so that it reuses the graphs compiled
    for full chunks; padding rows are dropped from the result."""
    real = x.shape[0]
    pad = max(0, pad_to - real) if engine.compile else 0
    if start is not None and start.dim() == len(problem.shapes[0]) + 1:
        start = start[:, None]
    if pad:
        x, y = _pad_rows(x, pad), _pad_rows(y, pad)
        start = None if start is None else _pad_rows(start, pad)
    b, hooks = x.shape[0], Hooks(*hooks)
    seed = stream_seed(seed, params.stream)
    rng = per_image_rng(params.rng, seed, image_ids, x.device, pad=pad)
    bank = NoiseBank.shared(seed, x.device) if params.noise == "bank" else None
    evals = torch.zeros(b, dtype=torch.int64, device=x.device)
    reps, fixed = [], None  # fixed: the best representation at the previous point, (B, *S)
    for point, pp in enumerate(params.points):
        if point == 0 and start is not None:
            pop = start.to(x.device, x.dtype)
        elif point == 0:
            pop = initial_population(problem, x, params.pop_size, params.init_noise, rng,
                                     normalize=params.target_space == "normalized")
        else:  # point l starts from the forward of the best individual at l-1
            pop = problem.advance(point, fixed)[:, None]
        phases = use_pool_phases(problem.model, point, params, pp, engine, bank)
        if phases:
            pop = fastpaths.to_phases(pop)
        state = State(pop, problem.score(point, pop, y, phases), rng)
        evals += pop.shape[1]
        hooks("point_start", point, state, real)
        run_point(problem, point, pp, params, engine, state, y, bank, phases, evals, hooks, real)
        fixed, best_ce = strategy.best(state.pop, state.ce)
        if phases:
            fixed = fastpaths.from_phases(fixed)
        reps.append(fixed[:real])
        hooks("point_end", point, best_ce[:real], real)
    check_finite(reps, best_ce[:real], image_ids)
    return ChunkResult(reps, best_ce[:real], evals[:real])


def check_finite(reps: list[torch.Tensor], ce: torch.Tensor, image_ids) -> None:
    """A search that produced NaN or inf stops with one line before anything of it is written."""
    for point, rep in enumerate([*reps, ce[:, None]]):
        bad = ~torch.isfinite(rep.reshape(len(rep), -1)).all(1)
        if bool(bad.any()):
            ids = [int(image_ids[i]) for i in bad.nonzero().squeeze(1)[:5].tolist()]
            where = "the final cross-entropy" if point == len(reps) else f"search point {point}"
            raise UserError(f"the search produced non-finite values at {where} for {int(bad.sum())} image(s) "
                            f"(dataset indices {ids}...); nothing of them was written. Check the model's numerics "
                            "or lower search.alpha; the cache stays resumable")


def _pad_rows(t: torch.Tensor, pad: int) -> torch.Tensor:
    return torch.cat([t, t[:1].expand(pad, *t.shape[1:])])


def run_point(problem, point: int, pp: PointParams, params: Params, engine, state: State, y, bank, phases: bool,
              evals: torch.Tensor, hooks: Hooks, real: int) -> None:
    """The generations at one search point, in place on `state` and `evals`."""
    b = len(y)
    settings = strategy.operator_settings(params, pp, bank, engine.fast)
    step = (_fused_step(problem, point, params, settings, bank, phases, engine)
            or (_compiled_step(problem, point, phases, settings) if point in engine.compile
                else _eager_step(problem, point, phases, settings)))
    everyone = torch.ones(b, dtype=torch.bool, device=y.device)
    for gen in range(pp.budget):
        active = (state.ce.min(1).values > pp.target_ce) if pp.target_ce > 0 else everyone
        if not bool(active[:real].any()):
            break
        if bool(active.all()):
            source = strategy.noise_source(params, pp, state.pop.shape, bank, phases)
            state.pop, state.ce = step(state.pop, state.ce, y, source, strategy.draw(params, pp, state, bank))
        else:
            _step_subset(step, params, pp, state, y, bank, phases, active, point in engine.compile)
        evals += active.long() * params.n_children
        hooks("generation_end", point, gen, state, active, real, params.n_children)


def _step_subset(step, params, pp, state: State, y, bank, phases, active, compiled: bool) -> None:
    """One generation for the active images only (adaptive compute); the others keep theirs."""
    rows = active.nonzero().squeeze(1)
    padded = _pad_to_bucket(rows, len(y)) if compiled else rows
    sub = State(state.pop[padded], state.ce[padded], state.rng.subset(rows, pad=len(padded) - len(rows)))
    source = strategy.noise_source(params, pp, sub.pop.shape, bank, phases)
    pop, ce = step(sub.pop, sub.ce, y[padded], source, strategy.draw(params, pp, sub, bank))
    n = len(rows)
    state.pop, state.ce = _scatter_population(state.pop, state.ce, rows, pop[:n], ce[:n])


def _eager_step(problem: StagedProblem, point: int, phases: bool, settings: dict):
    def score(children, labels):
        return problem.score(point, children, labels, phases)

    def step(pop, ce, labels, source, draws):
        return strategy.generation(score, pop, ce, labels, source, draws, **settings)

    return step


def _fused_step(problem: StagedProblem, point: int, params: Params, settings: dict, bank, phases: bool, engine):
    """The fused generation (`fused`) where `engine.fused` asks for it and the point qualifies:
    bank noise pre-smoothed for maps (no smoothing left to `ask`), natural pixel order, fp32.
    None otherwise: the compiled or eager step runs."""
    if point not in getattr(engine, "fused", ()) or bank is None or phases or settings["blur"] != 0 \
            or settings["kind"] != "map" or params.smooth != "noise" or problem.precision != "fp32":
        return None
    from . import fused
    plan = fused.plan_for(problem.model, point, problem.shapes)
    if plan is None:
        return None
    plan = fused.tiled(plan, getattr(engine, "fused_tiling", ""))
    return lambda pop, ce, labels, source, draws: fused.generation(plan, pop, ce, labels, source, draws, **settings)


_COMPILED: dict = {}


def _compiled_step(problem: StagedProblem, point: int, phases: bool, settings: dict):
    """`_eager_step`'s function under torch.compile, built once per process per (model, point,
    layout, settings). Shapes are static: dynamic-shape kernels measured 25% slower, so each batch
    size compiles its own graph (the recompile limit is raised to cover them)."""
    key = (id(problem.model), point, phases, tuple(sorted(settings.items())))
    if key not in _COMPILED:
        import torch._dynamo
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, max(64, getattr(torch._dynamo.config, name)))
        _COMPILED[key] = torch.compile(_eager_step(problem, point, phases, settings), dynamic=False)
    return _COMPILED[key]


def use_pool_phases(model, point: int, params: Params, pp: PointParams, engine, bank) -> bool:
    """Whether `point` keeps its population in pooling-phase pixel order: exact whenever the
    mutation does no spatial work of its own (noise pre-smoothed in the bank at map-aligned
    windows) and the next stage opens with an identity conv and a pool (`fastpaths`)."""
    return (engine.pool_phases and bank is not None and params.smooth == "noise" and pp.kind == "map"
            and pp.blur > 0 and point not in getattr(engine, "fused", ()) and fastpaths.phases_allowed(model, point))


def _pad_to_bucket(rows: torch.Tensor, chunk: int) -> torch.Tensor:
    """Active rows padded (repeating the first) up to a multiple of a quarter chunk: a compiled
    generation then sees at most four batch sizes instead of one per count of active images."""
    quarter = max(1, -(-chunk // 4))
    size = min(chunk, -(-len(rows) // quarter) * quarter)
    return torch.cat([rows, rows[:1].expand(size - len(rows))])


def _scatter_population(pop, ce, rows, sub_pop, sub_ce):
    """Write an active subset's new population back, in place; inactive images keep theirs,
    padded by repeating their best when the population grows (a point's first generation)."""
    if sub_pop.shape[1] != pop.shape[1]:
        grow = sub_pop.shape[1] - pop.shape[1]
        best = ce.argmin(1)
        r = torch.arange(len(best), device=ce.device)
        pop = torch.cat([pop, pop[r, best][:, None].expand(-1, grow, *pop.shape[2:])], dim=1)
        ce = torch.cat([ce, ce[r, best][:, None].expand(-1, grow)], dim=1)
    pop[rows], ce[rows] = sub_pop, sub_ce
    return pop, ce


WORKING_SET_BYTES = 16 * 2 ** 20  # children per chunk sized to stay near the CPU's caches


def bytes_per_image(shapes: list[tuple], params: Params) -> int:
    """Rough peak working memory of one image's generation (population, children, noise, and the
    downstream activations of the children), the basis of chunk sizing."""
    pop, kids = params.top_k + params.n_children, params.n_children
    worst = 0
    for point, shape in enumerate(shapes):
        downstream = sum(math.prod(s) for s in shapes[point + 1:]) * 4  # norm/activation temporaries
        worst = max(worst, (pop * 3 + kids * 4) * math.prod(shape) + kids * downstream)
    return 4 * max(worst, math.prod(shapes[0]) * params.pop_size * 4)


def chunk_size(shapes: list[tuple], params: Params, engine, device: str = "cpu") -> int:
    """Images searched at once: as many as `engine.memory_gb` allows, and on a CPU with
    `engine.fast` no more than keep one generation's children within ~16 MiB (measured: on 2
    cores, chunks of ~16 MNIST images run 3x more evaluations/s than chunks of 256; see
    docs/performance.md). A GPU has no such cache to stay in: it wants the largest chunk."""
    if engine.chunk_images > 0:
        return engine.chunk_images
    by_memory = max(1, min(1024, int(engine.memory_gb * 2 ** 30 // bytes_per_image(shapes, params))))
    if not engine.fast or not str(device).startswith("cpu"):
        return by_memory
    children = params.n_children * max(math.prod(s) for s in shapes) * 4
    return max(1, min(by_memory, WORKING_SET_BYTES // children))
