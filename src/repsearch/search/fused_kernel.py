"""The Triton program behind `fused.build_and_score`: one program per child (module doc there).

Passes of one program over its child (C channels of H x W, in channel tiles):
  1. build the child from its parents and noise window; its sum and sum of squares overall and
     per channel (the per-sample normalization, and the child's channel std for the refiners);
  2. build it again per 2x2 pooling window: write the normalized child, keep the window's max
     (the pixels no window covers are written apart), and take the pooled map through the first
     downstream stage (BN, GELU, BN, GELU) into a small buffer, with its statistics;
  3. the second downstream stage from that buffer, the same way (when there is one);
  4. the linear head on the last stage's normalized output, and the cross-entropy.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

LN_EPS = 1e-5  # models.staged.sample_normalize's


@triton.jit
def _gelu(x):
    return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))


@triton.jit
def _child(pool, std, p1, p2, bank, row, chan, pos, cmask, pmask, scale, C: tl.constexpr, HW: tl.constexpr):
    """Child values at channels `chan` x positions `pos` (a 2-D tile): the parents' mean plus the
    noise scaled by alpha x the parents' mean channel std."""
    m2 = cmask[:, None] & pmask[None, :]
    a = tl.load(pool + p1 * C * HW + chan[:, None] * HW + pos[None, :], mask=m2, other=0.0)
    b = tl.load(pool + p2 * C * HW + chan[:, None] * HW + pos[None, :], mask=m2, other=0.0)
    sa = tl.load(std + p1 * C + chan, mask=cmask, other=0.0)
    sb = tl.load(std + p2 * C + chan, mask=cmask, other=0.0)
    nz = tl.load(bank + (row + chan)[:, None] * HW + pos[None, :], mask=m2, other=0.0)
    x = 0.5 * (a + b) + nz * (scale * (0.5 * (sa + sb)))[:, None]
    return tl.where(m2, x, 0.0)


@triton.jit
def _stage_ops(x, chan, cmask, s1, t1, s2, t2):
    """BN (eval: per-channel affine), GELU, [identity conv], BN, GELU on a (channels, pixels) tile."""
    a1 = tl.load(s1 + chan, mask=cmask, other=0.0)
    b1 = tl.load(t1 + chan, mask=cmask, other=0.0)
    a2 = tl.load(s2 + chan, mask=cmask, other=0.0)
    b2 = tl.load(t2 + chan, mask=cmask, other=0.0)
    x = _gelu(x * a1[:, None] + b1[:, None])
    return _gelu(x * a2[:, None] + b2[:, None])


@triton.jit
def _stage_to_buffer(best, mean, rstd, m2, chan, cmask, s1, t1, s2, t2, dst):
    """A downstream stage on a pooled tile (normalized by the previous map's statistics; masked
    places are 0), stored at `dst`; returns its sum and sum of squares for the next normalization."""
    y = _stage_ops((tl.where(m2, best, mean) - mean) * rstd, chan, cmask, s1, t1, s2, t2)
    y = tl.where(m2, y, 0.0)
    tl.store(dst, y, mask=m2)
    return tl.sum(tl.sum(y, axis=1), axis=0), tl.sum(tl.sum(y * y, axis=1), axis=0)


