"""Exact accelerations of the search that a model qualifies for by a check, never by assumption.

- **Identity convs**: a module with `check_identity()` (airbench's `Conv`) whose weight is exactly
  the Dirac identity is skipped in the forward pass (`mark_identity_modules`).
- **Pooling-phase layout**: a search point's maps can be stored with their pixels in
  `pool_phase_order` when the next stage opens with an identity conv and a 2x2 max pool
  (airbench's `Block`): scoring then pools by a max over four contiguous planes instead of a
  strided gather. The mutation is elementwise per channel and its statistics ignore pixel order,
  so the search is the same up to float summation order (docs/performance.md).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from repsearch.models.airbench import Block
from repsearch.models.staged import forward_from


def mark_identity_modules(model: nn.Module, on: bool = True) -> int:
    """Flag (or with on=False unflag) exactly-identity modules so forward skips them; returns the count."""
    count = 0
    for m in model.modules():
        if hasattr(m, "check_identity"):
            count += bool(m.check_identity()) if on else 0
            if not on:
                m.is_identity = False
    return count


def _opening_block(stage: nn.Module) -> tuple[Block | None, list]:
    """The airbench Block a stage opens with, and the modules after it (e.g. a SampleNorm)."""
    if isinstance(stage, Block):
        return stage, []
    if isinstance(stage, nn.Sequential) and len(stage) and isinstance(stage[0], Block):
        return stage[0], list(stage)[1:]
    return None, []


def phases_allowed(model: nn.Module, point: int) -> bool:
    """Whether search point `point` may keep its maps in pooling-phase order: a stage output
    followed by a stage that opens with a marked-identity conv and a 2x2 pool."""
    if point + 1 >= len(model.stages):
        return False
    block, _ = _opening_block(model.stages[point + 1])
    return block is not None and block[0].conv1.is_identity and not isinstance(block[0].pool, nn.Identity)


def forward_from_phases(model: nn.Module, point: int, h: torch.Tensor) -> torch.Tensor:
    """`staged.forward_from` for maps whose pixels are in `pool_phase_order`."""
    if not phases_allowed(model, point):
        raise ValueError(f"stage {point + 1} does not open with a marked identity conv and a pool: "
                         "phase-ordered input needs one")
    block, post = _opening_block(model.stages[point + 1])
    first, *groups = block
    h = first.after_pool(phase_max_pool(h))
    for module in (*groups, *post):
        h = module(h)
    return forward_from(model, point + 1, h)


def pool_phase_order(h: int, w: int) -> torch.Tensor:
    """A pixel order for an h x w map in which 2x2 max pooling (floor mode) is a max over four
    contiguous planes: the pixels at (even, even), (even, odd), (odd, even), (odd, odd) offsets of
    the pooled grid, then the pixels pooling drops (odd last row/column)."""
    idx = torch.arange(h * w).reshape(h, w)
    ph, pw = h // 2 * 2, w // 2 * 2
    planes = [idx[dy:ph:2, dx:pw:2].reshape(-1) for dy in (0, 1) for dx in (0, 1)]
    dropped = torch.ones(h * w, dtype=torch.bool)
    dropped[torch.cat(planes)] = False
    return torch.cat(planes + [idx.reshape(-1)[dropped]])


def phase_max_pool(h: torch.Tensor) -> torch.Tensor:
    """2x2 max pooling of (N, C, H, W) maps whose pixels are in `pool_phase_order`."""
    n, c, hh, ww = h.shape
    q = (hh // 2) * (ww // 2)
    return h.reshape(n, c, hh * ww)[..., :4 * q].reshape(n, c, 4, q).amax(2).reshape(n, c, hh // 2, ww // 2)


def to_phases(h: torch.Tensor) -> torch.Tensor:
    """(..., H, W) maps -> the same maps with pixels in `pool_phase_order` (shape kept)."""
    order = pool_phase_order(h.shape[-2], h.shape[-1]).to(h.device)
    return h.flatten(-2)[..., order].reshape(h.shape)


def from_phases(h: torch.Tensor) -> torch.Tensor:
    """Inverse of `to_phases`."""
    inverse = pool_phase_order(h.shape[-2], h.shape[-1]).argsort().to(h.device)
    return h.flatten(-2)[..., inverse].reshape(h.shape)
