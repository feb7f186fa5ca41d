"""The learner's objective (paper Section 4.2): regression of stage outputs to searched targets,
and the head's KL to the searched logits.

    L = mean_{l in S} mean_elements (H_theta^l(x) - H_hat^l(x))^2  +  lambda * KL(p_hat || p_phi(sg(H_theta^last(x))))
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import measures


def regression_loss(outputs: list[torch.Tensor], targets: list[torch.Tensor], supervise,
                    weights: list[torch.Tensor] | None = None, reduction: str = "mean") -> tuple[torch.Tensor, dict]:
    """Per image, summed over the batch (airbench's convention). `reduction="mean"` (default): the
    mean over supervised blocks of the (optionally element-weighted) per-element squared error, so
    every block weighs the same whatever its size. `"sum"`: the paper's equation, each block's
    squared L2 norm, divided by the number of stages whichever are supervised (Skip block 0
    divides by 3, not 2). Returns (loss, per-block per-element means)."""
    total, parts = 0.0, {}
    divisor = len(supervise) if reduction == "mean" else len(outputs)
    for l in supervise:
        err = (outputs[l].float() - targets[l].float()).pow(2)
        if weights is not None:
            err = err * weights[l]
        dims = tuple(range(1, err.dim()))  # not flatten(1): that copies a channels_last tensor
        per_element = err.mean(dims)
        per_image = per_element if reduction == "mean" else err.sum(dims)
        total = total + per_image.sum() / divisor
        parts[f"mse_block{l}"] = per_element.mean().detach()  # tensors: no sync inside a compiled step
    return total, parts


def class_informative_weights(targets: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-element weights = share of the element's variance across images that the class
    explains (between-class / total), normalized to mean 1: the `class_weighted` loss spends its
    effort on the part of a target that a function of the image can predict."""
    flat = targets.flatten(1).float()
    total = flat.var(0, unbiased=False)
    cm = measures.class_mean_targets(targets, labels, num_classes).flatten(1)
    counts = torch.bincount(labels, minlength=num_classes).float()
    between = ((cm - flat.mean(0)).pow(2) * counts[:, None]).sum(0) / counts.sum()
    w = between / total.clamp_min(1e-8)
    return (w / w.mean().clamp_min(1e-12)).reshape(targets.shape[1:])


def head_kl(logits: torch.Tensor, searched_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_hat || p_phi) summed over the batch, p_hat = softmax(searched logits)."""
    return F.kl_div(F.log_softmax(logits.float(), 1), F.log_softmax(searched_logits.float(), 1), log_target=True,
                    reduction="sum")
