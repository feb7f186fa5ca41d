"""The Triton program behind `fused.build_and_score`: one program per child (module doc there).

Each child is built from its parents and noise window once to score it (and once more to write
it, for the children the search keeps). Every tile is read in the map's natural order (rows of
contiguous pixels: coalesced loads), padded to powers of two, as two halves: the top and the
bottom rows of its row pairs, so that a 2x2 pool is an elementwise max and a max of neighbouring
lanes (`_pool`). Sums are kept elementwise in registers and reduced once per pass: a
reduction per tile crosses warps through shared memory and barriers, and was half of what pass 1
issued (benchmarks/fused_compile.py counts it). Passes of one program, in channel tiles:
  1. build the child: its sums (the per-sample normalization; each channel's spread only for the
     explorers, whose spread the refiners are bred with), and the first pool's max of the raw child
     into a small buffer (pooling commutes with the positive normalization);
  2. the first downstream stage (BN, GELU, BN, GELU) on the pooled buffer, normalized by pass 1's
     statistics: its statistics, and the second pool's max into a smaller buffer;
  3. the second downstream stage the same way, when there is one.
  The linear head is accumulated per class and value wherever the last map is made, on the raw
  map: its normalization is an affine map, so logits = rstd * (W.x - mean * W.1) once the
  statistics are known;
  4. the cross-entropy; and, for the children that are written, the child normalized (a child
     only written, never scored here, takes the statistics its scoring launch returned).
"""
from __future__ import annotations

import triton
import triton.language as tl

NEG: tl.constexpr = tl.constexpr(float("-inf"))


@triton.jit
def _gelu(x):
    """GELU, 0.5 x (1 + erf(x / sqrt 2)), at fp32's accuracy in half the instructions of libdevice's
    erf (two branches, both run where a warp's values straddle them): erf(z) = 1 - q, q = t P(t)
    exp(-z^2), t = 1 / (1 + p z) (Abramowitz & Stegun 7.1.26: |error| <= 1.5e-7), with 1 / d as
    rsqrt(d)^2 and exp as exp2, the GPU's special-function units. Where x < 0, 1 + erf is q itself
    (no cancellation). Within 4.7e-7 of the exact GELU over [-12, 12] even at those units' worst
    errors: torch's CPU fp32 GELU is 3.8e-7 off with AVX2, 1.2e-6 with AVX-512 (tests/test_fused.py)."""
    z = tl.abs(x) * 0.7071067811865476
    r = tl.math.rsqrt(1.0 + 0.3275911 * z)
    t = r * r
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    q = poly * tl.exp2(z * z * -1.4426950408889634)
    return 0.5 * x * tl.where(x >= 0, 2.0 - q, q)


@triton.jit
def _spread(std, s1, s2, chan, cmask, scale):
    """Per channel: the noise's scale, alpha x the parents' mean channel std."""
    sa = tl.load(std + s1 + chan, mask=cmask, other=0.0)
    sb = tl.load(std + s2 + chan, mask=cmask, other=0.0)
    return scale * (0.5 * (sa + sb))


@triton.jit
def _child(pool, p1, p2, bank, noise_row, off, m, spread):
    """Child values at element offsets `off` of a member (channel x HW + pixel; any tile shape; 0
    where not m): the parents' mean plus the noise window's values times `spread`. p1, p2: the
    parents' first elements in `pool`; noise_row: the window's first element in `bank`."""
    a = tl.load(pool + p1 + off, mask=m, other=0.0)
    b = tl.load(pool + p2 + off, mask=m, other=0.0)
    nz = tl.load(bank + noise_row + off, mask=m, other=0.0)
    return tl.where(m, 0.5 * (a + b) + nz * spread, 0.0)


