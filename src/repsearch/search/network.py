"""The search network: the one place a staged model is made ready to score candidates.

Whatever the model (the config's untrained network, a learned one carried into a later round,
or a user's own through the Python API), the same steps, in this order: a private copy, its
stages ending in per-sample normalization (the normalized target space), its data-dependent
init (a fresh network only), BatchNorm statistics calibrated on clean images and frozen (so a
candidate's fitness depends on it alone), stored weights if a cache holds them, and the search
mode (BatchNorm behaviour, exactly-identity modules marked for skipping).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from repsearch.models import build_model, init_from_data
from repsearch.models.staged import check_staged, forward_from, normalize_stages

from . import fastpaths

BATCHNORMS = nn.modules.batchnorm._BatchNorm


def build_search_network(cfg, input_shape, num_classes: int, train_images: torch.Tensor, device: str,
                         network: nn.Module | None = None, weights: dict | None = None):
    """The config's untrained search network (depth 1 per stage, Dirac-initialized), seeded by
    `cfg.seed`; or, given `network`, a copy of that staged model with its weights kept. Returns
    (model ready for search, search point shapes)."""
    fresh = network is None
    if fresh:
        torch.manual_seed(cfg.seed)
        network, _ = build_model(cfg, "search", input_shape, num_classes, depth=1, init="dirac")
    return prepare_network(network, train_images, cfg.search, cfg.engine, device, data_init=fresh, weights=weights,
                           num_classes=num_classes)


def prepare_network(model: nn.Module, calib_images: torch.Tensor, search_cfg, engine_cfg, device, *,
                    data_init: bool, weights: dict | None = None, num_classes: int | None = None):
    """A copy of `model` made ready for search (module docstring); `weights`: a state dict to load
    before the search mode is set (a cache's stored network). Returns (model, shapes)."""
    x = calib_images.cpu()
    model = copy.deepcopy(model).cpu()
    shapes = check_staged(model, tuple(x.shape[1:]), num_classes, name="search network")
    if search_cfg.target_space == "normalized":
        normalize_stages(model)
    if data_init:
        init_from_data(model, x)
    calibrate_batchnorm(model, x[:search_cfg.calib_images])
    model = model.to(device)
    if weights is not None:
        model.load_state_dict(weights)
    configure_search_mode(model, search_cfg, engine_cfg)
    return model, shapes


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
