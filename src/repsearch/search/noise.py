"""The search's randomness: one stream per image, and the noise bank the fast path reads from.

Every random number an image's search uses comes from its own stream, seeded by (seed, dataset
index): an image's result does not depend on its batch mates, its chunk, or padding rows, and a
resumed search redraws exactly what it lost.
"""
from __future__ import annotations

import hashlib
import math

import torch

from .fastpaths import to_phases
from .operators import smooth


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


def stream_seed(seed: int, stream: int) -> int:
    """The seed of the `stream`-th independent search of the same images (`search.stream`).
    Stream 0 is the seed itself (every cache before streams existed); stream k > 0 hashes
    (seed, k) into [2^32, 2^33), apart from the small seeds users pick, and small enough for
    every per-image generator's arithmetic."""
    if stream == 0:
        return int(seed)
    digest = hashlib.sha256(f"{int(seed)}:{int(stream)}".encode()).digest()
    return (1 << 32) + int.from_bytes(digest[:4], "little")


def per_image_rng(kind: str, seed: int, image_ids, device="cpu", pad: int = 0):
    """The search's per-image streams: `PerImageRNG` ("generator") or `CounterRNG` ("counter")."""
    if kind == "counter":
        from .counter_rng import CounterRNG
        return CounterRNG(seed, image_ids, device, pad)
    return PerImageRNG(seed, image_ids, device, pad)


_BANKS: dict = {}


class NoiseBank:
    """Fast-path noise: one large bank of standard normals drawn once; each child's noise is a
    window of it at an offset drawn from the image's own stream. Copying a window costs ~1/15 of
    drawing fresh normals on CPU. Two children share numbers only if their windows overlap (rare
    in a 2^24 bank, and then shifted, so elementwise independent); `search.noise = "fresh"` draws
    fresh noise instead."""

    def __init__(self, seed: int, size: int = 1 << 24, device="cpu"):
        g = torch.Generator(device=device).manual_seed(int(seed) + 99991)
        self.bank = torch.randn(size, generator=g, device=device)
        self._smoothed: dict = {}

    def draw(self, rng: "PerImageRNG", shape: tuple, blur: int = 0, phases: bool = False,
             border: str = "valid") -> torch.Tensor:
        """(B, M, *S) normals: M windows per image, each of prod(S) numbers.

        With blur > 0 (conv maps only) the windows come from a copy of the bank smoothed once as
        H x W maps, at map-aligned offsets: the same as smoothing each child's noise afterwards,
        since smoothing is linear and acts per map (channel scaling commutes with it). With
        `phases` (blurred maps only) each smoothed map's pixels come in `pool_phase_order`."""
        return windows(self.source(shape, blur, phases, border), self.offsets(rng, shape, blur), shape)

    def source(self, shape: tuple, blur: int = 0, phases: bool = False, border: str = "valid") -> torch.Tensor:
        """The bank that windows of `shape` (M, *S) are read from: flat, or for blurred maps
        pre-smoothed and viewed as rows of one map each (windows then start at map boundaries, and
        a compiled consumer reads each row with vector loads), optionally in pooling-phase order."""
        if blur > 0 and len(shape) == 4:
            return self._smoothed_bank(shape[2], shape[3], blur, phases, border).reshape(-1, shape[2] * shape[3])
        if phases:
            raise ValueError("phase-ordered noise needs map-aligned windows (blurred conv maps)")
        return self.bank

    def offsets(self, rng: "PerImageRNG", shape: tuple, blur: int = 0) -> torch.Tensor:
        """(B, M) start offsets of the windows, from each image's own stream: elements of the flat
        bank, or for blurred maps whole maps (rows of `source`)."""
        m, n = shape[0], math.prod(shape[1:])
        if blur > 0 and len(shape) == 4:
            maps_per_window = n // (shape[2] * shape[3])
            maps = len(self.bank) // (shape[2] * shape[3])  # rows of `source`, whatever the border
            return rng.randint(maps - maps_per_window + 1, (m,))
        return rng.randint(len(self.bank) - n, (m,))

    @classmethod
    def shared(cls, seed: int, device="cpu") -> "NoiseBank":
        """One bank per (seed, device) per process: chunks reuse it instead of redrawing it."""
        key = (int(seed), str(device))
        if key not in _BANKS:
            _BANKS.clear()
            _BANKS[key] = cls(seed, device=device)
        return _BANKS[key]

    def _smoothed_bank(self, h: int, w: int, blur: int, phases: bool = False, border: str = "valid") -> torch.Tensor:
        key = (h, w, blur, phases, border)
        if key not in self._smoothed:
            if phases:
                self._smoothed[key] = to_phases(self._smoothed_bank(h, w, blur, False, border).reshape(-1, h, w)).reshape(-1)
            else:
                maps = self.bank[: len(self.bank) // (h * w) * h * w].reshape(-1, 1, h, w)
                self._smoothed[key] = smooth(maps, blur, border=border).reshape(-1)
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
