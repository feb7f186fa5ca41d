"""A staged MLP: stem = flatten, each stage = `depth` x (Linear -> LayerNorm -> GELU), head = Linear.

Its search points are vectors (D,): the search's operators take element-scaled noise there and
no smoothing. LayerNorm is per sample, so a candidate's fitness never depends on its batch mates.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def _layer(d_in: int, d_out: int, init: str) -> nn.Sequential:
    linear = nn.Linear(d_in, d_out)
    if init == "dirac" and d_out >= d_in:  # partial identity, as airbench's convs: every input passes
        with torch.no_grad():                # through (a narrowing layer keeps its random init: an identity
            linear.weight[:d_in] = torch.eye(d_in)  # there would drop most of its inputs)
            linear.bias[:d_in] = 0
    return nn.Sequential(linear, nn.LayerNorm(d_out), nn.GELU())


class MLP(nn.Module):
    def __init__(self, input_shape, num_classes: int, widths=(256, 256, 256), depth: int = 1, init: str = "default"):
        super().__init__()
        self.stem = nn.Flatten()
        dims = [math.prod(input_shape), *widths]
        self.stages = nn.ModuleList(
            nn.Sequential(*[_layer(dims[i] if j == 0 else dims[i + 1], dims[i + 1], init) for j in range(depth)])
            for i in range(len(widths)))
        self.head = nn.Linear(dims[-1], num_classes)


def build(cfg_model, input_shape, num_classes: int, depth: int = 1, init: str = "default") -> MLP:
    return MLP(tuple(input_shape), num_classes, tuple(cfg_model.widths), depth, init)
