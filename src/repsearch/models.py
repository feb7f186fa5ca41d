"""The paper's network (Appendix A.1, adapted from airbench) with its stages exposed.

    x -> whiten -> stages[0] -> stages[1] -> stages[2] -> head -> logits
                   H^(0)       H^(1)       H^(2)               H^(3)

`stages[i]` maps block i-1's output (the whitened image for i = 0) to block i's output, and
`forward_from(l, h)` runs the rest of the network from search point l: that is all the search
needs to score a candidate at l, and all the learner needs to read the blocks.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

NUM_SEARCH_POINTS = 4  # three block outputs + logits


def sample_normalize(h: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance per sample over all non-batch dims (paper A.4's normalization)."""
    flat = h.reshape(h.shape[0], -1)
    mean = flat.mean(1)
    # E[x^2] - E[x]^2: two plain reductions, ~6x faster than torch.var on CPU; safe here because
    # representations are O(1) in scale (clamped against rounding below zero).
    var = (flat * flat).mean(1) - mean * mean
    shape = (h.shape[0],) + (1,) * (h.dim() - 1)
    return (h - mean.reshape(shape)) * torch.rsqrt(var.clamp_min(0).reshape(shape) + eps)


class SampleNorm(nn.Module):
    """Parameter-free per-sample normalization: puts block outputs in the space the search uses."""

    def forward(self, h):
        return sample_normalize(h)


class BatchNorm(nn.BatchNorm2d):
    """airbench's BatchNorm: weight frozen at 1, bias trained, momentum in airbench's convention."""

    def __init__(self, channels: int, momentum: float = 0.6, eps: float = 1e-12, running_stats: bool = True):
        super().__init__(channels, eps=eps, momentum=1 - momentum, track_running_stats=running_stats)
        self.weight.requires_grad = False


