"""Where and how a model computes: device and memory layout, bf16 autocast, evaluation, and the
machine's matmul peak (the reference for 'fraction of peak' figures)."""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.nn as nn

from repsearch.models.staged import logits as staged_logits
from repsearch.models.staged import stage_outputs


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000, autocast=None,
             keep_outputs: bool = False) -> dict:
    """Accuracy and mean cross-entropy in eval mode. `keep_outputs`: also return every stage's
    output ("outputs": the forward the accuracy came from, so bf16-rounded under CUDA's autocast,
    stored as fp32), so that per-epoch diagnostics on the same images need no second forward
    pass (at 4,800 MNIST validation images that pass is ~12 s of a ~160 s epoch on CPU)."""
    model.eval()
    correct, loss, outs = 0, 0.0, []
    for i in range(0, len(y), batch_size):
        with autocast() if autocast else nullcontext():
            if keep_outputs:
                outs.append(stage_outputs(model, x[i:i + batch_size]))
                logits = model.head(outs[-1][-1]).float()
            else:
                logits = staged_logits(model, x[i:i + batch_size]).float()
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
        loss += nn.functional.cross_entropy(logits, y[i:i + batch_size], reduction="sum").item()
    model.train()
    result = {"accuracy": correct / max(1, len(y)), "loss": loss / max(1, len(y))}
    if keep_outputs:
        result["outputs"] = [torch.cat([batch[k] for batch in outs]).float() for k in range(len(model.stages))]
    return result


def autocast_for(device: str, precision: str = "fp32"):
    """A bf16 autocast context factory for `precision="bf16"`, or None: full fp32."""
    if precision == "bf16":
        kind = "cuda" if device.startswith("cuda") else "cpu"
        return lambda: torch.autocast(kind, dtype=torch.bfloat16)
    return None


def channels_last(device: str, memory_format: str = "auto") -> bool:
    """Whether training runs in channels_last: asked for, or "auto" on CUDA."""
    if memory_format not in ("auto", "channels_last", "contiguous"):
        from repsearch.errors import UserError
        raise UserError(f"memory_format must be auto, channels_last or contiguous; got '{memory_format}'")
    return memory_format == "channels_last" or (memory_format == "auto" and device.startswith("cuda"))


def prepare_model_for_device(model: nn.Module, device: str, memory_format: str = "auto") -> nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last(device, memory_format) else model


def in_layout(tensors: dict, device: str, memory_format: str = "auto") -> dict:
    """4-d tensors (regression targets) in the layout the model computes in, so that the loss
    subtracts like from like instead of paying a strided copy per block per step."""
    if not channels_last(device, memory_format):
        return tensors
    return {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in tensors.items()}


def matmul_peak_flops(device: str = "cpu", n: int = 1024, repeats: int = 5) -> float:
    """Achieved FLOP/s of a square fp32 matmul on this device, measured now (the reference for
    'fraction of peak' figures, so that ratios are taken in one process on one noisy machine)."""
    import time
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = math.inf
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best
