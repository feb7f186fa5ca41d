"""The staged-model contract: all that the search and the learner ask of a network.

A *staged model* is any `nn.Module` with three attributes:

    x -> stem -> stages[0] -> stages[1] -> ... -> stages[-1] -> head -> logits
                 point 0      point 1            point N-1             point N

`stem` (a module, may be `nn.Identity`), `stages` (an `nn.ModuleList`) and `head` (last stage's
output -> (B, num_classes) logits). Its search points are the stage outputs and the logits;
their number and shapes are found by running the model once (`check_staged`), never assumed.
A stage output may be a conv map (C, H, W) or a vector (D,), or any other per-sample tensor
(treated as a vector). The functions below drive a model through the contract alone, so they
work for every model; a model need not define `forward` in any particular way.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from repsearch.errors import UserError


def sample_normalize(h: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance per sample over all non-batch dims (paper A.4's normalization)."""
    flat = h.reshape(h.shape[0], -1).float()  # fp32 statistics: E[x^2] - E[x]^2 cancels in bf16
    mean = flat.mean(1)
    # E[x^2] - E[x]^2: two plain reductions, ~6x faster than torch.var on CPU; safe here because
    # representations are O(1) in scale (clamped against rounding below zero).
    var = (flat * flat).mean(1) - mean * mean
    shape = (h.shape[0],) + (1,) * (h.dim() - 1)
    return (h - mean.reshape(shape)) * torch.rsqrt(var.clamp_min(0).reshape(shape) + eps)


class SampleNorm(nn.Module):
    """Parameter-free per-sample normalization: puts stage outputs in the space the search uses."""

    def forward(self, h):
        return sample_normalize(h)


def point_kind(shape: tuple, is_logits: bool) -> str:
    """How the search's operators treat a search point: "map" (C, H, W: channel-scaled noise,
    spatial smoothing), "vector" (any other stage output: element-scaled noise, no smoothing) or
    "logits" (recentred, not normalized)."""
    if is_logits:
        return "logits"
    return "map" if len(shape) == 3 else "vector"


def check_staged(model: nn.Module, input_shape, num_classes: int | None = None, name: str = "model") -> list[tuple]:
    """Check the contract on a probe batch (zeros: no random numbers are consumed) and return the
    search points' per-sample shapes, logits last. Breaking it is a UserError naming what is wrong.
    `num_classes` None: whatever the head returns, as long as it is (batch, classes)."""
    missing = [a for a in ("stem", "stages", "head") if not isinstance(getattr(model, a, None), nn.Module)]
    if missing:
        raise UserError(f"{name} is not a staged model: it has no module attribute {', '.join(missing)} "
                        "(see docs/method.md, 'The model contract')")
    if not isinstance(model.stages, nn.ModuleList) or len(model.stages) == 0:
        raise UserError(f"{name}.stages must be a non-empty nn.ModuleList (each stage's output is a search point); "
                        f"got {type(model.stages).__name__}")
    was = model.training
    model.eval()
    shapes, h = [], torch.zeros(2, *input_shape, device=_device(model))
    try:
        with torch.no_grad():
            h = _probe(model.stem, h, f"{name}.stem")
            for i, stage in enumerate(model.stages):
                h = _probe(stage, h, f"{name}.stages[{i}]")
                shapes.append(tuple(h.shape[1:]))
            logits = _probe(model.head, h, f"{name}.head")
    finally:
        model.train(was)
    if logits.dim() != 2 or (num_classes is not None and logits.shape[1] != num_classes):
        raise UserError(f"{name}.head must return (batch, {num_classes or 'classes'}) logits; it returned shape "
                        f"{tuple(logits.shape)} for a batch of 2")
    return shapes + [(logits.shape[1],)]


def _probe(module: nn.Module, h: torch.Tensor, where: str) -> torch.Tensor:
    try:
        out = module(h)
    except Exception as e:  # the user's module failed on the shape it is given
        raise UserError(f"{where} failed on input of shape {tuple(h.shape)}: {type(e).__name__}: {e}") from None
    if not isinstance(out, torch.Tensor) or out.dim() < 2 or out.shape[0] != h.shape[0]:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"{where} must keep the batch dimension: input batch {h.shape[0]}, output {got}")
    return out


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def normalize_stages(model: nn.Module) -> nn.Module:
    """End every stage in `SampleNorm` (in place, once): with `search.target_space = "normalized"`
    the search network and the learner then live in the space of the searched targets."""
    if not all(ends_normalized(stage) for stage in model.stages):
        model.stages = nn.ModuleList(nn.Sequential(stage, SampleNorm()) for stage in model.stages)
    return model


def ends_normalized(stage: nn.Module) -> bool:
    return isinstance(stage, nn.Sequential) and len(stage) > 0 and isinstance(stage[-1], SampleNorm)


def stage_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every stage's output for a batch of inputs."""
    h, out = model.stem(x), []
    for stage in model.stages:
        h = stage(h)
        out.append(h)
    return out


def representations(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The value at every search point: stage outputs, then logits."""
    outs = stage_outputs(model, x)
    return outs + [model.head(outs[-1])]


def forward_from(model: nn.Module, point: int, h: torch.Tensor) -> torch.Tensor:
    """Logits from the representation `h` at search point `point` (the logits point returns h)."""
    if point == len(model.stages):
        return h
    for stage in model.stages[point + 1:]:
        h = stage(h)
    return model.head(h)


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return forward_from(model, -1, model.stem(x))


def forward_flops(model: nn.Module, in_shape, device="cpu") -> int:
    """FLOPs of one input's forward pass (multiply-adds count 2), by PyTorch's flop counter (on
    a batch of 2, halved: BatchNorm on batch statistics needs more than one value per channel)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.zeros(2, *in_shape, device=device)
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        logits(model, x)
    model.train(was_training)
    return int(counter.get_total_flops()) // 2
