"""Checks of a config against the model it builds, before anything is written: the search
network's points, the learner's stage shapes, and the SGD model."""
from __future__ import annotations

from repsearch.errors import UserError
from repsearch.models import build_model
from repsearch.search.pool import fit_points


def preflight(cfg, prep) -> None:
    """Build the search network and the learner and check the config against them, so that a bad
    model or setting is one line before anything is written. The learner's stages must have the
    search network's output shapes: they regress to its searched representations."""
    args = (prep.dataset.shape, prep.dataset.num_classes)
    shapes = fit_points(cfg, prep)
    _, learner = build_model(cfg, "learner", *args, depth=cfg.learn.groups_per_block, init=cfg.learn.init)
    if learner[:-1] != shapes[:-1]:
        raise UserError(f"the learner's stage outputs {learner[:-1]} differ from the search network's {shapes[:-1]}; "
                        "a factory may give the learner more depth (role='learner'), not other stage shapes")


def check_baseline_model(cfg, prep) -> None:
    """The SGD model builds and keeps the staged contract (a bad model: one line, nothing written)."""
    build_model(cfg, "baseline", prep.dataset.shape, prep.dataset.num_classes)
