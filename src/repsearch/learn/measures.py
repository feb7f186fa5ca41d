"""Measurements: cosine to searched targets, linear probes, and diversity (N_eff).

N_eff (paper Section 3.2, after Skean et al.): K the cosine-similarity Gram matrix of n
solutions, H_coll = -log(sum_ij K_ij^2 / (sum_i K_ii)^2), N_eff = exp(H_coll): 1 when all are
identical, n when all are orthogonal.

Within- and between-class collision entropy (Section 4.5, Figures 6-7): the same -log of a mean
squared cosine, the mean taken over pairs of distinct examples of the same class, or of different
classes: H = -log(mean_{i != j in the pair set} K_ij^2). Lower = more similar representations.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine similarity of flattened representations: (N, ...) x (N, ...) -> (N,)."""
    return F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1, eps=1e-8)


def class_mean_targets(targets: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, ...) mean target of each class (the part of a target that the class alone predicts)."""
    flat = targets.flatten(1).float()
    sums = torch.zeros(num_classes, flat.shape[1], device=flat.device).index_add_(0, labels, flat)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).float()[:, None]
    return (sums / counts).reshape(num_classes, *targets.shape[1:])


def predictability_baselines(train_targets, train_labels, val_targets, val_labels, num_classes) -> dict:
    """Cosine to the validation targets of two predictors that ignore the image: each image's
    class-mean target, and the global-mean target. A learner at these cosines learned only that."""
    cm = class_mean_targets(train_targets, train_labels, num_classes)
    gm = train_targets.float().mean(0, keepdim=True)
    return {"class_mean": cosine(cm[val_labels], val_targets).mean().item(),
            "global_mean": cosine(gm.expand_as(val_targets), val_targets).mean().item()}


def probe_features(h: torch.Tensor, max_dim: int = 2048) -> torch.Tensor:
    """Flattened features for a probe; large maps are average-pooled until they fit max_dim."""
    if h.dim() == 4:
        c, hh, ww = h.shape[1:]
        side = hh
        while c * side * side > max_dim and side > 1:
            side -= 1
        if side != hh:
            h = F.adaptive_avg_pool2d(h, side)
    return h.flatten(1).float()


def linear_probe(train_x, train_y, val_x, val_y, num_classes: int, steps: int = 100, l2: float = 1e-4) -> float:
    """Multinomial logistic regression (L-BFGS, full batch) on standardized features; val accuracy.

    A diagnostic must never end a long run: non-finite features are zeroed, near-constant ones are
    not blown up by standardization, and if L-BFGS still fails the probe reports NaN."""
    train_x, val_x = torch.nan_to_num(train_x, 0.0, 0.0, 0.0), torch.nan_to_num(val_x, 0.0, 0.0, 0.0)
    mean, std = train_x.mean(0), train_x.std(0)
    std = std.clamp_min(1e-3 * float(std.nan_to_num(0.0, 0.0, 0.0).median()) + 1e-8)

    def standardize(x):
        return torch.nan_to_num((x - mean) / std, 0.0, 0.0, 0.0).clamp(-20, 20)

    xt, xv = standardize(train_x), standardize(val_x)
    w = torch.zeros(xt.shape[1], num_classes, requires_grad=True, device=xt.device)
    b = torch.zeros(num_classes, requires_grad=True, device=xt.device)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xt @ w + b, train_y) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    try:
        with torch.enable_grad():
            opt.step(closure)
    except RuntimeError:  # line-search overflow on degenerate features
        return float("nan")
    if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
        return float("nan")
    with torch.no_grad():
        return ((xv @ w + b).argmax(1) == val_y).float().mean().item()


@torch.no_grad()
def block_outputs(model, x: torch.Tensor, batch_size: int = 1000, stages=None) -> list[torch.Tensor]:
    """Every stage's output of `model` for inputs x (or only `stages`' outputs, the others dropped
    batch by batch), in eval mode, batched."""
    from repsearch.models.staged import stage_outputs
    was = model.training
    model.eval()
    keep = range(len(model.stages)) if stages is None else stages
    outs = [[] for _ in keep]
    for i in range(0, len(x), batch_size):
        hs = stage_outputs(model, x[i:i + batch_size])
        for k, stage in enumerate(keep):
            outs[k].append(hs[stage])
    model.train(was)
    return [torch.cat(o) for o in outs]


def gram_cosine(solutions: torch.Tensor) -> torch.Tensor:
    v = F.normalize(solutions.flatten(1).double(), dim=1)
    return v @ v.T


def collision_entropy(k: torch.Tensor) -> float:
    return -math.log((k.pow(2).sum() / k.diagonal().sum().pow(2)).item())


def n_eff(solutions: torch.Tensor) -> float:
    """Effective number of distinct solutions of (n, ...) representations: exp(H_coll(K))."""
    return math.exp(collision_entropy(gram_cosine(solutions)))


@torch.no_grad()
def class_collision_entropy(features: torch.Tensor, labels: torch.Tensor, diagonal: bool = True) -> dict:
    """{"within": H over same-class pairs, "between": H over different-class pairs} of (n, ...)
    representations. `diagonal=True` (the paper's: its collision entropy, -log sum K_ij^2 / (sum
    K_ii)^2, on each class's block of the Gram matrix, pooled) counts the pairs i = j (K_ii = 1);
    `False` leaves them out, so that the estimate does not depend on class sizes (a class of n_c
    examples adds 1/n_c to its mean with them)."""
    k2 = gram_cosine(features).pow(2)
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    within, between = k2[same if diagonal else same & off], k2[~same]
    return {"within": _neg_log_mean(within), "between": _neg_log_mean(between)}


def _neg_log_mean(values: torch.Tensor) -> float:
    """-log(mean): NaN without pairs, inf when every pair is orthogonal."""
    if not len(values):
        return float("nan")
    m = values.mean().item()
    return -math.log(m) if m > 0 else float("inf")


@torch.no_grad()
def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two models' representations of the same n inputs,
    (n, ...) each: <HKH, HLH> / (|HKH| |HLH|) with K = a a^T, L = b b^T. It is invariant to
    orthogonal maps (so to permuted channels), unlike a cosine between the raw vectors."""
    x, y = a.flatten(1).double(), b.flatten(1).double()
    x, y = x - x.mean(0), y - y.mean(0)
    k, l = x @ x.T, y @ y.T
    return ((k * l).sum() / (k.norm() * l.norm()).clamp_min(1e-300)).item()


def n_eff_batched(solutions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """N_eff per image of its kept solutions: solutions (B, n, ...), mask (B, n) bool -> (B,).

    The same quantity as `analysis.n_eff` (exp of the collision entropy of the cosine Gram
    matrix, (tr K)^2 / sum K_ij^2), for all images at once with one batched matrix product.
    Masked-out solutions drop out of K; an image with none kept gets NaN."""
    v = F.normalize(solutions.flatten(2).double(), dim=2)
    gram = torch.bmm(v, v.transpose(1, 2))  # (B, n, n)
    m = torch.ones(gram.shape[:2], dtype=torch.double, device=gram.device) if mask is None else mask.double()
    kept = gram * m[:, :, None] * m[:, None, :]
    trace = kept.diagonal(dim1=1, dim2=2).sum(1)
    out = trace.pow(2) / kept.pow(2).sum((1, 2))
    return torch.where(trace > 0, out, torch.full_like(out, math.nan))
