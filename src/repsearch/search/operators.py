"""Search operators (paper Section 3.1, Appendix A.4), vectorized over images and candidates.

Tensors carry a leading (image, candidate) pair of dims: a population is (B, P, *S). What an
operator does depends on the search point's kind (`models.staged.point_kind`), never on a
tensor's rank alone:
  - "map" (S = C, H, W): noise scaled per channel by the parents' spatial std, optionally
    smoothed over space, then per-sample normalization;
  - "vector" (any other stage output, e.g. an MLP's (D,)): noise scaled by the parents' std over
    all elements (what a map's 1x1 channels get), no smoothing, per-sample normalization;
  - "logits" (K,): noise scaled by the std across classes, then recentred (softmax is
    shift-invariant), not normalized.
Nothing here loops over individuals.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from repsearch.models.staged import sample_normalize


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


def vector_std(pop: torch.Tensor) -> torch.Tensor:
    """Per-(image, candidate) std over all elements of a vector representation: (B, P, *S) -> (B, P)."""
    return _std(pop.flatten(2), 2)


def member_std(pop: torch.Tensor, kind: str) -> torch.Tensor:
    """The std that scales each member's noise: per channel for maps, per member otherwise."""
    return {"map": channel_std, "vector": vector_std, "logits": logit_std}[kind](pop)


def crossover(pop: torch.Tensor, i1: torch.Tensor, i2: torch.Tensor) -> torch.Tensor:
    """Mean of two parents (A.4)."""
    return 0.5 * (gather(pop, i1) + gather(pop, i2))


def smooth(t: torch.Tensor, passes: int, fast: bool = True, border: str = "valid") -> torch.Tensor:
    """Repeated 3x3 average pooling, stride 1, padded. `border="valid"` (default): border pixels
    average over the valid pixels only; `"zero"`: the padding counts as zeros (PyTorch's default
    `count_include_pad`, the paper's "average pooling with padding" read literally), which damps
    the noise at the borders.

    Either box is separable (count = rows x cols, or always 3 x 3), so `passes` of it are
    exactly M_h X M_w^T with M = A^passes for the 1-D averaging matrix A: two small matmuls instead
    of `passes` pooling sweeps (the fast path; `fast=False` runs the pooling itself).
    """
    if passes <= 0:
        return t
    shape = t.shape
    if fast:
        mh = _smoothing_matrix(shape[-2], passes, t.device, t.dtype, border)
        mw = _smoothing_matrix(shape[-1], passes, t.device, t.dtype, border)
        if shape[-1] * shape[-2] <= 256:  # small maps: one GEMM with kron(M_h, M_w)
            k = torch.kron(mh, mw)
            return (t.reshape(-1, shape[-2] * shape[-1]) @ k.T).reshape(shape)
        return torch.matmul(torch.matmul(mh, t), mw.T)
    x = t.reshape(-1, *shape[-3:])
    for _ in range(passes):
        x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=border == "zero")
    return x.reshape(shape)


_SMOOTHING: dict = {}


def _smoothing_matrix(n: int, passes: int, device, dtype, border: str = "valid") -> torch.Tensor:
    key = (n, passes, str(device), dtype, border)
    if key not in _SMOOTHING:
        a = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            lo, hi = max(0, i - 1), min(n, i + 2)
            a[i, lo:hi] = 1.0 / (hi - lo if border == "valid" else 3)
        _SMOOTHING[key] = torch.linalg.matrix_power(a, passes).to(device=device, dtype=dtype)
    return _SMOOTHING[key]


def mutate_conv(pop, std, i1, i2, noise, alpha: float, blur: int, smooth_target: str = "noise",
                fast: bool = True, border: str = "valid") -> torch.Tensor:
    """Crossover + channel-scaled Gaussian noise + spatial smoothing + per-sample normalization.

    noise: standard normal (B, M, C, H, W). The noise std per (image, child, channel) is alpha x
    the mean of the two parents' channel std. `smooth_target` says what is blurred: "noise" (the
    default: the parent's content stays sharp) or "child" (the whole mutated tensor).
    """
    return _normalized(perturb_conv(pop, std, i1, i2, noise, alpha, blur, smooth_target, fast, border))


def perturb_conv(pop, std, i1, i2, noise, alpha, blur, smooth_target="noise", fast=True, border="valid") -> torch.Tensor:
    """mutate_conv before its normalization: crossover + scaled noise + smoothing."""
    child = crossover(pop, i1, i2)
    eps = noise * (alpha * _parent_sigma(std, i1, i2))[..., None, None]
    if smooth_target == "noise":
        return child + smooth(eps, blur, fast, border)
    return smooth(child + eps, blur, fast, border)


def mutate_vector(pop, std, i1, i2, noise, alpha: float) -> torch.Tensor:
    """Crossover + noise scaled by the parents' std over all elements, then per-sample normalization."""
    return _normalized(perturb_vector(pop, std, i1, i2, noise, alpha))


def perturb_vector(pop, std, i1, i2, noise, alpha: float) -> torch.Tensor:
    """mutate_vector before its normalization."""
    sigma = _parent_sigma(std, i1, i2).reshape(*std.shape[:1], -1, *(1,) * (pop.dim() - 2))
    return crossover(pop, i1, i2) + noise * (alpha * sigma)


def mutate_logits(pop, std, i1, i2, noise, alpha: float) -> torch.Tensor:
    """Crossover + element-wise noise scaled by the parents' std across classes, then recentered."""
    child = crossover(pop, i1, i2)
    child = child + noise * (alpha * _parent_sigma(std, i1, i2))[..., None]
    return child - child.mean(dim=-1, keepdim=True)


def mutate(pop, std, i1, i2, noise, alpha, blur, smooth_target, fast=True, kind="map", border="valid"):
    if kind == "map":
        return mutate_conv(pop, std, i1, i2, noise, alpha, blur, smooth_target, fast, border)
    if kind == "vector":
        return mutate_vector(pop, std, i1, i2, noise, alpha)
    return mutate_logits(pop, std, i1, i2, noise, alpha)


def _parent_sigma(std, i1, i2):
    """Each child's noise std before alpha: the mean of its two parents' std."""
    return 0.5 * (gather(std, i1) + gather(std, i2))


def _normalized(child: torch.Tensor) -> torch.Tensor:
    b, m = child.shape[:2]
    return sample_normalize(child.reshape(b * m, *child.shape[2:])).reshape(child.shape)
