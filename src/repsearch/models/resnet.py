"""A small pre-activation ResNet (He et al. 2016) whose stages are its residual stages.

    stem: Conv3x3 -> stages[i]: `depth` pre-activation blocks, the first with stride 2 ->
    head: BN -> ReLU -> global average pool -> Linear

A block is BN -> ReLU -> Conv3x3(stride) -> BN -> ReLU -> Conv3x3, added to the input (a 1x1
strided conv where the shape changes). Stage outputs are the residual stream, conv maps (C, H, W).
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + self.shortcut(x)


class Head(nn.Module):
    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.norm, self.linear = nn.BatchNorm2d(channels), nn.Linear(channels, num_classes)

    def forward(self, h):
        return self.linear(F.relu(self.norm(h)).mean((2, 3)))


class ResNet(nn.Module):
    def __init__(self, input_shape, num_classes: int, widths=(16, 32, 64), depth: int = 1, init: str = "default"):
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"resnet takes images (C, H, W); got input shape {tuple(input_shape)}")
        self.stem = nn.Conv2d(input_shape[0], widths[0], 3, 1, 1, bias=False)
        chans = [widths[0], *widths]
        self.stages = nn.ModuleList(
            nn.Sequential(*[PreActBlock(chans[i] if j == 0 else chans[i + 1], chans[i + 1], 2 if j == 0 else 1)
                            for j in range(depth)])
            for i in range(len(widths)))
        self.head = Head(widths[-1], num_classes)
        if init == "dirac":
            for m in self.modules():
                if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                    nn.init.dirac_(m.weight[:min(m.weight.shape[:2])])


def build(cfg_model, input_shape, num_classes: int, depth: int = 1, init: str = "default") -> ResNet:
    return ResNet(tuple(input_shape), num_classes, tuple(cfg_model.widths), depth, init)
