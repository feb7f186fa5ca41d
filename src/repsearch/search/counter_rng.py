"""A counter-based random stream per image: every draw is a fixed number of tensor ops, whatever
the number of images (`search.rng = "counter"`, the GPU path).

`PerImageRNG` keeps one `torch.Generator` per image and loops over them in Python on every draw:
on a GPU that is one kernel launch per image per draw. Here an image's stream is a key (a hash of
seed and dataset index) and a position (how many numbers it has used); the n numbers of a draw are
splitmix64(key ^ splitmix64(position + i)) for i < n, computed for all images at once with int64
tensor ops, then turned into uniforms (and normals by Box-Muller). Like `PerImageRNG`, an image's
numbers depend only on (seed, image) and how many it drew before: not on its batch mates, its
chunk, padding rows or the number of ranks.
"""
from __future__ import annotations

import math

import torch

_GOLDEN = 0x9E3779B97F4A7C15 - 2**64  # splitmix64's constants as signed int64
_C1 = 0xBF58476D1CE4E5B9 - 2**64
_C2 = 0x94D049BB133111EB - 2**64


def _shr(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic: it copies the sign bit)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def splitmix64(z: torch.Tensor) -> torch.Tensor:
    """A bijective 64-bit mixer (Steele et al. 2014); int64 arithmetic wraps modulo 2^64."""
    z = z + _GOLDEN
    z = (z ^ _shr(z, 30)) * _C1
    z = (z ^ _shr(z, 27)) * _C2
    return z ^ _shr(z, 31)


def image_keys(seed: int, ids: torch.Tensor) -> torch.Tensor:
    return splitmix64(splitmix64(torch.full_like(ids, int(seed))) ^ ids)


class CounterRNG:
    """Same interface as `noise.PerImageRNG`: randn, randint, subset."""

    def __init__(self, seed: int, image_ids, device="cpu", pad: int = 0):
        """`pad` throwaway streams follow the images' own (padding rows)."""
        self.seed, self.device = int(seed), torch.device(device)
        ids = torch.as_tensor(list(image_ids), dtype=torch.int64)
        self.keys = torch.cat([image_keys(self.seed, ids), self._throwaway(pad)]).to(self.device)
        self.position = torch.zeros(len(self.keys), dtype=torch.int64, device=self.device)
        self._parent, self._rows = None, None

    def _throwaway(self, n: int) -> torch.Tensor:
        return image_keys(self.seed, -1 - torch.arange(n, dtype=torch.int64))  # ids no image has

    def subset(self, rows: torch.Tensor, pad: int = 0) -> "CounterRNG":
        """The streams of `rows` (draws from the subset advance them here too), plus `pad`
        throwaway streams that start fresh each time, so padding never moves a real image's stream."""
        if self._parent is not None:
            raise ValueError("subset of a subset: take the rows from the full set")
        rows = rows.to(self.device)
        sub = CounterRNG.__new__(CounterRNG)
        sub.seed, sub.device, sub._parent, sub._rows = self.seed, self.device, self, rows
        sub.keys = torch.cat([self.keys[rows], self._throwaway(pad).to(self.device)])
        sub.position = torch.cat([self.position[rows], torch.zeros(pad, dtype=torch.int64, device=self.device)])
        return sub

    def _bits(self, n: int) -> torch.Tensor:
        """(B, n) fresh 64-bit words per image; advances every stream by n."""
        counters = self.position[:, None] + torch.arange(n, dtype=torch.int64, device=self.device)
        z = splitmix64(self.keys[:, None] ^ splitmix64(counters))
        self.position = self.position + n
        if self._parent is not None:
            self._parent.position[self._rows] = self.position[:len(self._rows)]
        return z

    def randn(self, shape: tuple, out: torch.Tensor | None = None) -> torch.Tensor:
        """Standard normals by Box-Muller from two 24-bit uniforms in (0, 1) per number."""
        z = self._bits(math.prod(shape))
        u1 = (_shr(z, 40).float() + 0.5) * 2.0 ** -24
        u2 = (_shr(z, 16) & 0xFFFFFF).float() * 2.0 ** -24
        normal = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * u2)
        normal = normal.reshape(len(self.keys), *shape)
        return normal if out is None else out.copy_(normal)

    def randint(self, high: int, shape: tuple) -> torch.Tensor:
        """Uniform integers in [0, high) from 53-bit uniforms (bank offsets reach 2^24)."""
        u = _shr(self._bits(math.prod(shape)), 11).double() * 2.0 ** -53
        return (u * high).long().clamp_max(high - 1).reshape(len(self.keys), *shape)
