"""The Triton program behind `fused.build_and_score`: one program per child (module doc there).

Each child is built from its parents and noise window once to score it (and once more to write
it, for the children the search keeps). Passes of one program, in channel tiles:
  1. build the child in pooling-window order: its sums (the per-sample normalization and each
     channel's spread), and each 2x2 window's max of the raw child into a small buffer (pooling
     commutes with the positive normalization). The map's positions are ordered so that the second
     pool's windows are four aligned groups (`Layout`), so the next pass pools by elementwise max;
  2. the first downstream stage (BN, GELU, BN, GELU) on the pooled buffer, normalized by pass 1's
     statistics: its statistics, and the second pool's max into a smaller buffer;
  3. the second downstream stage the same way, when there is one.
  The linear head is accumulated wherever the last map is made, on the raw map: its normalization
  is an affine map, so logits = rstd * (W.x - mean * W.1) once the statistics are known;
  4. the cross-entropy; and, for the children that are written, the child normalized.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .fused_layout import layout, pow2 as _pow2

NEG: tl.constexpr = tl.constexpr(float("-inf"))


@triton.jit
def _gelu(x):
    return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))


@triton.jit
def _child(pool, std, p1, p2, s1, s2, bank, row, chan, pos, cmask, pmask, scale, HW: tl.constexpr):
    """Child values at channels `chan` x positions `pos` (a 2-D tile; 0 where masked): the parents'
    mean plus the noise scaled by alpha x the parents' mean channel std. p1, p2: the parents' rows
    in `pool` (of C*HW values), s1, s2: in `std` (of C values)."""
    m2 = cmask[:, None] & pmask[None, :]
    a = tl.load(pool + p1 + chan[:, None] * HW + pos[None, :], mask=m2, other=0.0)
    b = tl.load(pool + p2 + chan[:, None] * HW + pos[None, :], mask=m2, other=0.0)
    sa = tl.load(std + s1 + chan, mask=cmask, other=0.0)
    sb = tl.load(std + s2 + chan, mask=cmask, other=0.0)
    nz = tl.load(bank + (row + chan)[:, None] * HW + pos[None, :], mask=m2, other=0.0)
    x = 0.5 * (a + b) + nz * (scale * (0.5 * (sa + sb)))[:, None]
    return tl.where(m2, x, 0.0)


@triton.jit
def _stage(v, mean, rstd, m2, chan, cmask, a1p, b1p, a2p, b2p):
    """A downstream stage on a pooled tile normalized by the previous map's statistics: BN (eval:
    a per-channel affine), GELU, [identity conv], BN, GELU; 0 where masked."""
    a1 = tl.load(a1p + chan, mask=cmask, other=0.0)
    b1 = tl.load(b1p + chan, mask=cmask, other=0.0)
    a2 = tl.load(a2p + chan, mask=cmask, other=0.0)
    b2 = tl.load(b2p + chan, mask=cmask, other=0.0)
    x = (tl.where(m2, v, mean) - mean) * rstd
    x = _gelu(x * a1[:, None] + b1[:, None])
    return tl.where(m2, _gelu(x * a2[:, None] + b2[:, None]), 0.0)


@triton.jit
def _head(logits, head, kk, feat, fm, y, K: tl.constexpr, FEATURES: tl.constexpr):
    """logits[k] += sum(head[k, feat] * y) over the tile (a loop over classes keeps it 2-D)."""
    for k in range(K):
        w = tl.load(head + k * FEATURES + feat, mask=fm, other=0.0)
        logits = tl.where(kk == k, logits + tl.sum(tl.sum(w * y, axis=1), axis=0), logits)
    return logits


@triton.jit
def _windows(pool, std, p1, p2, s1, s2, bank, row, chan, cmask, scale, slots, base, dst, CB: tl.constexpr,
             SIZE: tl.constexpr, W: tl.constexpr, W1: tl.constexpr, HW: tl.constexpr):
    """The child over the 2x2 windows of `SIZE` pooled positions (slots[base:], -1 = padding): the
    windows' max stored at dst[:, base:] (dst: each channel's row of buf1); returns the per-channel
    sum and sum of squares of the values read."""
    idx = tl.load(slots + base + tl.arange(0, SIZE))
    smask = idx >= 0
    i1 = idx // W1
    j1 = idx % W1
    m2 = cmask[:, None] & smask[None, :]
    best = tl.full((CB, SIZE), NEG, tl.float32)
    s = tl.zeros((CB,), tl.float32)
    q = tl.zeros((CB,), tl.float32)
    for dy in tl.static_range(2):
        for dx in tl.static_range(2):
            x = _child(pool, std, p1, p2, s1, s2, bank, row, chan, (2 * i1 + dy) * W + 2 * j1 + dx, cmask, smask,
                       scale, HW)
            s += tl.sum(x, axis=1)
            q += tl.sum(x * x, axis=1)
            best = tl.maximum(best, tl.where(m2, x, NEG))
    tl.store(dst + base + tl.arange(0, SIZE)[None, :], best, mask=cmask[:, None])
    return s, q


@triton.jit
def build_score(pool, std, i1, i2, bank, offsets, labels, out_slot, scale,
                out, chstats, moments, ce_out, buf1, buf2, slots, left,
                a11, b11, a12, b12, a21, b21, a22, b22, head, head_sum,
                M: tl.constexpr, POOL: tl.constexpr, STD: tl.constexpr, OUT: tl.constexpr,
                C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, CB: tl.constexpr, CBW: tl.constexpr,
                HW_PAD: tl.constexpr, G_PAD: tl.constexpr, NG: tl.constexpr, L1_PAD: tl.constexpr,
                LEFT_N: tl.constexpr, LEFT_PAD: tl.constexpr, N_STAGES: tl.constexpr,
                NORM1: tl.constexpr, NORM2: tl.constexpr, K: tl.constexpr, K_PAD: tl.constexpr,
                SCORE: tl.constexpr, WRITE: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    img = pid // M
    HW: tl.constexpr = H * W
    H1: tl.constexpr = H // 2
    W1: tl.constexpr = W // 2
    S1: tl.constexpr = NG * G_PAD + L1_PAD  # pooled positions per channel in buf1
    p1 = (img * POOL + tl.load(i1 + pid)) * C * HW
    p2 = (img * POOL + tl.load(i2 + pid)) * C * HW
    s1 = (img * STD + tl.load(i1 + pid)) * C
    s2 = (img * STD + tl.load(i2 + pid)) * C
    row = tl.load(offsets + pid)
    lane = tl.arange(0, CB)
    kk = tl.arange(0, K_PAD)
    logits = tl.zeros((K_PAD,), tl.float32)
    # 1. the child, built once: its statistics; the first pool's windows into buf1
    total = 0.0
    total_sq = 0.0
    for c0 in range(0, C, CB):
        chan = c0 + lane
        cmask = chan < C
        csum = tl.zeros((CB,), tl.float32)
        csq = tl.zeros((CB,), tl.float32)
        if N_STAGES == 0:
            pos = tl.arange(0, HW_PAD)
            pmask = pos < HW
            x = _child(pool, std, p1, p2, s1, s2, bank, row, chan, pos, cmask, pmask, scale, HW)
            csum += tl.sum(x, axis=1)
            csq += tl.sum(x * x, axis=1)
            if SCORE:
                logits = _head(logits, head, kk, chan[:, None] * HW + pos[None, :], cmask[:, None] & pmask[None, :],
                               x, K, C * HW)
        else:
            rows1 = buf1 + pid * C * S1 + chan[:, None] * S1
            for g in tl.static_range(NG):  # the second pool's four groups, then the positions it leaves
                s, q = _windows(pool, std, p1, p2, s1, s2, bank, row, chan, cmask, scale, slots, g * G_PAD, rows1,
                                CB, G_PAD, W, W1, HW)
                csum += s
                csq += q
            s, q = _windows(pool, std, p1, p2, s1, s2, bank, row, chan, cmask, scale, slots, NG * G_PAD, rows1,
                            CB, L1_PAD, W, W1, HW)
            csum += s
            csq += q
            li = tl.arange(0, LEFT_PAD)
            lmask = li < LEFT_N
            lpos = tl.load(left + li, mask=lmask, other=0)
            x = _child(pool, std, p1, p2, s1, s2, bank, row, chan, lpos, cmask, lmask, scale, HW)
            csum += tl.sum(x, axis=1)
            csq += tl.sum(x * x, axis=1)
        tl.store(chstats + pid * 2 * C + chan, csum, mask=cmask)
        tl.store(chstats + pid * 2 * C + C + chan, csq, mask=cmask)
        total += tl.sum(csum, axis=0)
        total_sq += tl.sum(csq, axis=0)
    mean = total / (C * HW)
    var = tl.maximum(total_sq / (C * HW) - mean * mean, 0.0)
    rstd = 1.0 / tl.sqrt(var + 1e-5)
    tl.store(moments + pid * 3, mean)
    tl.store(moments + pid * 3 + 1, rstd)
    tl.store(moments + pid * 3 + 2, var)
    tl.debug_barrier()
    # 2. the first downstream stage on buf1; the second pool's max (over the four groups) into buf2
    m_last = mean
    r_last = rstd
    if SCORE and N_STAGES >= 1:
        y_sum = 0.0
        y_sq = 0.0
        for c0 in range(0, C, CB):
            chan = c0 + lane
            cmask = chan < C
            best2 = tl.full((CB, G_PAD), NEG, tl.float32)
            for g in tl.static_range(NG):
                gi = g * G_PAD + tl.arange(0, G_PAD)
                gm = cmask[:, None] & (tl.load(slots + gi) >= 0)[None, :]
                v = tl.load(buf1 + pid * C * S1 + chan[:, None] * S1 + gi[None, :], mask=gm, other=0.0)
                y = _stage(v, mean, rstd, gm, chan, cmask, a11, b11, a12, b12)
                y_sum += tl.sum(tl.sum(y, axis=1), axis=0)
                y_sq += tl.sum(tl.sum(y * y, axis=1), axis=0)
                best2 = tl.maximum(best2, tl.where(gm, y, NEG))
            if NG > 0:
                tl.store(buf2 + pid * C * G_PAD + chan[:, None] * G_PAD + tl.arange(0, G_PAD)[None, :], best2,
                         mask=cmask[:, None])
            li = NG * G_PAD + tl.arange(0, L1_PAD)
            lidx = tl.load(slots + li)
            lm = cmask[:, None] & (lidx >= 0)[None, :]
            v = tl.load(buf1 + pid * C * S1 + chan[:, None] * S1 + li[None, :], mask=lm, other=0.0)
            y = _stage(v, mean, rstd, lm, chan, cmask, a11, b11, a12, b12)
            y_sum += tl.sum(tl.sum(y, axis=1), axis=0)
            y_sq += tl.sum(tl.sum(y * y, axis=1), axis=0)
            if N_STAGES == 1:  # the head reads this stage (its positions are all in the leftover tile)
                logits = _head(logits, head, kk, chan[:, None] * (H1 * W1) + lidx[None, :], lm, y, K, C * H1 * W1)
        n1 = C * H1 * W1
        m_last = y_sum / n1
        r_last = 1.0 / tl.sqrt(tl.maximum(y_sq / n1 - m_last * m_last, 0.0) + 1e-5)
        if NORM1 == 0:
            m_last = 0.0
            r_last = 1.0
        tl.debug_barrier()
    # 3. the second downstream stage on buf2
    if SCORE and N_STAGES == 2:
        m_in = m_last
        r_in = r_last
        z_sum = 0.0
        z_sq = 0.0
        g0 = tl.load(slots + tl.arange(0, G_PAD))  # group 0's slots: the second pool's output positions
        u = tl.arange(0, G_PAD)
        for c0 in range(0, C, CB):
            chan = c0 + lane
            cmask = chan < C
            um = cmask[:, None] & (g0 >= 0)[None, :]
            v = tl.load(buf2 + pid * C * G_PAD + chan[:, None] * G_PAD + u[None, :], mask=um, other=0.0)
            z = _stage(v, m_in, r_in, um, chan, cmask, a21, b21, a22, b22)
            z_sum += tl.sum(tl.sum(z, axis=1), axis=0)
            z_sq += tl.sum(tl.sum(z * z, axis=1), axis=0)
            logits = _head(logits, head, kk, chan[:, None] * ((H1 // 2) * (W1 // 2)) + u[None, :], um, z, K,
                           C * (H1 // 2) * (W1 // 2))
        n2 = C * (H1 // 2) * (W1 // 2)
        m_last = z_sum / n2
        r_last = 1.0 / tl.sqrt(tl.maximum(z_sq / n2 - m_last * m_last, 0.0) + 1e-5)
        if NORM2 == 0:
            m_last = 0.0
            r_last = 1.0
    # 4. the cross-entropy of the head on the last map, normalized: rstd * (W.x - mean * W.1)
    if SCORE:
        kmask = kk < K
        logits = r_last * (logits - m_last * tl.load(head_sum + kk, mask=kmask, other=0.0))
        logits = tl.where(kmask, logits, NEG)
        top = tl.max(logits, axis=0)
        lse = top + tl.log(tl.sum(tl.exp(logits - top), axis=0))
        label = tl.load(labels + img)
        tl.store(ce_out + pid, lse - tl.sum(tl.where(kk == label, logits, 0.0), axis=0))
    if WRITE:
        slot = tl.load(out_slot + pid)
        dst = out + (img * OUT + slot) * C * HW
        wl = tl.arange(0, CBW)
        pos = tl.arange(0, HW_PAD)
        pmask = pos < HW
        for c0 in range(0, C, CBW):
            chan = c0 + wl
            cmask = chan < C
            x = _child(pool, std, p1, p2, s1, s2, bank, row, chan, pos, cmask, pmask, scale, HW)
            tl.store(dst + chan[:, None] * HW + pos[None, :], (x - mean) * rstd,
                     mask=cmask[:, None] & pmask[None, :] & (slot >= 0))


def constexprs(c: int, h: int, w: int, n_stages: int, classes: int, *, norms=(True, True), channel_tile: int = 0,
               num_warps: int = 4, score: bool = True, write: bool = False) -> dict:
    """The program's compile-time sizes for a C x H x W point with `n_stages` downstream stages (the
    per-launch member counts M, POOL, STD, OUT are added by `launch`). Channel tiles (0: about two
    values per thread in the widest tile, which held sm_90's registers to 64 where 4x took 249;
    benchmarks/fused_compile.py) and the write pass's tile (four values per thread)."""
    lay = layout(h, w, n_stages)
    hw_pad = _pow2(h * w)
    widest = max(lay.group_pad, lay.rest_pad, hw_pad if n_stages == 0 else 1)
    threads = 32 * num_warps
    return dict(C=c, H=h, W=w, CB=channel_tile or max(1, min(_pow2(c), 2 * threads // widest)),
                CBW=max(1, min(_pow2(c), 4 * threads // hw_pad)), HW_PAD=hw_pad, G_PAD=lay.group_pad, NG=lay.groups,
                L1_PAD=lay.rest_pad, LEFT_N=len(lay.left), LEFT_PAD=_pow2(max(1, len(lay.left))), N_STAGES=n_stages,
                NORM1=int(n_stages >= 1 and norms[0]), NORM2=int(n_stages >= 2 and norms[1]), K=classes,
                K_PAD=_pow2(classes), SCORE=int(score), WRITE=int(write))


def launch(plan, pool, pool_std, i1, i2, source, offsets, scale: float, labels, *, out=None, out_slot=None,
           score: bool = True, channel_tile: int = 0, num_warps: int = 4):
    """Run the program for (B, M) children. pool (B, >=P, C, H, W) and pool_std (B, P, C) hold the
    parents; i1, i2 (B, M) index them. Returns (ce (B, M), chstats (B, M, 2, C), moments (B, M, 3):
    mean, rstd, var); with `out` (B, N, C, H, W), child m is written normalized at out[b, out_slot[b, m]]
    (-1: not written)."""
    b, m = offsets.shape
    c, h, w = plan.channels, plan.height, plan.width
    dev = pool.device
    n_stages = len(plan.stages)
    member = c * h * w
    if pool.dtype != torch.float32 or pool.stride()[1:] != (member, h * w, w, 1):
        raise ValueError("the kernel reads fp32 parents laid out member after member (pool[:, i] contiguous)")
    pool_std = pool_std.float().contiguous()  # small; a 1x1 map's std comes expanded over channels
    lay = layout(h, w, n_stages, str(dev))
    sizes = constexprs(c, h, w, n_stages, plan.head.shape[0], norms=[s.normalized for s in plan.stages] + [True] * 2,
                       channel_tile=channel_tile, num_warps=num_warps, score=score, write=out is not None)
    ce = torch.empty(b, m, device=dev)
    chstats = torch.empty(b, m, 2, c, device=dev)
    moments = torch.empty(b, m, 3, device=dev)
    buf1 = torch.empty(b * m, c, sizes["NG"] * sizes["G_PAD"] + sizes["L1_PAD"] if n_stages else 1, device=dev)
    buf2 = torch.empty(b * m, c, sizes["G_PAD"] if n_stages == 2 else 1, device=dev)
    params = []
    for stage in list(plan.stages) + [None] * (2 - n_stages):
        for pair in ((stage.bn1, stage.bn2) if stage is not None else ((ce, ce),) * 2):
            params += list(pair)
    build_score[(b * m,)](
        pool, pool_std, i1.contiguous(), i2.contiguous(), source.contiguous(), offsets.contiguous(),
        labels.contiguous(), (offsets if out is None else out_slot).contiguous(), float(scale),
        ce if out is None else out, chstats, moments, ce, buf1, buf2, lay.slots,
        lay.left if len(lay.left) else lay.slots, *params, plan.head, plan.head_sum,
        M=m, POOL=pool.stride(0) // member, STD=pool_std.shape[1], OUT=0 if out is None else out.stride(0) // member,
        num_warps=num_warps, **sizes)
    return ce, chstats, moments
