"""A fused generation for map points: each child is built where it is scored (`engine.fused`).

The compiled path writes a generation's children and reads them back through several passes
(crossover, noise, normalization, the channel std, pooling, BatchNorm, GELU, ... each a trip
through memory). Here one Triton program per child reads its two parents' values and its noise
window, builds the child (`strategy.ask`'s mutation, from the same draws) once to score it through
the rest of the search network, without writing anything map-sized: max-pooling is taken on the
raw child (it commutes with the positive per-sample normalization), BatchNorm in eval mode is a
per-channel affine, the square Dirac convolutions are skipped as the engine skips them, each later
stage's pooled output is a small buffer, and the head is linear, so the last normalization is
applied to the logits. A child is written (built a second time) only when the search reads it
again: the explorers, which the refiners breed from, and the refiners among the next parents or
the best. What the search defines stays defined once: the draws come from `strategy.draw`, the
parents from `strategy.select_parents` / `parent_order`, the best from `strategy.best`.

A point qualifies (`plan_for`) when the rest of the network is the paper's: airbench blocks of
depth 1 whose convolutions are marked identity, a pool, BatchNorm with running statistics, GELU,
optionally a per-sample normalization, and the linear head; and when the noise is the bank's
pre-smoothed maps (`search.noise = "bank"`, `search.smooth = "noise"`) in fp32. Otherwise the
compiled or eager path runs. On a CPU the kernel runs only under Triton's interpreter
(`TRITON_INTERPRET=1`), which is how the tests check it against the eager path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn as nn

from repsearch.errors import UserError
from repsearch.models.airbench import Block, Head
from repsearch.models.staged import SampleNorm

from .strategy import Draws, best_index, parent_order, select_parents


@dataclass(frozen=True)
class Stage:
    """One downstream stage: pool (H, W) -> (H // 2, W // 2), BN, GELU, BN, GELU, [SampleNorm]."""
    height: int
    width: int
    bn1: tuple[torch.Tensor, torch.Tensor]  # per-channel (scale, shift) of BatchNorm in eval mode
    bn2: tuple[torch.Tensor, torch.Tensor]
    normalized: bool


@dataclass(frozen=True)
class Plan:
    """What scoring from a map point does, as parameters the kernel takes."""
    channels: int
    height: int
    width: int
    stages: tuple[Stage, ...]  # 0, 1 or 2 downstream stages
    head: torch.Tensor  # (classes, features): the linear head times its scale
    head_sum: torch.Tensor  # (classes,): W.1, for the normalization the kernel applies to the logits
    # The kernel's tiling: channels per tile (0: `fused_launch.constexprs`' default) and warps per
    # program; benchmarks/fused_tiles.py times the choices on a GPU.
    channel_tile: int = 0
    num_warps: int = 4


def _affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """An eval-mode BatchNorm as y = scale * x + shift per channel (None: it uses batch statistics)."""
    if bn.training or bn.running_mean is None or not bn.track_running_stats:
        return None
    scale = (bn.weight if bn.weight is not None else 1.0) / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias if bn.bias is not None else 0.0) - bn.running_mean * scale
    return scale.detach().float().contiguous(), shift.detach().float().contiguous()


def _stage(module: nn.Module, height: int, width: int) -> Stage | None:
    """A stage the kernel can score through, or None."""
    parts = list(module) if isinstance(module, nn.Sequential) and not isinstance(module, Block) else [module]
    block, rest = parts[0], parts[1:]
    if not isinstance(block, Block) or len(block) != 1 or any(not isinstance(m, SampleNorm) for m in rest):
        return None
    group = block[0]
    if not (group.conv1.is_identity and group.conv2.is_identity) or isinstance(group.pool, nn.Identity):
        return None
    bn1, bn2 = _affine(group.norm1), _affine(group.norm2)
    if bn1 is None or bn2 is None:
        return None
    return Stage(height, width, bn1, bn2, normalized=bool(rest))


def plan_for(model: nn.Module, point: int, shapes: list[tuple]) -> Plan | None:
    """The fused plan of scoring from map point `point`, when the rest of `model` qualifies."""
    if len(shapes[point]) != 3 or point >= len(model.stages) or not isinstance(model.head, Head):
        return None
    channels, height, width = shapes[point]
    stages = []
    for later in range(point + 1, len(model.stages)):
        h, w = shapes[later - 1][1:]
        stage = _stage(model.stages[later], h, w)
        if stage is None or shapes[later][0] != channels:
            return None
        stages.append(stage)
    if len(stages) > 2:
        return None
    head = (model.head.linear.weight * model.head.scale).detach().float().contiguous()
    return Plan(channels, height, width, tuple(stages), head, head.sum(1).contiguous())


def tiled(plan: Plan, tiling: str) -> Plan:
    """`plan` with the kernel tiling "CHANNELSxWARPS" (`engine.fused_tiling`; "" keeps the default)."""
    if not tiling:
        return plan
    channels, warps = (int(v) for v in tiling.split("x"))
    return replace(plan, channel_tile=channels, num_warps=warps)


