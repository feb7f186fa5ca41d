"""The evolution strategy (paper Section 3.1, A.2, A.4) as explicit parameters, state and pure steps.

In the manner of evosax: `Params` says what the algorithm is (fixed for a search), `State` is
what changes (population, its cross-entropies, each image's random stream), and a generation is

    draws = draw(params, point, state, bank)             # the only step that consumes randomness
    parents, parent_ce, children = ask(pop, ce, draws, ...)   # pure
    pop, ce = tell(parents, parent_ce, children, score(children))   # pure

Each generation, per image: the top-k by fitness are parents, kept with their fitness (never
recomputed); `n_explore` explorers are bred from the parents at alpha x boost; `n_refine`
refiners from parents and explorers at alpha. Fitness is the negative cross-entropy; the code
keeps the cross-entropy itself (lower is better). `generation` is the one function that both the
eager and the compiled engine run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from repsearch.config import per_point
from repsearch.config.per_point import PER_POINT
from repsearch.models.staged import point_kind

from . import operators as ops
from .noise import NoiseBank, PerImageRNG, windows


@dataclass(frozen=True)
class PointParams:
    """The schedule at one search point. Adaptive compute: an image stops searching this point
    once its best CE is <= target_ce (0 = off) and one still above gets `extra_generations` more."""
    kind: str  # "map", "vector" or "logits" (models.staged.point_kind)
    generations: int
    alpha: float
    boost: float
    blur: int
    target_ce: float = 0.0
    extra_generations: int = 0

    @property
    def budget(self) -> int:
        return self.generations + (self.extra_generations if self.target_ce > 0 else 0)


@dataclass(frozen=True)
class Params:
    pop_size: int
    top_k: int
    n_explore: int
    n_refine: int
    init_noise: float
    smooth: str  # "noise" or "child"
    noise: str  # "bank" or "fresh"
    target_space: str  # "normalized" or "raw"
    points: tuple[PointParams, ...]
    blur_border: str = "valid"  # "valid" or "zero" (operators.smooth)
    rng: str = "generator"  # "generator" or "counter" (noise.per_image_rng)
    stream: int = 0  # which independent search of the same images (noise.stream_seed)

    @property
    def n_children(self) -> int:
        return self.n_explore + self.n_refine

    @property
    def max_evaluations_per_image(self) -> int:
        """The initial population, every generation's children, and one carried-forward best per later point."""
        return self.pop_size + sum(p.budget for p in self.points) * self.n_children + len(self.points) - 1

    @classmethod
    def from_config(cls, s, shapes: list[tuple], explicit=frozenset()) -> "Params":
        """The search config for a model with these search point shapes (logits last). Per-point
        settings are lists with one value per point, a single value for all, or a preset's lists
        fitted to the model by role (`config.per_point`; `explicit` keys are never fitted)."""
        n = len(shapes)
        lists = per_point.fit(s, n, explicit)
        points = tuple(PointParams(point_kind(shape, i == n - 1), *(lists[k][i] for k in PER_POINT))
                       for i, shape in enumerate(shapes))
        return cls(s.pop_size, s.top_k, s.n_explore, s.n_refine, s.init_noise, s.smooth, s.noise, s.target_space, points,
                   s.blur_border, s.rng, s.stream)


@dataclass
class State:
    pop: torch.Tensor  # (B, P, *S)
    ce: torch.Tensor  # (B, P)
    rng: PerImageRNG  # each image's stream; its position is part of the state


class Draws(NamedTuple):
    noise: torch.Tensor  # (B, M, *S) normals, or with a bank (B, M) window offsets
    picks_explore: torch.Tensor  # (B, 2, n_explore) parent indices
    picks_refine: torch.Tensor  # (B, 2, n_refine)


def bank_blur(params: Params, pp: PointParams) -> int:
    """Blur baked into the bank: noise-only smoothing of maps is pre-applied there."""
    return pp.blur if params.noise == "bank" and params.smooth == "noise" and pp.kind == "map" else 0