class Conv(nn.Conv2d):
    """3x3 same-padding conv without bias; `is_identity` lets the search skip Dirac-square convs."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, kernel_size=3, padding=1, bias=False)
        self.is_identity = False

    def forward(self, x):
        return x if self.is_identity else super().forward(x)

    def check_identity(self) -> bool:
        w = self.weight
        if w.shape[0] != w.shape[1]:
            self.is_identity = False
        else:
            eye = torch.zeros_like(w)
            nn.init.dirac_(eye)
            self.is_identity = bool(torch.equal(w, eye))
        return self.is_identity


class MaxPool2(nn.Module):
    """2x2 max pooling (floor mode). On CPU, the max of four strided slices: the same values as
    F.max_pool2d, several times faster on NCHW tensors (measured in benchmarks/search.py)."""

    def forward(self, x):
        if x.device.type != "cpu":
            return F.max_pool2d(x, 2)
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        x = x[..., :h, :w]
        return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                             torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


class ConvGroup(nn.Module):
    """Conv3x3 -> [MaxPool2] -> BN -> GELU -> Conv3x3 -> BN -> GELU (pool only in a block's first group)."""

    def __init__(self, cin: int, cout: int, pool: bool, bn_kw: dict):
        super().__init__()
        self.conv1, self.conv2 = Conv(cin, cout), Conv(cout, cout)
        self.pool = MaxPool2() if pool else nn.Identity()
        self.norm1, self.norm2 = BatchNorm(cout, **bn_kw), BatchNorm(cout, **bn_kw)

    def forward(self, x):
        return self.after_pool(self.pool(self.conv1(x)))

    def after_pool(self, x):
        """The group from its first BatchNorm on (what follows conv1 and the pool)."""
        x = F.gelu(self.norm1(x))
        return F.gelu(self.norm2(self.conv2(x)))


def make_block(cin: int, cout: int, groups: int, bn_kw: dict) -> nn.Sequential:
    """One pooling ConvGroup, then (groups - 1) without pooling (the learner's extra capacity)."""
    return nn.Sequential(ConvGroup(cin, cout, True, bn_kw), *[ConvGroup(cout, cout, False, bn_kw) for _ in range(groups - 1)])


class Whitening(nn.Conv2d):
    """2x2 conv whose filters whiten image patches: eigenvectors / sqrt(eigenvalue + eps) and their
    negatives (2 * C * 4 filters), from the covariance of patches of training images."""

    def __init__(self, in_channels: int):
        super().__init__(in_channels, 2 * in_channels * 4, kernel_size=2, padding=0, bias=True)
        self.weight.requires_grad = False

    @torch.no_grad()
    def fit(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        c = images.shape[1]
        patches = F.unfold(images.float(), kernel_size=2).transpose(1, 2).reshape(-1, c * 4)
        mean = patches.mean(0)
        centered = patches - mean
        cov = centered.T @ centered / len(centered)
        eigval, eigvec = torch.linalg.eigh(cov.double())
        filters = (eigvec.T / torch.sqrt(eigval.clamp_min(0)[:, None] + eps)).float()  # rows: whitening directions
        w = torch.cat([filters, -filters]).reshape(-1, c, 2, 2)
        self.weight.copy_(w.to(self.weight))
        # Unfold orders features (c, kh, kw), matching the conv weight layout; bias centers outputs.
        self.bias.copy_((-(w.reshape(len(w), -1) @ mean.to(w))).to(self.bias))


class Head(nn.Module):
    """Flatten the last block (no final pool, as the paper) -> linear, scaled."""

    def __init__(self, features: int, num_classes: int, scale: float):
        super().__init__()
        self.linear = nn.Linear(features, num_classes, bias=False)
        self.scale = scale

    def forward(self, h):
        return self.linear(h.flatten(1)) * self.scale


class Net(nn.Module):
    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, widths=(64, 64, 64), groups_per_block: int = 1,
                 *, bn_momentum: float = 0.6, bn_eps: float = 1e-12, bn_running_stats: bool = True,
                 head_scale: float = 1.0, normalize_outputs: bool = False, init: str = "dirac"):
        super().__init__()
        c, h, w = in_shape
        bn_kw = dict(momentum=bn_momentum, eps=bn_eps, running_stats=bn_running_stats)
        self.whiten = Whitening(c)
        chans = [self.whiten.out_channels, *widths]
        self.normalize_outputs = normalize_outputs
        self.stages = nn.ModuleList(
            nn.Sequential(make_block(chans[i], chans[i + 1], groups_per_block, bn_kw), *([SampleNorm()] if normalize_outputs else []))
            for i in range(3))
        self.shapes = self._stage_shapes(in_shape)
        self.head = Head(int(torch.tensor(self.shapes[-1]).prod()), num_classes, head_scale)
        self.shapes.append((num_classes,))
        self.num_classes = num_classes
        if init == "dirac":
            self.dirac_init()

    @torch.no_grad()
    def _stage_shapes(self, in_shape) -> list[tuple[int, ...]]:
        c, h, w = in_shape
        h, w = h - 1, w - 1  # whitening: 2x2 conv, no padding
        shapes = []
        for width in [s[0][0].conv1.out_channels for s in self.stages]:
            h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(f"input {in_shape} is too small for three pooling blocks")
            shapes.append((width, h, w))
        return shapes

    @torch.no_grad()
    def dirac_init(self) -> None:
        """airbench's partial Dirac: keep the random init, then identity on the first in_channels
        filters. (Dirac on the whole weight would zero filters in..out, channels the search's
        std-scaled noise could then never use.)"""
        for m in self.modules():
            if isinstance(m, Conv):
                w = m.weight
                n = min(w.shape[0], w.shape[1])
                nn.init.dirac_(w[:n])

    def mark_identity_convs(self) -> int:
        """Flag exactly-identity convs so forward skips them; returns how many were found."""
        return sum(m.check_identity() for m in self.modules() if isinstance(m, Conv))

    def clear_identity_convs(self) -> None:
        for m in self.modules():
            if isinstance(m, Conv):
                m.is_identity = False

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.whiten(x)

    def forward_from(self, layer: int, h: torch.Tensor, phases: bool = False) -> torch.Tensor:
        """Logits from the representation `h` at search point `layer` (0-2 blocks, 3 logits).

        With `phases`, h's pixels are in `pool_phase_order` (a search-only layout, see there) and
        the next stage's first conv must be an identity: its 2x2 pool is then a max over four
        contiguous planes instead of a strided gather."""
        start = layer + 1
        if phases:
            h = self._stage_from_pooled(start, phase_max_pool(h))
            start += 1
        for stage in self.stages[start:]:
            h = stage(h)
        return h if layer == 3 else self.head(h)

    def phases_allowed(self, layer: int) -> bool:
        """Whether `forward_from(layer, h, phases=True)` applies: a block output followed by a
        stage whose first conv is an identity (the fast path's `mark_identity_convs`)."""
        return layer + 1 < len(self.stages) and self.stages[layer + 1][0][0].conv1.is_identity

    def _stage_from_pooled(self, i: int, pooled: torch.Tensor) -> torch.Tensor:
        if not self.phases_allowed(i - 1):
            raise ValueError(f"stage {i}'s first conv is not a marked identity: phase-ordered input needs one")
        block, *post = self.stages[i]
        first, *groups = block
        h = first.after_pool(pooled)
        for module in (*groups, *post):
            h = module(h)
        return h

    def representations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[H^(0), H^(1), H^(2), logits] for a batch of images."""
        h = self.stem(x)
        out = []
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        out.append(self.head(h))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(-1, self.stem(x))


def pool_phase_order(h: int, w: int) -> torch.Tensor:
    """A pixel order for an h x w map in which 2x2 max pooling (floor mode) is a max over four
    contiguous planes: the pixels at (even, even), (even, odd), (odd, even), (odd, odd) offsets of
    the pooled grid, then the pixels pooling drops (odd last row/column).

    The search's mutation is elementwise per channel and its statistics (channel std, per-sample
    normalization) ignore pixel order, so a population can live in this order while its noise is
    pre-smoothed in the true order: scoring then skips the strided gather of the pool."""
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


def build_net(cfg_model, in_shape, num_classes, groups_per_block=1, normalize_outputs=False, init="dirac") -> Net:
    m = cfg_model
    return Net(in_shape, num_classes, tuple(m.widths), groups_per_block, bn_momentum=m.bn_momentum, bn_eps=m.bn_eps,
               bn_running_stats=m.bn_running_stats, head_scale=m.head_scale, normalize_outputs=normalize_outputs,
               init=init)


def forward_flops(net: nn.Module, in_shape, device="cpu") -> int:
    """FLOPs of one image's forward pass (multiply-adds count 2), by PyTorch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.zeros(1, *in_shape, device=device)
    was_training = net.training
    net.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x)
    net.train(was_training)
    return int(counter.get_total_flops())