@triton.jit
def build_score(pool, std, i1, i2, bank, offsets, labels, scale,
                child_out, chstd_out, ce_out, chstats, buf1, buf2, left,
                s11, t11, s12, t12, s21, t21, s22, t22, head,
                M: tl.constexpr, POOL: tl.constexpr, C: tl.constexpr, H: tl.constexpr, W: tl.constexpr,
                HW_PAD: tl.constexpr, CB: tl.constexpr, LEFT_N: tl.constexpr, LEFT_PAD: tl.constexpr,
                N_STAGES: tl.constexpr, NORM1: tl.constexpr, NORM2: tl.constexpr,
                P1_PAD: tl.constexpr, P2_PAD: tl.constexpr, K: tl.constexpr, K_PAD: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    img = pid // M
    HW: tl.constexpr = H * W
    p1 = img * POOL + tl.load(i1 + pid)
    p2 = img * POOL + tl.load(i2 + pid)
    row = tl.load(offsets + pid)
    label = tl.load(labels + img)
    lane = tl.arange(0, CB)
    # 1. statistics of the raw child
    pos = tl.arange(0, HW_PAD)
    pmask = pos < HW
    total = 0.0
    total_sq = 0.0
    for c0 in range(0, C, CB):
        chan = c0 + lane
        cmask = chan < C
        x = _child(pool, std, p1, p2, bank, row, chan, pos, cmask, pmask, scale, C, HW)
        total += tl.sum(tl.sum(x, axis=1), axis=0)
        total_sq += tl.sum(tl.sum(x * x, axis=1), axis=0)
        tl.store(chstats + pid * 2 * C + chan, tl.sum(x, axis=1), mask=cmask)
        tl.store(chstats + pid * 2 * C + C + chan, tl.sum(x * x, axis=1), mask=cmask)
    mean = total / (C * HW)
    var = tl.maximum(total_sq / (C * HW) - mean * mean, 0.0)
    rstd = 1.0 / tl.sqrt(var + 1e-5)
    tl.debug_barrier()
    # 2. normalized child written once; pooled through the first downstream stage
    H1: tl.constexpr = H // 2
    W1: tl.constexpr = W // 2
    q = tl.arange(0, P1_PAD)
    qmask = q < H1 * W1
    qi = q // tl.maximum(W1, 1)  # (a map too small to pool has no windows: every lane is masked)
    qj = q % tl.maximum(W1, 1)
    s_sum = 0.0
    s_sq = 0.0
    for c0 in range(0, C, CB):
        chan = c0 + lane
        cmask = chan < C
        csum = tl.load(chstats + pid * 2 * C + chan, mask=cmask, other=0.0)
        csq = tl.load(chstats + pid * 2 * C + C + chan, mask=cmask, other=0.0)
        cvar = tl.maximum(csq / HW - (csum / HW) * (csum / HW), 0.0)
        if HW == 1:  # a 1x1 map has no spatial spread: every channel takes the spread across channels
            cvar = var + 0.0 * csum
        tl.store(chstd_out + pid * C + chan, tl.sqrt(cvar) * rstd, mask=cmask)
        best = tl.full((CB, P1_PAD), float("-inf"), tl.float32)
        for dy in tl.static_range(2):
            for dx in tl.static_range(2):
                wpos = (2 * qi + dy) * W + 2 * qj + dx
                x = _child(pool, std, p1, p2, bank, row, chan, wpos, cmask, qmask, scale, C, HW)
                m2 = cmask[:, None] & qmask[None, :]
                tl.store(child_out + pid * C * HW + chan[:, None] * HW + wpos[None, :], (x - mean) * rstd, mask=m2)
                best = tl.maximum(best, tl.where(m2, x, float("-inf")))
        lpos_i = tl.arange(0, LEFT_PAD)
        lmask = lpos_i < LEFT_N
        lpos = tl.load(left + lpos_i, mask=lmask, other=0)
        x = _child(pool, std, p1, p2, bank, row, chan, lpos, cmask, lmask, scale, C, HW)
        tl.store(child_out + pid * C * HW + chan[:, None] * HW + lpos[None, :], (x - mean) * rstd,
                 mask=cmask[:, None] & lmask[None, :])
        if N_STAGES >= 1:
            m2 = cmask[:, None] & qmask[None, :]
            ys, yq = _stage_to_buffer(best, mean, rstd, m2, chan, cmask, s11, t11, s12, t12,
                                      buf1 + pid * C * P1_PAD + chan[:, None] * P1_PAD + q[None, :])
            s_sum += ys
            s_sq += yq
    tl.debug_barrier()
    # 3. the second downstream stage, from the first one's buffer
    n1 = tl.maximum(C * H1 * W1, 1)  # (no stage there: its statistics are unused)
    m1 = s_sum / n1
    r1 = 1.0 / tl.sqrt(tl.maximum(s_sq / n1 - m1 * m1, 0.0) + 1e-5)
    if NORM1 == 0:
        m1 = 0.0
        r1 = 1.0
    H2: tl.constexpr = H1 // 2
    W2: tl.constexpr = W1 // 2
    u = tl.arange(0, P2_PAD)
    umask = u < H2 * W2
    ui = u // tl.maximum(W2, 1)
    uj = u % tl.maximum(W2, 1)
    t_sum = 0.0
    t_sq = 0.0
    if N_STAGES == 2:
        for c0 in range(0, C, CB):
            chan = c0 + lane
            cmask = chan < C
            m2 = cmask[:, None] & umask[None, :]
            best = tl.full((CB, P2_PAD), float("-inf"), tl.float32)
            for dy in tl.static_range(2):
                for dx in tl.static_range(2):
                    src = (2 * ui + dy) * W1 + 2 * uj + dx
                    v = tl.load(buf1 + pid * C * P1_PAD + chan[:, None] * P1_PAD + src[None, :], mask=m2,
                                other=float("-inf"))
                    best = tl.maximum(best, v)
            ys, yq = _stage_to_buffer(best, m1, r1, m2, chan, cmask, s21, t21, s22, t22,
                                      buf2 + pid * C * P2_PAD + chan[:, None] * P2_PAD + u[None, :])
            t_sum += ys
            t_sq += yq
    tl.debug_barrier()
    n2 = tl.maximum(C * H2 * W2, 1)
    m2n = t_sum / n2
    r2 = 1.0 / tl.sqrt(tl.maximum(t_sq / n2 - m2n * m2n, 0.0) + 1e-5)
    if NORM2 == 0:
        m2n = 0.0
        r2 = 1.0
    # 4. the head on the last output, and the cross-entropy
    kk = tl.arange(0, K_PAD)
    kmask = kk < K
    logits = tl.zeros((K_PAD,), tl.float32)
    FEATURES: tl.constexpr = C * (HW if N_STAGES == 0 else (H1 * W1 if N_STAGES == 1 else H2 * W2))
    for c0 in range(0, C, CB):
        chan = c0 + lane
        cmask = chan < C
        if N_STAGES == 0:
            m2 = cmask[:, None] & pmask[None, :]
            z = tl.load(child_out + pid * C * HW + chan[:, None] * HW + pos[None, :], mask=m2, other=0.0)
            feat = chan[:, None] * HW + pos[None, :]
            fm = m2
        elif N_STAGES == 1:
            m2 = cmask[:, None] & qmask[None, :]
            z = (tl.load(buf1 + pid * C * P1_PAD + chan[:, None] * P1_PAD + q[None, :], mask=m2, other=0.0) - m1) * r1
            feat = chan[:, None] * (H1 * W1) + q[None, :]
            fm = m2
        else:
            m2 = cmask[:, None] & umask[None, :]
            z = (tl.load(buf2 + pid * C * P2_PAD + chan[:, None] * P2_PAD + u[None, :], mask=m2, other=0.0) - m2n) * r2
            feat = chan[:, None] * (H2 * W2) + u[None, :]
            fm = m2
        z = tl.where(fm, z, 0.0)
        wk = tl.load(head + kk[:, None, None] * FEATURES + feat[None, :, :], mask=kmask[:, None, None] & fm[None, :, :],
                     other=0.0)
        logits += tl.sum(tl.sum(wk * z[None, :, :], axis=2), axis=1)
    logits = tl.where(kmask, logits, float("-inf"))
    top = tl.max(logits, axis=0)
    lse = top + tl.log(tl.sum(tl.exp(logits - top), axis=0))
    tl.store(ce_out + pid, lse - tl.sum(tl.where(kk == label, logits, 0.0), axis=0))


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def leftover_pixels(h: int, w: int) -> torch.Tensor:
    """The pixels no 2x2 pooling window (floor mode) covers: an odd last row and column."""
    covered = torch.zeros(h, w, dtype=torch.bool)
    covered[: h // 2 * 2, : w // 2 * 2] = True
    return (~covered).flatten().nonzero().squeeze(1)


def launch(plan, pool, pool_std, i1, i2, source, offsets, scale: float, labels):
    b, m = offsets.shape
    c, h, w = plan.channels, plan.height, plan.width
    dev = pool.device
    pool, pool_std = pool.float().contiguous(), pool_std.float().contiguous()
    children = torch.empty(b, m, c, h, w, device=dev)
    chstd = torch.empty(b, m, c, device=dev)
    chstats = torch.empty(b * m, 2, c, device=dev)
    ce = torch.empty(b, m, device=dev)
    p1, p2 = _pow2((h // 2) * (w // 2)), _pow2((h // 4) * (w // 4))
    buf1 = torch.empty(b * m, c, p1, device=dev)
    buf2 = torch.empty(b * m, c, p2, device=dev)
    left = leftover_pixels(h, w).to(dev)
    stages = list(plan.stages) + [None] * (2 - len(plan.stages))
    params = []
    for stage in stages:
        for scale_shift in ((stage.bn1, stage.bn2) if stage is not None else ((pool_std[:1, 0], pool_std[:1, 0]),) * 2):
            params += [t.to(dev) for t in scale_shift]
    k = plan.head.shape[0]
    build_score[(b * m,)](
        pool, pool_std, i1.contiguous(), i2.contiguous(), source.contiguous(), offsets.contiguous(),
        labels.contiguous(), float(scale), children, chstd, ce, chstats, buf1, buf2, left, *params, plan.head.to(dev),
        M=m, POOL=pool.shape[1], C=c, H=h, W=w, HW_PAD=_pow2(h * w), CB=min(16, _pow2(c)), LEFT_N=len(left),
        LEFT_PAD=max(1, _pow2(len(left))), N_STAGES=len(plan.stages),
        NORM1=int(len(plan.stages) >= 1 and plan.stages[0].normalized),
        NORM2=int(len(plan.stages) >= 2 and plan.stages[1].normalized), P1_PAD=p1, P2_PAD=p2, K=k, K_PAD=_pow2(k))
    return children, chstd, ce