@triton.jit
def _row_pairs(HP: tl.constexpr, WP: tl.constexpr, H: tl.constexpr, W: tl.constexpr):
    """A padded HP x WP tile of an H x W map as its row pairs: each pair's top-row pixel offsets in
    the map ((HP + 1) // 2, WP) (the bottom row's are W further), and whether top and bottom are in
    it (a one-row map's bottom row is never)."""
    r = 2 * tl.arange(0, (HP + 1) // 2)[:, None]
    c = tl.arange(0, WP)[None, :]
    return r * W + c, (r < H) & (c < W), (r + 1 < H) & (c < W)


@triton.jit
def _pool(top, bottom, mt, mb, CB: tl.constexpr, HP: tl.constexpr, WP: tl.constexpr):
    """2x2 max pooling of a (CB, HP, WP) tile given as its row pairs' top and bottom rows, each
    (CB, HP // 2, WP): the rows' max is elementwise, the columns' a max of neighbours in a warp
    (reshaping the whole tile into windows put a window across warps: a shared-memory round trip
    and barriers per tile). Floor mode: only windows wholly inside the masks count; the caller masks
    the outputs past the map -> (CB, HP // 2, WP // 2)."""
    v = tl.maximum(tl.where(mt, top, NEG), tl.where(mb, bottom, NEG))
    return tl.max(tl.reshape(v, (CB, HP // 2, WP // 2, 2)), axis=3)


@triton.jit
def _add_pair(a, b, c, d):
    return a + c, b + d


@triton.jit
def _sum3(x):
    return tl.sum(tl.sum(tl.sum(x, axis=2), axis=1), axis=0)


@triton.jit
def _stage(v, mean, rstd, m, chan, cmask, a1p, b1p, a2p, b2p):
    """A downstream stage on a pooled (CB, h, w) tile normalized by the previous map's statistics:
    BN (eval: a per-channel affine), GELU, [identity conv], BN, GELU; 0 where not m."""
    a1 = tl.load(a1p + chan, mask=cmask, other=0.0)[:, None, None]
    b1 = tl.load(b1p + chan, mask=cmask, other=0.0)[:, None, None]
    a2 = tl.load(a2p + chan, mask=cmask, other=0.0)[:, None, None]
    b2 = tl.load(b2p + chan, mask=cmask, other=0.0)[:, None, None]
    x = (tl.where(m, v, mean) - mean) * rstd
    x = _gelu(x * a1 + b1)
    return tl.where(m, _gelu(x * a2 + b2), 0.0)


@triton.jit
def _head(acc, head, kk, feat, m, y, K: tl.constexpr, FEATURES: tl.constexpr):
    """acc[k] += head[k, feat] * y over a (CB, h, w) tile, elementwise into a (K_PAD, CB, h, w)
    accumulator: one reduction after the channel loop instead of one per class and tile."""
    k4 = kk[:, None, None, None]
    w = tl.load(head + k4 * FEATURES + feat[None, :, :, :], mask=(k4 < K) & m[None, :, :, :], other=0.0)
    return acc + w * y[None, :, :, :]


@triton.jit
def _sum4(acc):
    """(K_PAD, CB, h, w) -> (K_PAD,): a head accumulator's logits."""
    return tl.sum(tl.sum(tl.sum(acc, axis=3), axis=2), axis=1)


@triton.jit
def _grid(HP: tl.constexpr, WP: tl.constexpr, H: tl.constexpr, W: tl.constexpr):
    """A padded HP x WP tile of an H x W map: each pixel's offset in the map, and whether it is in it."""
    r = tl.arange(0, HP)[:, None]
    c = tl.arange(0, WP)[None, :]
    return r * W + c, (r < H) & (c < W)


@triton.jit
def _stage_pass(src, dst, row, mean, rstd, a1p, b1p, a2p, b2p, logits, head, kk, C: tl.constexpr,
                CB: tl.constexpr, HP: tl.constexpr, WP: tl.constexpr, H: tl.constexpr, W: tl.constexpr,
                TO_HEAD: tl.constexpr, K: tl.constexpr, K_PAD: tl.constexpr, NORM: tl.constexpr):
    """A downstream stage over every channel of a pooled H x W map (rows of HP x WP padded values
    in `src`, from row `row`), normalized by (mean, rstd): its own normalization (mean, 1/std), and
    either its 2x2 pool into `dst` (same rows, a quarter the size) or its part of the logits. Tiles
    are read as row pairs (`_pool`)."""
    q, mt, mb = _row_pairs(HP, WP, H, W)
    if not TO_HEAD:
        q_out, m_out = _grid(HP // 2, WP // 2, H // 2, W // 2)
    acc = tl.zeros((CB, (HP + 1) // 2, WP), tl.float32)  # the map's sums, elementwise: reduced once, after the loop
    acc_sq = tl.zeros((CB, (HP + 1) // 2, WP), tl.float32)
    head_acc = tl.zeros((K_PAD, CB, (HP + 1) // 2, WP), tl.float32)
    for c0 in range(0, C, CB):
        chan = c0 + tl.arange(0, CB)
        cmask = chan < C
        mmt = cmask[:, None, None] & mt[None, :, :]
        mmb = cmask[:, None, None] & mb[None, :, :]
        at = src + (row + chan[:, None, None]) * (HP * WP) + q[None, :, :]
        top = _stage(tl.load(at, mask=mmt, other=0.0), mean, rstd, mmt, chan, cmask, a1p, b1p, a2p, b2p)
        bottom = _stage(tl.load(at + W, mask=mmb, other=0.0), mean, rstd, mmb, chan, cmask, a1p, b1p, a2p, b2p)
        acc += top + bottom
        acc_sq += top * top + bottom * bottom
        if TO_HEAD:
            feat = chan[:, None, None] * (H * W) + q[None, :, :]
            head_acc = _head(head_acc, head, kk, feat, mmt, top, K, C * H * W)
            head_acc = _head(head_acc, head, kk, feat + W, mmb, bottom, K, C * H * W)
        else:
            tl.store(dst + (row + chan[:, None, None]) * (HP * WP // 4) + q_out[None, :, :],
                     _pool(top, bottom, mmt, mmb, CB, HP, WP), mask=cmask[:, None, None] & m_out[None, :, :])
    mean_out, rstd_out = _normalization(_sum3(acc), _sum3(acc_sq), C * H * W, NORM)
    if TO_HEAD:
        logits += _sum4(head_acc)
    return mean_out, rstd_out, logits


@triton.jit
def _normalization(total, total_sq, n, NORM: tl.constexpr):
    """(mean, 1/std) of a map from its sums; (0, 1) when the map is not normalized."""
    mean = total / n
    rstd = 1.0 / tl.sqrt(tl.maximum(total_sq / n - mean * mean, 0.0) + 1e-5)
    if NORM == 0:
        mean = 0.0
        rstd = 1.0
    return mean, rstd


@triton.jit
def _build_pass(pool, std, bank, p1, p2, s1, s2, noise_row, scale, chstats, buf1, pid, logits, head, kk,
                C: tl.constexpr, CB: tl.constexpr, H: tl.constexpr, W: tl.constexpr, HP: tl.constexpr,
                WP: tl.constexpr, N_STAGES: tl.constexpr, K: tl.constexpr, K_PAD: tl.constexpr,
                CHSTATS: tl.constexpr, UNROLL: tl.constexpr):
    """Pass 1 over every channel of the child: its (mean, 1/std, var), each channel's sums into
    `chstats` (with CHSTATS: only the explorers' spread is read again), and the first pool's max of
    the raw child into buf1, or, with no stage after, its part of the logits. The map's sums are
    kept elementwise and reduced once, after the loop."""
    HW: tl.constexpr = H * W
    pos, pt, pb = _row_pairs(HP, WP, H, W)
    if N_STAGES >= 1:
        q1, m1 = _grid(HP // 2, WP // 2, H // 2, W // 2)
    acc = tl.zeros((CB, (HP + 1) // 2, WP), tl.float32)
    acc_sq = tl.zeros((CB, (HP + 1) // 2, WP), tl.float32)
    head_acc = tl.zeros((K_PAD, CB, (HP + 1) // 2, WP), tl.float32)
    for c0 in tl.range(0, C, CB, loop_unroll_factor=UNROLL):
        chan = c0 + tl.arange(0, CB)
        cmask = chan < C
        mt = cmask[:, None, None] & pt[None, :, :]
        mb = cmask[:, None, None] & pb[None, :, :]
        off = chan[:, None, None] * HW + pos[None, :, :]
        spread = _spread(std, s1, s2, chan, cmask, scale)[:, None, None]
        top = _child(pool, p1, p2, bank, noise_row, off, mt, spread)
        bottom = _child(pool, p1, p2, bank, noise_row, off + W, mb, spread)
        acc += top + bottom
        acc_sq += top * top + bottom * bottom
        if CHSTATS:
            flat = tl.reshape(top + bottom, (CB, (HP + 1) // 2 * WP))
            flat_sq = tl.reshape(top * top + bottom * bottom, (CB, (HP + 1) // 2 * WP))
            csum, csq = tl.reduce((flat, flat_sq), 1, _add_pair)
            tl.store(chstats + pid * 2 * C + chan, csum, mask=cmask)
            tl.store(chstats + pid * 2 * C + C + chan, csq, mask=cmask)
        if N_STAGES == 0:
            head_acc = _head(head_acc, head, kk, off, mt, top, K, C * HW)
            head_acc = _head(head_acc, head, kk, off + W, mb, bottom, K, C * HW)
        else:
            tl.store(buf1 + (pid * C + chan[:, None, None]) * (HP * WP // 4) + q1[None, :, :],
                     _pool(top, bottom, mt, mb, CB, HP, WP), mask=cmask[:, None, None] & m1[None, :, :])
    mean = _sum3(acc) / (C * HW)
    var = tl.maximum(_sum3(acc_sq) / (C * HW) - mean * mean, 0.0)
    if N_STAGES == 0:
        logits += _sum4(head_acc)
    return mean, 1.0 / tl.sqrt(var + 1e-5), var, logits


@triton.jit
def build_score(pool, std, i1, i2, bank, offsets, labels, out_slot, scale,
                out, chstats, moments, ce_out, buf1, buf2,
                a11, b11, a12, b12, a21, b21, a22, b22, head, head_sum,
                M: tl.constexpr, POOL: tl.constexpr, STD: tl.constexpr, OUT: tl.constexpr,
                C: tl.constexpr, H: tl.constexpr, W: tl.constexpr, CB: tl.constexpr, CB2: tl.constexpr, CB3: tl.constexpr,
                CBW: tl.constexpr, HP: tl.constexpr, WP: tl.constexpr, HW_PAD: tl.constexpr,
                N_STAGES: tl.constexpr, NORM1: tl.constexpr, NORM2: tl.constexpr, K: tl.constexpr,
                K_PAD: tl.constexpr, SCORE: tl.constexpr, WRITE: tl.constexpr, CHSTATS: tl.constexpr,
                UNROLL: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    img = pid // M
    HW: tl.constexpr = H * W
    H1: tl.constexpr = H // 2  # the first pool's output, padded to H1P x W1P in buf1
    W1: tl.constexpr = W // 2
    H1P: tl.constexpr = HP // 2
    W1P: tl.constexpr = WP // 2
    H2: tl.constexpr = H1 // 2  # the second pool's, padded to H2P x W2P in buf2
    W2: tl.constexpr = W1 // 2
    H2P: tl.constexpr = H1P // 2
    W2P: tl.constexpr = W1P // 2
    p1 = (img * POOL + tl.load(i1 + pid)) * C * HW
    p2 = (img * POOL + tl.load(i2 + pid)) * C * HW
    s1 = (img * STD + tl.load(i1 + pid)) * C
    s2 = (img * STD + tl.load(i2 + pid)) * C
    noise_row = tl.load(offsets + pid) * HW
    kk = tl.arange(0, K_PAD)
    logits = tl.zeros((K_PAD,), tl.float32)
    # 1. the child, built once: its statistics; the first pool's windows into buf1 (or the head).
    # A child only written (SCORE == 0) takes the statistics its scoring launch left in `moments`.
    if SCORE:
        mean, rstd, var, logits = _build_pass(pool, std, bank, p1, p2, s1, s2, noise_row, scale, chstats, buf1, pid,
                                              logits, head, kk, C, CB, H, W, HP, WP, N_STAGES, K, K_PAD, CHSTATS,
                                              UNROLL)
        tl.store(moments + pid * 3, mean)
        tl.store(moments + pid * 3 + 1, rstd)
        tl.store(moments + pid * 3 + 2, var)
    else:
        mean = tl.load(moments + pid * 3)
        rstd = tl.load(moments + pid * 3 + 1)
    tl.debug_barrier()
    # 2. the first downstream stage on buf1; the second pool's max into buf2 (or the head)
    m_last = mean
    r_last = rstd
    if SCORE and N_STAGES >= 1:
        m_last, r_last, logits = _stage_pass(buf1, buf2, pid * C, mean, rstd, a11, b11, a12, b12, logits, head, kk,
                                             C, CB2, H1P, W1P, H1, W1, N_STAGES == 1, K, K_PAD, NORM1)
        tl.debug_barrier()
    # 3. the second downstream stage on buf2, into the head
    if SCORE and N_STAGES == 2:
        m_last, r_last, logits = _stage_pass(buf2, buf2, pid * C, m_last, r_last, a21, b21, a22, b22, logits, head, kk,
                                             C, CB3, H2P, W2P, H2, W2, True, K, K_PAD, NORM2)
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
        flat = tl.arange(0, HW_PAD)
        for c0 in tl.range(0, C, CBW, loop_unroll_factor=UNROLL):
            chan = c0 + tl.arange(0, CBW)
            cmask = chan < C
            wm = cmask[:, None] & (flat < HW)[None, :] & (slot >= 0)
            off = chan[:, None] * HW + flat[None, :]
            x = _child(pool, p1, p2, bank, noise_row, off, wm, _spread(std, s1, s2, chan, cmask, scale)[:, None])
            tl.store(dst + off, (x - mean) * rstd, mask=wm)
