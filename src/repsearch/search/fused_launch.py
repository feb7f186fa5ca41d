"""Launching `fused_kernel.build_score`: its compile-time sizes, its buffers, its arguments (the
host side of the kernel, kept apart from the program itself)."""
from __future__ import annotations

import torch

from .fused_kernel import build_score


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def constexprs(c: int, h: int, w: int, n_stages: int, classes: int, *, norms=(True, True), channel_tile: int = 0,
               num_warps: int = 4, score: bool = True, write: bool = False, channel_stats: bool = True) -> dict:
    """The program's compile-time sizes for a C x H x W point with `n_stages` downstream stages (the
    per-launch member counts M, POOL, STD, OUT are added by `launch`). Channel tiles: pass 1's CB
    (0: about four values per thread of its HP x WP tiles; one where they feed the head), the stage
    passes' CB2 and CB3 (4x as many channels of maps 4x smaller, as many into the head: the head's
    (classes x tile) accumulator then holds about 16 values per thread), and the write pass's CBW
    (four values per thread). A pass reads its tiles as row pairs (fused_kernel._pool): each half
    holds at least a value per thread, else the threads would compute copies of the same values."""
    hp, wp, hw_pad = _pow2(h), _pow2(w), _pow2(h * w)
    threads = 32 * num_warps
    cb = channel_tile or max(1, min(_pow2(c), (4 if n_stages else 1) * threads // (hp * wp)))

    def filled(channels: int, scale: int) -> int:  # a tile of a map `scale` x `scale` smaller
        half = max(1, hp // scale // 2) * max(1, wp // scale)
        return min(_pow2(c), max(channels, threads // half))

    cb, cbw = filled(cb, 1), max(1, min(_pow2(c), 4 * threads // hw_pad))
    return dict(C=c, H=h, W=w, CB=cb, CB2=filled(4 * cb if n_stages == 2 else cb, 2), CB3=filled(4 * cb, 4),
                CBW=cbw, HP=hp, WP=wp, HW_PAD=hw_pad, N_STAGES=n_stages, NORM1=int(n_stages >= 1 and norms[0]),
                NORM2=int(n_stages >= 2 and norms[1]), K=classes, K_PAD=_pow2(classes), SCORE=int(score),
                WRITE=int(write), CHSTATS=int(score and channel_stats), UNROLL=_unroll(c, cb, cbw) if n_stages else 1)


def _unroll(c: int, *tiles: int) -> int:
    """Pass 1's and the write pass's loops unrolled twice where both run an even number of trips:
    the loop's pointer and counter updates, half its instructions at four values a thread, are then
    shared by two tiles, at no cost in registers (benchmarks/fused_compile.py: a refiner at block 0
    29,640 -> 27,529 instructions, 64 registers either way). Not where pass 1 feeds the head (its
    accumulator would double: 136 registers), nor the stage passes (32 more registers for 4% fewer
    instructions)."""
    return 2 if all(-(-c // t) % 2 == 0 for t in tiles) else 1


def launch(plan, pool, pool_std, i1, i2, source, offsets, scale: float, labels, *, out=None, out_slot=None,
           score: bool = True, channel_stats: bool = True, moments=None, channel_tile: int = 0, num_warps: int = 4):
    """Run the program for (B, M) children. pool (B, >=P, C, H, W) and pool_std (B, P, C) hold the
    parents; i1, i2 (B, M) index them. Returns (ce (B, M), chstats (B, M, 2, C) (with channel_stats),
    moments (B, M, 3): mean, rstd, var); with `out` (B, N, C, H, W), child m is written normalized at
    out[b, out_slot[b, m]] (-1: not written). Children only written (score=False) are normalized by
    the `moments` their scoring launch returned."""
    b, m = offsets.shape
    c, h, w = plan.channels, plan.height, plan.width
    dev = pool.device
    n_stages = len(plan.stages)
    member = c * h * w
    if pool.dtype != torch.float32 or pool.stride()[1:] != (member, h * w, w, 1):
        raise ValueError("the kernel reads fp32 parents laid out member after member (pool[:, i] contiguous)")
    pool_std = pool_std.float().contiguous()  # small; a 1x1 map's std comes expanded over channels
    sizes = constexprs(c, h, w, n_stages, plan.head.shape[0], norms=[s.normalized for s in plan.stages] + [True] * 2,
                       channel_tile=channel_tile, num_warps=num_warps, score=score, write=out is not None,
                       channel_stats=channel_stats)
    if not score and (moments is None or moments.shape != (b, m, 3)):
        raise ValueError("children only written need the (B, M, 3) moments their scoring launch returned")
    ce = torch.empty(b, m, device=dev)
    chstats = torch.empty(b, m, 2, c, device=dev) if sizes["CHSTATS"] else None
    moments = torch.empty(b, m, 3, device=dev) if score else moments.float().contiguous()
    # buf1, buf2: the pools' outputs, padded like the tiles (a child only written pools nothing)
    pooled1 = (sizes["HP"] // 2) * (sizes["WP"] // 2) if score else 4
    buf1 = torch.empty(b * m if score else 1, c, pooled1 if n_stages else 1, device=dev)
    buf2 = torch.empty(b * m if score else 1, c, pooled1 // 4 if n_stages == 2 else 1, device=dev)
    params = []
    for stage in list(plan.stages) + [None] * (2 - n_stages):
        for pair in ((stage.bn1, stage.bn2) if stage is not None else ((ce, ce),) * 2):
            params += list(pair)
    build_score[(b * m,)](
        pool, pool_std, i1.contiguous(), i2.contiguous(), source.contiguous(), offsets.contiguous(),
        labels.contiguous(), (offsets if out is None else out_slot).contiguous(), float(scale),
        ce if out is None else out, ce if chstats is None else chstats, moments, ce, buf1, buf2, *params, plan.head, plan.head_sum,
        M=m, POOL=pool.stride(0) // member, STD=pool_std.shape[1], OUT=0 if out is None else out.stride(0) // member,
        num_warps=num_warps, **sizes)
    return ce, chstats, moments
