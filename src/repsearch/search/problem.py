"""The search problem: score candidate representations at a search point of a staged model.

A candidate at point l is scored by running the rest of the model from l (`forward_from`) and
taking the cross-entropy with the image's label (the network itself is made ready for search
by `network`).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from repsearch.models.staged import forward_from

from . import fastpaths


class StagedProblem:
    """Candidates at search point `point` -> their cross-entropy, through the rest of `model`."""

    def __init__(self, model: nn.Module, shapes: list[tuple], max_rows: int = 4096, precision: str = "fp32"):
        """`precision="bf16"`: candidates are scored under bfloat16 autocast (convolutions and
        matmuls in bf16; per-sample statistics and the cross-entropy stay fp32)."""
        self.model, self.shapes, self.max_rows, self.precision = model, list(shapes), max_rows, precision

    @property
    def num_points(self) -> int:
        return len(self.shapes)

    def logits_from(self, point: int, h: torch.Tensor, phases: bool = False) -> torch.Tensor:
        if phases:
            return fastpaths.forward_from_phases(self.model, point, h)
        return forward_from(self.model, point, h)

    def score(self, point: int, cands: torch.Tensor, labels: torch.Tensor, phases: bool = False) -> torch.Tensor:
        """cands (B, M, *S), labels (B,) -> CE (B, M), in row blocks of at most `max_rows`.
        `phases`: maps in pooling-phase pixel order (`fastpaths`)."""
        b, m = cands.shape[:2]
        flat, y = cands.reshape(b * m, *cands.shape[2:]), labels.repeat_interleave(m)
        with torch.autocast(cands.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            logits = [self.logits_from(point, flat[i:i + self.max_rows], phases) for i in range(0, b * m, self.max_rows)]
        parts = [F.cross_entropy(z.float(), y[i * self.max_rows:(i + 1) * self.max_rows], reduction="none")
                 for i, z in enumerate(logits)]
        return (parts[0] if len(parts) == 1 else torch.cat(parts)).reshape(b, m)

    def enter(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs (N, *input) -> their representation at search point 0."""
        return self.model.stages[0](self.model.stem(x))

    def advance(self, point: int, h: torch.Tensor) -> torch.Tensor:
        """The representation at `point` from one at `point - 1` (a stage, or the head for the logits)."""
        return self.model.stages[point](h) if point < len(self.model.stages) else self.model.head(h)
