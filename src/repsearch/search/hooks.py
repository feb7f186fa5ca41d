"""What the search loop tells the outside world, as hooks (EvoTorch's habit): progress, curves,
timings and logging are objects the engine calls, never arguments threaded through it.

A hook may define any of:
    point_start(point, state, real)             a search point begins (its initial population scored)
    generation_end(point, gen, state, active, real, children)   after each generation
    point_end(point, best_ce, real)             a search point is done
`real` is the number of real images (rows past it are padding); `active` the (B,) mask of images
that searched in this generation; `children` the children each active image had scored. Under
`engine.fused`, `state.pop` holds only the members the search reads again (parents, explorers, the
next parents and the best); read `state.ce` for the whole population.
"""
from __future__ import annotations

import time

from repsearch.events import progress_bar


class ChunkRecorder:
    """Per search point: the sum over real images of the best and mean population CE per
    generation, the wall time, and the evaluations spent (what a cache's chunk record keeps)."""

    def __init__(self, n_children: int):
        self.n_children = n_children
        self.curves, self.seconds, self.evaluations = {}, [], []

    def point_start(self, point, state, real):
        self._t0, self._evals = time.time(), state.pop.shape[1] * real
        self._curve = {"best_sum": [], "mean_sum": [], "count": real}
        self.curves[point] = self._curve
        self._record(state, real)

    def generation_end(self, point, gen, state, active, real, children):
        self._evals += int(active[:real].sum()) * children
        self._record(state, real)

    def point_end(self, point, best_ce, real):
        self.seconds.append(time.time() - self._t0)
        self.evaluations.append(self._evals)

    def padded_curves(self, budgets: list[int]) -> dict:
        """Curves with points that stopped early (adaptive) repeating their last value up to the
        full budget, keyed by str(point): every chunk's curves then have the same length and sum."""
        out = {}
        for point, c in self.curves.items():
            n = budgets[point] + 1
            out[str(point)] = {k: (v + [v[-1]] * (n - len(v)) if isinstance(v, list) else v) for k, v in c.items()}
        return out

    def _record(self, state, real):
        ce = state.ce[:real]
        self._curve["best_sum"].append(ce.min(1).values.sum().item())
        self._curve["mean_sum"].append(ce.mean(1).sum().item())


class Progress:
    """A tqdm bar over candidate evaluations, described by chunk, point and generation."""

    def __init__(self, total: int, enabled: bool = True):
        self.bar = progress_bar(enabled, total=total, desc="search", unit="eval", unit_scale=True)
        self.chunk = ""

    def generation_end(self, point, gen, state, active, real, children):
        self.bar.set_description(f"search {self.chunk}point {point} gen {gen + 1}")
        self.bar.update(int(active[:real].sum()) * children)

    def close(self):
        self.bar.close()