def generation(plan: Plan, pop, ce, labels, source, draws: Draws, *, top_k, n_explore, alpha, boost, **_unused):
    """One generation with the children built and scored by the kernel: the same parents, draws and
    population as `strategy.generation` (whose other settings, fixed by `plan`, are not needed).

    Only the members the search reads are written: the parents, the explorers (refiners breed from
    them), and the refiners among the next parents or the best (`strategy.parent_order`, `best`);
    the other refiners' slots are left unwritten: they are scored, never read again."""
    parents, parent_ce, parent_std = select_parents(pop, ce, top_k, "map")
    b, k = parent_ce.shape
    pe, pr, offsets = draws.picks_explore, draws.picks_refine, draws.noise
    new_pop = pop.new_empty(b, k + offsets.shape[1], *pop.shape[2:])
    new_pop[:, :k] = parents
    slots = torch.arange(k, k + n_explore, device=pop.device).expand(b, -1)
    explorers = build_and_score(plan, new_pop, parent_std, pe[:, 0], pe[:, 1], source, offsets[:, :n_explore],
                                alpha * boost, labels, out=new_pop, out_slot=slots)
    pool_std = torch.cat([parent_std, explorers.std], 1)
    refiners = build_and_score(plan, new_pop, pool_std, pr[:, 0], pr[:, 1], source, offsets[:, n_explore:], alpha,
                               labels, channel_stats=False)
    new_ce = torch.cat([parent_ce, explorers.ce, refiners.ce], 1)
    _write_kept_refiners(plan, new_pop, new_ce, refiners.moments, pool_std, pr, source, offsets[:, n_explore:], alpha,
                         labels, first=k + n_explore, top_k=top_k)
    return new_pop, new_ce


def _write_kept_refiners(plan: Plan, new_pop, new_ce, moments, pool_std, picks, source, offsets, scale: float, labels,
                         *, first: int, top_k: int) -> None:
    """Build and write the refiners (members `first`...) the search reads next: the next
    generation's parents and this one's best (the same selections `strategy` makes), normalized by
    the `moments` their scoring left."""
    kept = torch.cat([parent_order(new_ce, top_k), best_index(new_ce)[:, None]], 1)
    j = kept - first
    slot = torch.where(j >= 0, kept, -1)
    j = j.clamp(min=0)
    i1, i2 = picks[:, 0].gather(1, j), picks[:, 1].gather(1, j)
    build_and_score(plan, new_pop, pool_std, i1, i2, source, offsets.gather(1, j), scale, labels, out=new_pop,
                    out_slot=slot, score=False, moments=moments.gather(1, j[..., None].expand(-1, -1, 3)))


class Scored(NamedTuple):
    """What a launch returns: CE (B, M) (undefined unscored), each child's channel std (B, M, C)
    after its normalization (None unasked), and its moments (B, M, 3): mean, 1/std, var."""
    ce: torch.Tensor
    std: torch.Tensor | None
    moments: torch.Tensor


def build_and_score(plan: Plan, pool, pool_std, i1, i2, source, offsets, scale: float, labels, *, out=None,
                    out_slot=None, score: bool = True, channel_stats: bool = True, moments=None) -> Scored:
    """Children (B, M, C, H, W) = normalize(mean of pool[i1], pool[i2] + noise x scale x their mean
    channel std), noise = `source` rows (pre-smoothed maps) from `offsets`: their CE through the rest
    of the network, and (with channel_stats) their channel std; with `out`, child m of image b is
    written at out[b, out_slot[b, m]] (-1: not written). Children only written (score=False) are
    normalized by the `moments` their scoring returned: the same numbers, not recomputed."""
    from . import fused_launch
    if pool.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise UserError("engine.fused runs on a CUDA device (on a CPU only under TRITON_INTERPRET=1, for tests); "
                        "set engine.fused=[] here")
    ce, chstats, moments = fused_launch.launch(plan, pool, pool_std, i1, i2, source, offsets, scale, labels,
                                               out=out, out_slot=out_slot, score=score, channel_stats=channel_stats,
                                               moments=moments, channel_tile=plan.channel_tile,
                                               num_warps=plan.num_warps)
    std = None if chstats is None else channel_std(chstats, moments, plan.height * plan.width)
    return Scored(ce, std, moments)


def channel_std(chstats, moments, hw: int):
    """Each child's per-channel std after its normalization (`operators.member_std` of the written
    child), from the kernel's raw sums: std of the raw channel x the normalization's 1/std. A 1x1
    map has no spatial spread: every channel takes the spread across channels."""
    csum, csq = chstats.unbind(2)
    rstd, var = moments[..., 1:2], moments[..., 2:3]
    cvar = (csq / hw - (csum / hw) ** 2).clamp_min(0) if hw > 1 else var.expand_as(csum)
    return cvar.sqrt() * rstd
