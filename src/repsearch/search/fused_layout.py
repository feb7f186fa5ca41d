"""Where the fused kernel's first pass puts a child's pooled values (`fused_kernel`, pass 1): plain
index tables, built once per map shape on the host, so the kernel pools twice by elementwise max."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch


def pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def leftover_pixels(h: int, w: int) -> torch.Tensor:
    """The pixels no 2x2 pooling window (floor mode) covers: an odd last row and column."""
    covered = torch.zeros(h, w, dtype=torch.bool)
    covered[: h // 2 * 2, : w // 2 * 2] = True
    return (~covered).flatten().nonzero().squeeze(1)


@dataclass(frozen=True)
class Layout:
    """Where pass 1 puts the first pool's outputs (H//2 x W//2 positions) in buf1: with two downstream
    stages, four groups of G_PAD slots, group (dy, dx) holding the positions (2i + dy, 2j + dx) of the
    second pool's window (i, j), so that pool is a max over groups; then the positions no second-pool
    window covers (all of them with one stage). -1 marks padding."""
    slots: torch.Tensor
    groups: int
    group_pad: int
    rest_pad: int
    left: torch.Tensor  # the child's pixels no first-pool window covers


@lru_cache(maxsize=None)
def layout(h: int, w: int, n_stages: int, device: str = "cpu") -> Layout:
    """The layout of an H x W point with `n_stages` downstream stages, its tables on `device` (built
    once per process: a launch does not copy them again)."""
    h1, w1 = h // 2, w // 2
    groups, rest = [], list(range(h1 * w1)) if n_stages else []
    if n_stages == 2:
        h2, w2 = h1 // 2, w1 // 2
        groups = [[(2 * i + dy) * w1 + 2 * j + dx for i in range(h2) for j in range(w2)]
                  for dy in range(2) for dx in range(2)]
        covered = {p for g in groups for p in g}
        rest = [p for p in range(h1 * w1) if p not in covered]
    g_pad, r_pad = pow2(max(1, len(groups[0]) if groups else 1)), pow2(max(1, len(rest)))
    slots = [p for g in groups for p in g + [-1] * (g_pad - len(g))] + rest + [-1] * (r_pad - len(rest))
    left = leftover_pixels(h, w) if n_stages else torch.zeros(0, dtype=torch.int64)
    return Layout(torch.tensor(slots, dtype=torch.int32, device=device), len(groups), g_pad, r_pad, left.to(device))