def draw(params: Params, pp: PointParams, state: State, bank: NoiseBank | None) -> Draws:
    """This generation's random numbers, from each image's own stream (in a fixed order)."""
    k = min(params.top_k, state.pop.shape[1])
    shape = (params.n_children, *state.pop.shape[2:])
    rng = state.rng
    noise = bank.offsets(rng, shape, bank_blur(params, pp)) if bank is not None else rng.randn(shape)
    return Draws(noise, rng.randint(k, (2, params.n_explore)), rng.randint(k + params.n_explore, (2, params.n_refine)))


def operator_settings(params: Params, pp: PointParams, bank: NoiseBank | None, fast: bool) -> dict:
    """The static settings of `ask` at one point (Python scalars: a compiled graph specializes on them)."""
    return dict(top_k=params.top_k, n_explore=params.n_explore, alpha=pp.alpha, boost=pp.boost,
                blur=pp.blur - (bank_blur(params, pp) if bank is not None else 0), smooth_target=params.smooth,
                fast=fast, kind=pp.kind, border=params.blur_border)


def noise_source(params: Params, pp: PointParams, pop_shape: tuple, bank: NoiseBank | None, phases: bool):
    """What `ask` reads noise from: None (the draws are the noise) or the bank the offsets index."""
    if bank is None:
        return None
    return bank.source((params.n_children, *pop_shape[2:]), bank_blur(params, pp), phases, params.blur_border)


def ask(pop, ce, source, draws: Draws, *, top_k, n_explore, alpha, boost, blur, smooth_target, fast, kind,
        border="valid"):
    """Select the top-k parents and breed explorers then refiners from them (pure: the random
    numbers come in). Returns parents, their CE, and the children (B, M, *S)."""
    parents, parent_ce, parent_std = select_parents(pop, ce, top_k, kind)
    noise = draws.noise
    if source is not None:
        noise = windows(source, noise, (noise.shape[1], *pop.shape[2:]))
    pe, pr = draws.picks_explore, draws.picks_refine
    explorers = ops.mutate(parents, parent_std, pe[:, 0], pe[:, 1], noise[:, :n_explore], alpha * boost, blur,
                           smooth_target, fast, kind, border)
    pool = torch.cat([parents, explorers], dim=1)
    pool_std = torch.cat([parent_std, ops.member_std(explorers, kind)], dim=1)
    refiners = ops.mutate(pool, pool_std, pr[:, 0], pr[:, 1], noise[:, n_explore:], alpha, blur, smooth_target, fast,
                          kind, border)
    return parents, parent_ce, torch.cat([explorers, refiners], dim=1)


def select_parents(pop, ce, top_k: int, kind: str):
    """Each image's top-k members by CE (lower is better), their kept CE, and the std that scales
    their children's noise (per channel for maps)."""
    order = parent_order(ce, top_k)
    parents = ops.gather(pop, order)
    return parents, ops.gather(ce, order), ops.member_std(parents, kind)


def parent_order(ce: torch.Tensor, top_k: int) -> torch.Tensor:
    """(B, k) indices of each image's top-k members by CE, best first: who breeds next."""
    return ce.topk(min(top_k, ce.shape[1]), dim=1, largest=False).indices


def tell(parents, parent_ce, children, children_ce):
    """The next population: parents (with their kept fitness) and the scored children."""
    return torch.cat([parents, children], dim=1), torch.cat([parent_ce, children_ce], dim=1)


def generation(score, pop, ce, labels, source, draws: Draws, **settings):
    """One generation, pure: `tell(ask(...), score(children))`. `score(children, labels)` -> (B, M) CE."""
    parents, parent_ce, children = ask(pop, ce, source, draws, **settings)
    return tell(parents, parent_ce, children, score(children, labels))


def best_index(ce: torch.Tensor) -> torch.Tensor:
    """(B,) index of each image's best member (the first of equals)."""
    return ce.argmin(dim=1)


def best(pop: torch.Tensor, ce: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's best member and its CE."""
    i = best_index(ce)
    rows = torch.arange(len(i), device=i.device)
    return pop[rows, i], ce[rows, i]
