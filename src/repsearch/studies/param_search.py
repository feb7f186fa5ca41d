"""The parameter-space baseline (docs/neuroevolution.md): evolve the *weights* of the same network at
the compute the representation-space search spends, and test it, next to search + learning and SGD.

The strategy is OpenAI-ES (Salimans et al. 2017), the usual strong ES over network weights:
antithetic pairs theta +- sigma eps, fitness = cross-entropy on one random minibatch shared by
the whole population, centered-rank utilities, and the gradient estimate
-(1 / (P sigma)) sum_i u_i eps_i followed by Adam. It is vectorized over the population with
`torch.func.functional_call` + `vmap`. BatchNorm runs on statistics calibrated on clean training
images and frozen, as in the search network (a candidate's fitness then depends on it alone).

Compute is counted in forward passes of one image: the budget is the number
of candidate evaluations the representation-space search made (each the forward of one image
through the rest of the network from a search point, so a partial forward), and each generation
costs P x batch full forward passes: the ES gets at least the search's compute. FLOPs are
reported beside it (PyTorch's flop counter; it counts matmuls and convolutions, so the untrained
search network's skipped identity convolutions cost nothing there).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from repsearch.models.staged import forward_flops

from .neuroevolution import _Logits


@dataclass
class ESParams:
    population: int = 64  # candidates per generation (antithetic pairs: even)
    sigma: float = 0.01  # perturbation scale in weight space
    lr: float = 0.01  # Adam step on the estimated gradient
    batch: int = 100  # training images in each generation's fitness
    chunk: int = 64  # candidates evaluated per vmap call (memory only)


def centered_ranks(losses: torch.Tensor) -> torch.Tensor:
    """Utilities in [-0.5, 0.5]: the lowest loss gets 0.5, the highest -0.5 (ties by order)."""
    ranks = torch.empty_like(losses)
    ranks[losses.argsort(descending=True)] = torch.arange(len(losses), dtype=losses.dtype, device=losses.device)
    return ranks / max(1, len(losses) - 1) - 0.5


def es_gradient(eps: torch.Tensor, losses: torch.Tensor, sigma: float) -> torch.Tensor:
    """The ES estimate of grad(loss) from candidates theta + sigma eps_i and their losses."""
    return -(centered_ranks(losses) @ eps) / (len(losses) * sigma)


def evolve(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, budget_forwards: float, es: ESParams, *,
           seed: int = 0, evaluate=None, checkpoints: int = 8) -> dict:
    """Run OpenAI-ES on `model`'s weights (in place) until the next generation would exceed
    `budget_forwards` forward passes of one image. `evaluate(model) -> dict` is called at `checkpoints` generations spaced
    geometrically and at the end; returns the curve and the totals."""
    if es.population < 2 or es.population % 2:
        raise ValueError("the ES population must be even and >= 2 (antithetic pairs)")
    net = _Logits(model).eval()
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    shapes = {n: p.shape for n, p in net.named_parameters() if p.requires_grad}
    sizes = [math.prod(shapes[n]) for n in names]
    theta = torch.cat([p.detach().flatten() for n, p in net.named_parameters() if p.requires_grad]).clone()
    unflat = lambda flat: {n: t.reshape(shapes[n]) for n, t in zip(names, flat.split(sizes))}
    batched = vmap(lambda flat, xb, yb: F.cross_entropy(functional_call(net, unflat(flat), (xb,)), yb),
                   in_dims=(0, None, None))
    per_generation = es.population * es.batch
    flops_per_forward = forward_flops(model, tuple(x.shape[1:]), str(x.device))
    generations = int(budget_forwards // per_generation)
    marks = sorted({max(1, round(generations ** (i / checkpoints))) for i in range(1, checkpoints + 1)} | {generations})
    g = torch.Generator(device=x.device).manual_seed(seed)
    opt = torch.optim.Adam([theta.requires_grad_(True)], lr=es.lr)
    curve = [_checkpoint(0, 0, theta, net, names, sizes, evaluate)]
    for gen in range(1, generations + 1):
        idx = torch.randint(0, len(y), (es.batch,), generator=g, device=x.device)
        half = torch.randn(es.population // 2, len(theta), generator=g, device=x.device)
        eps = torch.cat([half, -half])
        with torch.no_grad():
            losses = torch.cat([batched(theta.detach() + es.sigma * eps[i:i + es.chunk], x[idx], y[idx])
                                for i in range(0, es.population, es.chunk)])
        theta.grad = es_gradient(eps, losses, es.sigma)
        opt.step()
        if gen in marks:
            curve.append(_checkpoint(gen, gen * per_generation, theta, net, names, sizes, evaluate,
                                     losses.mean().item()))
    _load(net, names, sizes, theta)
    return {"generations": generations, "forwards_per_generation": per_generation,
            "forwards": generations * per_generation, "flops": generations * per_generation * flops_per_forward,
            "weights": len(theta), "curve": curve}


def _load(net, names, sizes, theta) -> None:
    params = dict(net.named_parameters())
    with torch.no_grad():
        for n, t in zip(names, theta.detach().split(sizes)):
            params[n].copy_(t.reshape(params[n].shape))


def _checkpoint(gen, forwards, theta, net, names, sizes, evaluate, loss=None) -> dict:
    rec = {"generation": gen, "forwards": forwards, "population_loss": loss}
    if evaluate is not None:
        _load(net, names, sizes, theta)
        rec.update(evaluate(net.net))
        net.eval()  # an evaluation may leave the model in train mode; fitness uses frozen BatchNorm
    return rec


def parameter_baseline(prep, cfg, out_dir, es: ESParams, budget_scale: float = 1.0) -> dict:
    """`repsearch neuroevolution --part baseline`: the pipeline's SGD baseline and search +
    learning (run/resumed in OUT/seed{S}), then OpenAI-ES on the learner's architecture (fresh,
    data-dependent init, BatchNorm calibrated and frozen) on the same training images with
    `budget_scale` x the search's forward passes; every method's test accuracy against its
    forward passes (a training step counts 3: forward and backward)."""
    from pathlib import Path

    from repsearch.learn.runtime import evaluate as test_model
    from repsearch.models import build_model, init_from_data
    from repsearch.search.network import calibrate_batchnorm
    from repsearch.store.atomic import atomic_write_json

    from .pipeline import run_seed
    out = Path(out_dir)
    seed = run_seed(cfg, out)
    x, y = prep.images("train")
    torch.manual_seed(cfg.seed)
    model, _ = build_model(cfg, "baseline", prep.dataset.shape, prep.dataset.num_classes,
                           depth=cfg.learn.groups_per_block, init=cfg.baseline.init)
    init_from_data(model, x.cpu())
    calibrate_batchnorm(model, x.cpu()[:cfg.search.calib_images])
    model = model.to(x.device)
    test, val = prep.images("test"), prep.images("val")
    score = lambda m: {"test_accuracy": test_model(m, *test)["accuracy"], "val_accuracy": test_model(m, *val)["accuracy"]}
    s = seed["search"]
    search_forwards = s["evaluations_per_image_mean"] * s["images"]
    result = evolve(model, x, y, budget_scale * search_forwards, es, seed=cfg.seed, evaluate=score)
    sgd, learn = _first(seed["sgd"]), seed["learn"][next(iter(seed["learn"]))]
    methods = {"sgd": {"test_accuracy": sgd["test_accuracy"], "forwards": _training_forwards(sgd, prep)},
               "search_learn": {"test_accuracy": learn["test_accuracy"], "search_forwards": search_forwards,
                                "forwards": search_forwards + _training_forwards(learn, prep)},
               "param_es": {"test_accuracy": result["curve"][-1]["test_accuracy"], "forwards": result["forwards"]}}
    summary = {"es": vars(es), "budget_scale": budget_scale, "methods": methods, "es_run": result}
    atomic_write_json(out / "param_search.json", summary)
    plot_baseline(summary, out / "param_search.png")
    return {f"{k}_test_accuracy": v["test_accuracy"] for k, v in methods.items()} | {
        "es_generations": result["generations"], "es_weights": result["weights"], "blocks": methods}


def _first(d: dict) -> dict:
    return d[next(iter(d))]


def _training_forwards(summary: dict, prep) -> int:
    """A gradient step costs about 3 forward passes per image (forward + backward)."""
    epochs = summary.get("epochs_run") or sum(d["epochs_run"] for d in summary["depths"])
    return 3 * epochs * len(prep.split.train)


def plot_baseline(summary: dict, path) -> None:
    """Test accuracy against training FLOPs: the ES curve, search + learning, SGD."""
    from repsearch.report.plots import plt, save
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    curve = [c for c in summary["es_run"]["curve"] if c["forwards"] > 0]
    ax.plot([c["forwards"] for c in curve], [100 * c["test_accuracy"] for c in curve], "o-", label="ES on the weights")
    for key, label, marker in (("search_learn", "search + learning", "s"), ("sgd", "SGD", "^")):
        m = summary["methods"][key]
        ax.plot([m["forwards"]], [100 * m["test_accuracy"]], marker, markersize=9, label=label)
    ax.set(xscale="log", xlabel="forward passes of one image (a gradient step: 3)", ylabel="test accuracy (%)",
           title="parameter-space ES vs representation-space search")
    save(fig, path, dpi=110, legends=(ax,))
