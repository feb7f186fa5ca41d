"""The search problem: score candidate representations at a search point of a staged model.

A candidate at point l is scored by running the rest of the model from l (`forward_from`) and
taking the cross-entropy with the image's label. This module also builds the search network
(untrained, its BatchNorm statistics calibrated on clean images and then frozen, so that a
candidate's fitness depends on it alone) and sets it up for search.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import fastpaths
from .models import build_model, init_from_data
from .models.staged import check_staged, forward_from, normalize_stages

BATCHNORMS = nn.modules.batchnorm._BatchNorm


class StagedProblem:
    """Candidates at search point `point` -> their cross-entropy, through the rest of `model`."""

    def __init__(self, model: nn.Module, shapes: list[tuple], max_rows: int = 4096, precision: str = "fp32"):
        """`precision="bf16"`: candidates are scored under bfloat16 autocast (convolutions and
        matmuls in bf16; per-sample statistics and the cross-entropy stay fp32)."""
        self.model, self.shapes, self.max_rows, self.precision = model, list(shapes), max_rows, precision

    @property
    def num_points(self) -> int:
        return len(self.shapes)

    def logits_from(self, point: int, h: torch.Tensor, phases: bool = False) -> torch.Tensor:
        if phases:
            return fastpaths.forward_from_phases(self.model, point, h)
        return forward_from(self.model, point, h)

    def score(self, point: int, cands: torch.Tensor, labels: torch.Tensor, phases: bool = False) -> torch.Tensor:
        """cands (B, M, *S), labels (B,) -> CE (B, M), in row blocks of at most `max_rows`.
        `phases`: maps in pooling-phase pixel order (`fastpaths`)."""
        b, m = cands.shape[:2]
        flat, y = cands.reshape(b * m, *cands.shape[2:]), labels.repeat_interleave(m)
        with torch.autocast(cands.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            logits = [self.logits_from(point, flat[i:i + self.max_rows], phases) for i in range(0, b * m, self.max_rows)]
        parts = [F.cross_entropy(z.float(), y[i * self.max_rows:(i + 1) * self.max_rows], reduction="none")
                 for i, z in enumerate(logits)]
        return (parts[0] if len(parts) == 1 else torch.cat(parts)).reshape(b, m)

    def enter(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs (N, *input) -> their representation at search point 0."""
        return self.model.stages[0](self.model.stem(x))

    def advance(self, point: int, h: torch.Tensor) -> torch.Tensor:
        """The representation at `point` from one at `point - 1` (a stage, or the head for the logits)."""
        return self.model.stages[point](h) if point < len(self.model.stages) else self.model.head(h)


def build_search_model(cfg, input_shape, num_classes: int, train_images: torch.Tensor, device: str,
                       network: nn.Module | None = None):
    """The untrained search network (depth 1 per stage; airbench: Dirac-initialized), its
    data-dependent init done on training images and its BatchNorm statistics calibrated on
    `search.calib_images` of them. Returns (model, search point shapes). `network`: search with a
    copy of this (e.g. trained) staged model instead; its weights are kept as they are, only its
    BatchNorm statistics are calibrated the same way."""
    x = train_images.cpu()
    if network is None:
        torch.manual_seed(cfg.seed)
        model, shapes = build_model(cfg, "search", input_shape, num_classes, depth=1, init="dirac",
                                    normalize=cfg.search.target_space == "normalized")
        init_from_data(model, x)
    else:
        model = copy.deepcopy(network).cpu()
        if cfg.search.target_space == "normalized":
            normalize_stages(model)
        shapes = check_staged(model, tuple(input_shape), num_classes, name="search network")
    calibrate_batchnorm(model, x[:cfg.search.calib_images])
    return model.to(device), shapes


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch: int = 500) -> None:
    """BatchNorm statistics as the cumulative average over clean images, then eval mode."""
    norms = [m for m in model.modules() if isinstance(m, BATCHNORMS)]
    for m in norms:
        if m.running_mean is None:  # built without running statistics (the paper's BN): give it some
            m.register_buffer("running_mean", torch.zeros(m.num_features))
            m.register_buffer("running_var", torch.ones(m.num_features))
            m.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        m.track_running_stats, m.momentum = True, None
        m.reset_running_stats()
    model.train()
    if norms:
        for i in range(0, len(images), batch):
            forward_from(model, -1, model.stem(images[i:i + batch]))
    model.eval()


def configure_search_mode(model: nn.Module, cfg_search, cfg_engine) -> None:
    """BN behaviour for the search and the engine's exact accelerations (identity modules)."""
    model.eval()
    if cfg_search.bn == "batch":  # the paper's BN without running stats: couples candidates
        for m in model.modules():
            if isinstance(m, BATCHNORMS):
                m.train()
                m.track_running_stats = False
    fastpaths.mark_identity_modules(model, on=cfg_engine.fast)
