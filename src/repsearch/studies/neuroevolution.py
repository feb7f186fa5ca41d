"""Neuroevolution of the weights, measured against the gradient (Whitelam et al. 2021; docs/neuroevolution.md).

Whitelam et al.: propose theta -> theta + eps with eps ~ N(0, sigma^2 I) on every weight and accept
when the loss does not rise (beta = infinity). For small sigma the mean accepted step is
-(sigma / sqrt(2 pi)) grad U / |grad U|: normalized gradient descent. `gradient_alignment`
measures the cosine between the mean accepted step of P proposals and -grad U on one network and
batch, for each sigma and P. With finitely many proposals the mean carries noise: to first order
each of the D weights' components has variance sigma^2 / (2P) around the signal of squared length
sigma^2 / (2 pi), so the cosine P proposals can show is about

    sqrt(1/(2 pi)) / sqrt(1/(2 pi) + (D - 1) / (2P))        ("first-order prediction")

which tends to 1 as P grows; a measured cosine below it at larger sigma is the nonlinearity.
Proposals are evaluated in parallel with `torch.func.functional_call` + `vmap`.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, vmap

from repsearch.events import progress_bar
from repsearch.models.staged import logits as staged_logits


class _Logits(nn.Module):
    """A staged model as a module whose forward is its logits (what functional_call needs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.net = model

    def forward(self, x):
        return staged_logits(self.net, x)


def predicted_cosine(num_weights: int, population: int) -> float:
    """First-order cosine of the mean accepted step with -grad U for P proposals (module doc)."""
    signal = 1 / (2 * math.pi)
    return math.sqrt(signal / (signal + (num_weights - 1) / (2 * population)))


def gradient_alignment(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigmas, populations, *, seed: int = 0,
                       chunk: int = 64) -> list[dict]:
    """Per (sigma, P): cosine(mean accepted step, -grad U), acceptance rate, and the prediction."""
    net = _Logits(model).eval()
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    base = {n: p.detach() for n, p in net.named_parameters() if p.requires_grad}
    sizes = [base[n].numel() for n in names]
    flat0 = torch.cat([base[n].flatten() for n in names])

    def loss_at(flat: torch.Tensor) -> torch.Tensor:
        params = {n: t.reshape(base[n].shape) for n, t in zip(names, flat.split(sizes))}
        return F.cross_entropy(functional_call(net, params, (x,)), y)

    flat = flat0.clone().requires_grad_(True)
    u0 = loss_at(flat)
    grad, = torch.autograd.grad(u0, flat)
    u0 = u0.detach()
    batched = vmap(loss_at)
    out = []
    bar = progress_bar(total=len(sigmas) * sum(populations), desc="proposals", unit="proposal", unit_scale=True)
    for sigma in sigmas:
        for population in populations:
            bar.set_description(f"sigma {sigma:g}, population {population}")
            g = torch.Generator(device=flat0.device).manual_seed(seed)
            step, accepted = torch.zeros_like(flat0), 0
            with torch.no_grad():
                for start in range(0, population, chunk):
                    eps = torch.randn(min(chunk, population - start), flat0.numel(), generator=g,
                                      device=flat0.device) * sigma
                    ok = batched(flat0 + eps) <= u0
                    step += (eps * ok[:, None]).sum(0)
                    accepted += int(ok.sum())
            step /= population
            bar.update(population)
            out.append({"sigma": sigma, "population": population, "weights": flat0.numel(),
                        "cosine": F.cosine_similarity(step, -grad, dim=0).item(),
                        "acceptance": accepted / population, "predicted_cosine": predicted_cosine(flat0.numel(), population),
                        "step_norm_over_sigma": (step.norm() / sigma).item()})
    bar.close()
    return out


def plot_alignment(rows: list[dict], path) -> None:
    from repsearch.report.plots import plt, save
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, population in enumerate(sorted({r["population"] for r in rows})):
        pts = sorted((r["sigma"], r["cosine"], r["predicted_cosine"]) for r in rows if r["population"] == population)
        color = f"C{i}"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=color, label=f"P = {population}")
        ax.axhline(pts[0][2], color=color, linestyle="--", linewidth=0.8)
    ax.set(xscale="log", xlabel="mutation scale sigma", ylabel="cosine(mean accepted step, -grad)",
           title="Neuroevolution vs gradient (dashed: first-order prediction)")
    save(fig, path, dpi=110, legends=(ax,))


def alignment_experiment(prep, cfg, out_dir, sigmas=(1e-4, 1e-3, 1e-2, 1e-1), populations=(256, 1024, 4096),
                         images: int = 256) -> dict:
    """`repsearch neuroevolution`: the config's network (the baseline's, untrained, BatchNorm
    calibrated on clean images as the search's) on `images` training images."""
    from pathlib import Path

    from repsearch.models import build_model, init_from_data
    from repsearch.search.network import calibrate_batchnorm
    from repsearch.store.atomic import atomic_write_json
    torch.manual_seed(cfg.seed)
    x, y = prep.images("train")
    x, y = x[:images], y[:images]
    model, _ = build_model(cfg, "baseline", prep.dataset.shape, prep.dataset.num_classes, depth=1, init=cfg.baseline.init)
    init_from_data(model, x.cpu())
    calibrate_batchnorm(model, x.cpu())
    rows = gradient_alignment(model.to(x.device), x, y, sigmas, populations, seed=cfg.seed)
    out = Path(out_dir)
    atomic_write_json(out / "alignment.json", {"dataset": prep.dataset.name, "images": len(y), "rows": rows})
    plot_alignment(rows, out / "alignment.png")
    return {"weights": rows[0]["weights"], "images": len(y), "blocks": rows}
