"""Search operators (paper Section 3.1, Appendix A.4), vectorized over images and candidates.

Tensors carry a leading (image, candidate) pair of dims: a population is (B, P, *S) where S is
(C, H, W) for a block output and (K,) for logits. Nothing here loops over individuals.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .models import sample_normalize, to_phases


class PerImageRNG:
    """One random stream per image, seeded from (seed, dataset index of the image).

    An image's search then depends only on its own stream: its result is the same whichever
    other images share its batch or chunk, and a resumed search redraws exactly what it lost.
    """

    def __init__(self, seed: int, image_ids, device="cpu", pad: int = 0):
        """`pad` throwaway streams follow the images' own (for padding rows: see `subset`)."""
        self.device = torch.device(device)
        self.generators = [torch.Generator(device=self.device).manual_seed(int(seed) * 1_000_003 + int(i) * 7919 + 17)
                           for i in list(image_ids)] + self._throwaway(pad)

    def subset(self, rows: torch.Tensor, pad: int = 0) -> "PerImageRNG":
        """The streams of `rows`, plus `pad` throwaway streams for padding rows (so padding never
        advances a real image's stream)."""
        sub = PerImageRNG.__new__(PerImageRNG)
        sub.device, sub.generators = self.device, [self.generators[int(r)] for r in rows.tolist()]
        sub.generators += sub._throwaway(pad)
        return sub

    def _throwaway(self, n: int) -> list:
        return [torch.Generator(device=self.device).manual_seed(2**62 + i) for i in range(n)]

    def randn(self, shape: tuple, out: torch.Tensor | None = None) -> torch.Tensor:
        if out is None:
            out = torch.empty((len(self.generators), *shape), device=self.device)
        for b, g in enumerate(self.generators):
            torch.randn(shape, generator=g, out=out[b], device=self.device)
        return out

    def randint(self, high: int, shape: tuple) -> torch.Tensor:
        out = torch.empty((len(self.generators), *shape), dtype=torch.int64, device=self.device)
        for b, g in enumerate(self.generators):
            torch.randint(high, shape, generator=g, out=out[b], device=self.device)
        return out


_BANKS: dict = {}


