"""Models behind one contract (`staged`): the built-in families and a user's own factory.

`model.name` picks the family: `airbench` (the paper's network, default), `mlp`, `resnet`, or
`MODULE:FACTORY` for a user's model, where `FACTORY(input_shape, num_classes)` returns a staged
model (optionally taking `role=` "search" / "learner" / "baseline" and `depth=`), and MODULE is
importable (the current directory is put on the path). Every role builds a fresh instance.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys

import torch.nn as nn

from repsearch.errors import UserError

from . import airbench, mlp, resnet
from .staged import check_staged, normalize_stages

BUILTIN = {"airbench": airbench.build, "mlp": mlp.build, "resnet": resnet.build}
ROLES = ("search", "learner", "baseline")


def is_user_model(name: str) -> bool:
    return ":" in name


def load_factory(spec: str):
    """`MODULE:FACTORY` -> the callable, or a UserError saying what is missing."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"model.name='{spec}': a user model is named MODULE:FACTORY, e.g. mymodels:make_net")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise UserError(f"model.name='{spec}': cannot import '{module_name}' ({type(e).__name__}: {e}); it must be "
                        "importable from the current directory or PYTHONPATH") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(f"model.name='{spec}': module '{module_name}' has no callable '{attr}'")
    return factory


def user_model_source_hash(spec: str) -> str:
    """A hash of the user model's module source: a cache made with other code is not reused."""
    module = inspect.getmodule(load_factory(spec))
    try:
        text = inspect.getsource(module)
    except (OSError, TypeError):
        text = spec
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _call_factory(factory, spec: str, input_shape, num_classes: int, role: str, depth: int) -> nn.Module:
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in (("role", role), ("depth", depth)) if takes_any or k in params}
    try:
        model = factory(tuple(input_shape), num_classes, **kwargs)
    except Exception as e:
        raise UserError(f"model.name='{spec}': the factory failed for input shape {tuple(input_shape)} "
                        f"({type(e).__name__}: {e})") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model.name='{spec}': the factory returned {type(model).__name__}, not an nn.Module")
    return model


def build_model(cfg, role: str, input_shape, num_classes: int, *, depth: int = 1, init: str = "default",
                normalize: bool = False) -> tuple[nn.Module, list[tuple]]:
    """A fresh staged model for `role`, its contract checked; returns (model, search point shapes).
    `normalize` ends every stage in a per-sample normalization (the normalized target space)."""
    name = cfg.model.name
    if is_user_model(name):
        model = _call_factory(load_factory(name), name, input_shape, num_classes, role, depth)
    else:
        try:
            model = BUILTIN[name](cfg.model, input_shape, num_classes, depth=depth, init=init)
        except ValueError as e:
            raise UserError(f"model.name={name}: {e}") from None
    shapes = check_staged(model, input_shape, num_classes, name=f"model '{name}'")
    if normalize:
        normalize_stages(model)
    return model, shapes


def init_from_data(model: nn.Module, images) -> None:
    """The contract's optional data-dependent init (airbench fits its whitening on training images)."""
    hook = getattr(model, "init_from_data", None)
    if callable(hook):
        hook(images)
