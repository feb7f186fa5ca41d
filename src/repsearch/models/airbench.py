"""The paper's network (Appendix A.1, adapted from airbench) as a staged model.

    x -> stem (whitening) -> stages[0] -> stages[1] -> stages[2] -> head -> logits

A stage (a "block") is one pooling ConvGroup plus `depth - 1` without pooling; ConvGroup =
Conv3x3 -> MaxPool2 -> BN -> GELU -> Conv3x3 -> BN -> GELU. Widths give the number of stages.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


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


class Block(nn.Sequential):
    """One pooling ConvGroup, then (depth - 1) without pooling (the learner's extra capacity)."""

    def __init__(self, cin: int, cout: int, depth: int, bn_kw: dict):
        super().__init__(ConvGroup(cin, cout, True, bn_kw), *[ConvGroup(cout, cout, False, bn_kw) for _ in range(depth - 1)])


class Whitening(nn.Conv2d):
    """2x2 conv whose filters whiten image patches: eigenvectors / sqrt(eigenvalue + eps) and their
    negatives (2 * C * 4 filters), from the covariance of patches of training images. Its bias is
    trained at the BN biases' rate for the first `whiten_bias_epochs`, then frozen (airbench)."""
    bias_warmup_only = True

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
    """stem = whitening, stages = blocks, head = flatten + linear. `init_from_data` fits the
    whitening on training images (the staged-model contract's optional data-dependent init)."""

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, widths=(64, 64, 64), depth: int = 1,
                 *, bn_momentum: float = 0.6, bn_eps: float = 1e-12, bn_running_stats: bool = True,
                 head_scale: float = 1.0, init: str = "dirac", whiten_patches: int = 5000, whiten_eps: float = 5e-4):
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"airbench takes images (C, H, W); got input shape {tuple(in_shape)}")
        bn_kw = dict(momentum=bn_momentum, eps=bn_eps, running_stats=bn_running_stats)
        self.stem = Whitening(in_shape[0])
        chans = [self.stem.out_channels, *widths]
        self.stages = nn.ModuleList(Block(chans[i], chans[i + 1], depth, bn_kw) for i in range(len(widths)))
        c, h, w = _last_shape(in_shape, widths)
        self.head = Head(c * h * w, num_classes, head_scale)
        self.whiten_patches, self.whiten_eps = whiten_patches, whiten_eps
        if init == "dirac":
            dirac_init(self)

    def init_from_data(self, images: torch.Tensor) -> None:
        self.stem.fit(images[:self.whiten_patches].cpu(), self.whiten_eps)

    def forward(self, x):
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        return self.head(h)


def _last_shape(in_shape, widths) -> tuple[int, int, int]:
    h, w = in_shape[1] - 1, in_shape[2] - 1  # whitening: 2x2 conv, no padding
    for _ in widths:
        h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"input {tuple(in_shape)} is too small for {len(widths)} pooling blocks")
    return widths[-1], h, w


@torch.no_grad()
def dirac_init(model: nn.Module) -> None:
    """airbench's partial Dirac: keep the random init, then identity on the first in_channels
    filters. (Dirac on the whole weight would zero filters in..out, channels the search's
    std-scaled noise could then never use.)"""
    for m in model.modules():
        if isinstance(m, Conv):
            w = m.weight
            nn.init.dirac_(w[:min(w.shape[0], w.shape[1])])


def build(cfg_model, input_shape, num_classes: int, depth: int = 1, init: str = "dirac") -> Net:
    m = cfg_model
    return Net(tuple(input_shape), num_classes, tuple(m.widths), depth, bn_momentum=m.bn_momentum, bn_eps=m.bn_eps,
               bn_running_stats=m.bn_running_stats, head_scale=m.head_scale, init=init,
               whiten_patches=m.whiten_patches, whiten_eps=m.whiten_eps)
