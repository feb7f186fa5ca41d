"""airbench's SGD convention for every gradient-trained model here: parameter groups, learning
rates per 1,024 examples, the warm-up and decay schedule, and the step budget in epochs."""
from __future__ import annotations

import torch
import torch.nn as nn


def torch_lr(lr: float, momentum: float) -> float:
    """airbench's convention: `lr` per 1,024 examples on a batch-summed loss, corrected for the
    momentum's effective step 1/(1 - momentum). PyTorch's lr = lr / (1024 * (1 + 1/(1-m)))."""
    return lr / (1024 * (1 + 1 / (1 - momentum)))


def make_optimizer(params_groups: list[dict], tc, batch_size: int) -> torch.optim.SGD:
    """SGD Nesterov; each group may carry `lr_scale` (BN biases: bias_scaler; the head: its own)."""
    base = torch_lr(tc.lr, tc.momentum)
    wd = tc.weight_decay * batch_size / (1024 * (1 + 1 / (1 - tc.momentum)))
    groups = []
    for g in params_groups:
        scale = g.pop("lr_scale", 1.0)
        groups.append({**g, "lr": base * scale, "initial_lr": base * scale, "weight_decay": wd / scale})
    return torch.optim.SGD(groups, lr=base, momentum=tc.momentum, nesterov=True)


def standard_groups(model: nn.Module, tc, exclude: set[int] = frozenset()) -> list[dict]:
    """BatchNorm biases (and a data-initialized bias such as airbench's whitening) get lr x bias_scaler."""
    biases, others = [], []
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in exclude:
                continue
            scaled = isinstance(m, nn.modules.batchnorm._BatchNorm) or getattr(m, "bias_warmup_only", False)
            (biases if scaled and name == "bias" else others).append(p)
    return [g for g in ({"params": others}, {"params": biases, "lr_scale": tc.bias_scaler}) if g["params"]]


def lr_factor(step: int, total: int, warmup: float, final: float) -> float:
    """Linear warm-up from 0.2x to 1x over `warmup` of the steps, then linear decay to `final`."""
    w = max(1, int(total * warmup))
    if step < w:
        return 0.2 + 0.8 * step / w
    return 1.0 + (final - 1.0) * (step - w) / max(1, total - w)


def set_lr(opt: torch.optim.Optimizer, factor: float) -> None:
    for g in opt.param_groups:
        g["lr"] = g["initial_lr"] * factor


def freeze_whitening_bias(model: nn.Module) -> None:
    for m in model.modules():
        if getattr(m, "bias_warmup_only", False):  # airbench's whitening: trained for whiten_bias_epochs
            m.bias.requires_grad = False
            m.bias.grad = None


def planned_epochs(tc, steps_per_epoch: int) -> int:
    """`epochs`, lowered to the whole epochs that `max_steps` covers (rounded up, so a large
    training set keeps the steps a preset was tuned with), then raised so that a small training
    set still gets `min_steps` optimizer steps."""
    per = max(1, steps_per_epoch)
    epochs = min(tc.epochs, -(-tc.max_steps // per)) if tc.max_steps else tc.epochs
    return max(epochs, -(-tc.min_steps // per))
