"""The in-memory search driver: every caller that searches images goes through a `Searcher`.

A `Searcher` is the problem (the search network, scoring candidates), the strategy's `Params`,
the engine's settings and the seed. It searches one chunk (`search_chunk`), or any number of
images in chunks of the engine's size (`search_all`), so that the CLI's target cache, the Python
API and every study honour `engine.*` alike. Each image's result depends only on its own random
stream (seed, image id), never on how the images were chunked.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .engine import ChunkResult, chunk_size, search_images
from .hooks import ChunkRecorder
from .problem import StagedProblem
from .strategy import Params


@dataclass
class Found:
    """What a search found for every image: the best representation at every point (logits last)."""
    reps: list[torch.Tensor] | None  # (N, *S) per search point; None when not kept
    ce: torch.Tensor  # (N,) final best cross-entropy
    evaluations: torch.Tensor  # (N,) candidate evaluations spent per image
    curves: dict = field(default_factory=dict)  # per point: mean best CE per generation


class Searcher:
    def __init__(self, problem: StagedProblem, params: Params, engine, seed: int, device: str = "cpu"):
        self.problem, self.params, self.engine, self.seed = problem, params, engine, seed
        self.chunk = chunk_size(problem.shapes, params, engine, str(device))

    @property
    def budgets(self) -> list[int]:
        return [p.budget for p in self.params.points]

    def search_chunk(self, x, y, ids, hooks=(), start=None, pad_to: int | None = None) -> ChunkResult:
        """One chunk through every search point (`engine.search_images`); a short chunk is padded
        to `pad_to` (default: the engine's chunk) where compiled graphs want one batch size."""
        return search_images(self.problem, x, y, list(ids), self.params, self.engine, self.seed, hooks=hooks,
                             pad_to=self.chunk if pad_to is None else pad_to, start=start)

    def search_all(self, n: int, load, hooks=(), keep_reps: bool = True, to_cpu: bool = False) -> Found:
        """Search n images in chunks; `load(a, b)` -> (x, y, ids, start or None) of images a..b-1,
        on the search's device. `to_cpu`: gather results on the CPU (bounded device memory)."""
        reps, ces, evals, curves = [], [], [], []
        for a in range(0, n, self.chunk):
            x, y, ids, start = load(a, min(n, a + self.chunk))
            recorder = ChunkRecorder(self.params.n_children)
            res = self.search_chunk(x, y, ids, hooks=(recorder, *hooks), start=start)
            move = (lambda t: t.cpu()) if to_cpu else (lambda t: t)
            if keep_reps:
                reps.append([move(r) for r in res.reps])
            ces.append(move(res.ce))
            evals.append(move(res.evaluations))
            curves.append(recorder.padded_curves(self.budgets))
        points = range(self.problem.num_points)
        mean_best = {p: [sum(v) / n for v in zip(*(c[str(p)]["best_sum"] for c in curves))] for p in points}
        return Found([torch.cat([r[p] for r in reps]) for p in points] if keep_reps else None, torch.cat(ces),
                     torch.cat(evals), mean_best)