class NoiseBank:
    """Fast-path noise: one large bank of standard normals drawn once; each child's noise is a
    window of it at an offset drawn from the image's own stream. Copying a window costs ~1/15 of
    drawing fresh normals on CPU. Two children share numbers only if their windows overlap (rare
    in a 2^24 bank, and then shifted, so elementwise independent); `search.fast=false` draws fresh
    noise instead."""

    def __init__(self, seed: int, size: int = 1 << 24, device="cpu"):
        g = torch.Generator(device=device).manual_seed(int(seed) + 99991)
        self.bank = torch.randn(size, generator=g, device=device)
        self._smoothed: dict = {}

    def draw(self, rng: "PerImageRNG", shape: tuple, blur: int = 0, phases: bool = False) -> torch.Tensor:
        """(B, M, *S) normals: M windows per image, each of prod(S) numbers.

        With blur > 0 (conv maps only) the windows come from a copy of the bank smoothed once as
        H x W maps, at map-aligned offsets: the same as smoothing each child's noise afterwards,
        since smoothing is linear and acts per map (channel scaling commutes with it). With
        `phases` (blurred maps only) each smoothed map's pixels come in `pool_phase_order`."""
        return windows(self.source(shape, blur, phases), self.offsets(rng, shape, blur), shape)

    def source(self, shape: tuple, blur: int = 0, phases: bool = False) -> torch.Tensor:
        """The bank that windows of `shape` (M, *S) are read from: flat, or for blurred maps
        pre-smoothed and viewed as rows of one map each (windows then start at map boundaries, and
        a compiled consumer reads each row with vector loads), optionally in pooling-phase order."""
        if blur > 0 and len(shape) == 4:
            return self._smoothed_bank(shape[2], shape[3], blur, phases).reshape(-1, shape[2] * shape[3])
        if phases:
            raise ValueError("phase-ordered noise needs map-aligned windows (blurred conv maps)")
        return self.bank

    def offsets(self, rng: "PerImageRNG", shape: tuple, blur: int = 0) -> torch.Tensor:
        """(B, M) start offsets of the windows, from each image's own stream: elements of the flat
        bank, or for blurred maps whole maps (rows of `source`)."""
        m, n = shape[0], math.prod(shape[1:])
        if blur > 0 and len(shape) == 4:
            maps_per_window = n // (shape[2] * shape[3])
            return rng.randint(len(self.source(shape, blur)) - maps_per_window + 1, (m,))
        return rng.randint(len(self.bank) - n, (m,))

    @classmethod
    def shared(cls, seed: int, device="cpu") -> "NoiseBank":
        """One bank per (seed, device) per process: chunks reuse it instead of redrawing it."""
        key = (int(seed), str(device))
        if key not in _BANKS:
            _BANKS.clear()
            _BANKS[key] = cls(seed, device=device)
        return _BANKS[key]

    def _smoothed_bank(self, h: int, w: int, blur: int, phases: bool = False) -> torch.Tensor:
        key = (h, w, blur, phases)
        if key not in self._smoothed:
            if phases:
                self._smoothed[key] = to_phases(self._smoothed_bank(h, w, blur).reshape(-1, h, w)).reshape(-1)
            else:
                maps = self.bank[: len(self.bank) // (h * w) * h * w].reshape(-1, 1, h, w)
                self._smoothed[key] = smooth(maps, blur).reshape(-1)
        return self._smoothed[key]


def windows(source: torch.Tensor, offsets: torch.Tensor, shape: tuple) -> torch.Tensor:
    """(B, M) offsets into a bank -> (B, M, *S) windows of prod(S) consecutive numbers. A 2-D
    bank is read in whole rows (offsets count rows)."""
    n = math.prod(shape[1:])
    if source.dim() == 2:
        rows = offsets[..., None] + torch.arange(n // source.shape[1], device=source.device)
        return source.index_select(0, rows.flatten()).reshape(offsets.shape[0], *shape)
    if torch.compiler.is_compiling():  # one indirect load that the compiler fuses into its consumer
        return source[offsets[..., None] + torch.arange(n, device=source.device)].reshape(offsets.shape[0], *shape)
    return source.unfold(0, n, 1).index_select(0, offsets.flatten()).reshape(offsets.shape[0], *shape)


def gather(pop: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """pop (B, P, ...), idx (B, M) -> (B, M, ...): per-image selection of candidates."""
    rows = torch.arange(pop.shape[0], device=pop.device)[:, None]
    return pop[rows, idx]


def channel_std(pop: torch.Tensor) -> torch.Tensor:
    """Per-(image, candidate, channel) std over space: (B, P, C, H, W) -> (B, P, C).

    A 1x1 map has no spatial spread (its channel std is 0 and the search would stall), so there
    every channel takes the std across channels instead.
    """
    if pop.shape[-1] * pop.shape[-2] == 1:
        return _std(pop.flatten(2), 2, keepdim=True).expand(*pop.shape[:3])
    return _std(pop.flatten(3), 3)


def _std(x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
    """Population std as sqrt(E[x^2] - E[x]^2): plain reductions, much faster than torch.std on CPU."""
    mean = x.mean(dim, keepdim=keepdim)
    return ((x * x).mean(dim, keepdim=keepdim) - mean * mean).clamp_min(0).sqrt()


def logit_std(pop: torch.Tensor) -> torch.Tensor:
    """Per-(image, candidate) std across classes: (B, P, K) -> (B, P)."""
    return _std(pop, 2)


def member_std(pop: torch.Tensor) -> torch.Tensor:
    return channel_std(pop) if pop.dim() == 5 else logit_std(pop)


def crossover(pop: torch.Tensor, i1: torch.Tensor, i2: torch.Tensor) -> torch.Tensor:
    """Mean of two parents (A.4)."""
    return 0.5 * (gather(pop, i1) + gather(pop, i2))


def smooth(t: torch.Tensor, passes: int, fast: bool = True) -> torch.Tensor:
    """Repeated 3x3 average pooling, stride 1, padded; borders average over valid pixels only.

    The 3x3 box with valid-pixel counts is separable (count = rows x cols), so `passes` of it are
    exactly M_h X M_w^T with M = A^passes for the 1-D averaging matrix A: two small matmuls instead
    of `passes` pooling sweeps (the fast path; `fast=False` runs the pooling itself).
    """
    if passes <= 0:
        return t
    shape = t.shape
    if fast:
        mh = _smoothing_matrix(shape[-2], passes, t.device, t.dtype)
        mw = _smoothing_matrix(shape[-1], passes, t.device, t.dtype)
        if shape[-1] * shape[-2] <= 256:  # small maps: one GEMM with kron(M_h, M_w)
            k = torch.kron(mh, mw)
            return (t.reshape(-1, shape[-2] * shape[-1]) @ k.T).reshape(shape)
        return torch.matmul(torch.matmul(mh, t), mw.T)
    x = t.reshape(-1, *shape[-3:])
    for _ in range(passes):
        x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return x.reshape(shape)


_SMOOTHING: dict = {}


def _smoothing_matrix(n: int, passes: int, device, dtype) -> torch.Tensor:
    key = (n, passes, str(device), dtype)
    if key not in _SMOOTHING:
        a = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            lo, hi = max(0, i - 1), min(n, i + 2)
            a[i, lo:hi] = 1.0 / (hi - lo)
        _SMOOTHING[key] = torch.linalg.matrix_power(a, passes).to(device=device, dtype=dtype)
    return _SMOOTHING[key]


def mutate_conv(pop, std, i1, i2, noise, alpha: float, blur: int, smooth_target: str = "noise",
                fast: bool = True) -> torch.Tensor:
    """Crossover + channel-scaled Gaussian noise + spatial smoothing + per-sample normalization.

    noise: standard normal (B, M, C, H, W). The noise std per (image, child, channel) is alpha x
    the mean of the two parents' channel std. `smooth_target` says what is blurred: "noise" (the
    default: the parent's content stays sharp) or "child" (the whole mutated tensor).
    """
    child = perturb_conv(pop, std, i1, i2, noise, alpha, blur, smooth_target, fast)
    b, m = child.shape[:2]
    return sample_normalize(child.reshape(b * m, *child.shape[2:])).reshape(child.shape)


def perturb_conv(pop, std, i1, i2, noise, alpha, blur, smooth_target="noise", fast=True) -> torch.Tensor:
    """mutate_conv before its normalization: crossover + scaled noise + smoothing."""
    child = crossover(pop, i1, i2)
    sigma = 0.5 * (gather(std, i1) + gather(std, i2))
    eps = noise * (alpha * sigma)[..., None, None]
    return child + smooth(eps, blur, fast) if smooth_target == "noise" else smooth(child + eps, blur, fast)


def mutate_logits(pop, std, i1, i2, noise, alpha: float) -> torch.Tensor:
    """Crossover + element-wise noise scaled by the parents' std across classes, then recentered."""
    child = crossover(pop, i1, i2)
    sigma = 0.5 * (gather(std, i1) + gather(std, i2))
    child = child + noise * (alpha * sigma)[..., None]
    return child - child.mean(dim=-1, keepdim=True)


def mutate(pop, std, i1, i2, noise, alpha, blur, smooth_target, fast=True):
    if pop.dim() == 5:
        return mutate_conv(pop, std, i1, i2, noise, alpha, blur, smooth_target, fast)
    return mutate_logits(pop, std, i1, i2, noise, alpha)
