"""Diverse models from independent searches (docs/ensemble.md): K searches with different seeds
give K learned models; K SGD seeds on the same images give the comparison. Is search's claimed
diversity (paper Section 4.4) a property of the learned models, and does it buy ensemble accuracy?

Member k uses seed `seed + 1000 k` (as `repsearch diversity`) for everything seeded: its search
network's random init and per-image search streams, its learner's init, the SGD model's init and
batch order. The images (subset and validation holdout) are the base seed's for every member.

    OUT/member{k}/cache/   member k's targets      OUT/member{k}/learn/  its learner (model-learn.pt)
    OUT/member{k}/sgd/     its SGD model           OUT/ensemble.json, ensemble.md, ensemble.png

Per family (search-based, SGD), on the test set: each member's accuracy; the ensemble's (the
argmax of the members' mean softmax) for the first 1..K members; the mean pairwise prediction
disagreement; per block the mean pairwise linear CKA and N_eff of the K members' representations
of an image (the paper's diversity measure applied to models; N_eff is not invariant to
permuted channels, CKA is).
"""
from __future__ import annotations

import copy
import itertools
import statistics
from pathlib import Path

import torch

from repsearch.learn import measures as analysis
from repsearch.learn.baseline import run_baseline
from repsearch.learn.diagnostics import Diagnostics
from repsearch.learn.measures import n_eff_batched
from repsearch.learn.regression import build_learner, train_from_cache
from repsearch.learn.runtime import prepare_model_for_device
from repsearch.models import build_model
from repsearch.models.staged import logits as staged_logits
from repsearch.store.atomic import atomic_write_json, atomic_write_text

from .stages import search_or_open, stage

FAMILIES = {"search": "Search-based (All layers)", "sgd": "SGD"}


def member_config(cfg, k: int):
    c = copy.deepcopy(cfg)
    c.seed = cfg.seed + 1000 * k
    return c


def ensemble_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """logits (K, N, C) of K members on N labelled inputs -> member accuracies, the accuracy of the
    ensemble of the first k members for k = 1..K (argmax of the mean softmax), and the mean
    pairwise disagreement (share of inputs where two members' argmax differ)."""
    preds = logits.argmax(2)
    probs = logits.float().softmax(2).cumsum(0)  # probs[k-1] / k = the first k members' mean
    pairs = list(itertools.combinations(range(len(logits)), 2))
    return {"member_accuracy": (preds == labels).float().mean(1).tolist(),
            "ensemble_accuracy_by_k": (probs.argmax(2) == labels).float().mean(1).tolist(),
            "disagreement": statistics.mean((preds[i] != preds[j]).float().mean().item() for i, j in pairs)
            if pairs else 0.0}


def diversity_metrics(block_outputs: list[list[torch.Tensor]]) -> dict:
    """block_outputs[k][l]: member k's stage-l outputs (n, ...) on the same inputs -> per block
    the mean pairwise linear CKA and the mean over inputs of N_eff of the K members' outputs."""
    k, blocks = len(block_outputs), len(block_outputs[0])
    out = {}
    for l in range(blocks):
        pairs = [analysis.linear_cka(block_outputs[i][l], block_outputs[j][l])
                 for i, j in itertools.combinations(range(k), 2)]
        out[f"cka_block{l}"] = statistics.mean(pairs) if pairs else 1.0
        stacked = torch.stack([block_outputs[i][l] for i in range(k)], 1)  # (n, K, ...)
        out[f"n_eff_block{l}"] = n_eff_batched(stacked).mean().item()
    return out


def _train_member(prep, cfg, k: int, root: Path) -> dict:
    c = member_config(cfg, k)
    mdir = root / f"member{k}"
    cache, _ = search_or_open(prep, c, mdir / "cache")
    diagnostics = Diagnostics.for_learner(prep, cache, c.learn)
    learn = stage(mdir / "learn", c.to_dict(), c.device, lambda run: train_from_cache(
        prep, c, cache, run, tag="learn", diagnostics=diagnostics)[1])
    sgd = stage(mdir / "sgd", c.to_dict(), c.device, lambda run: run_baseline(prep, c, run))
    return {"search": learn, "sgd": sgd}


def _load_member(prep, cfg, k: int, root: Path, family: str, summary: dict) -> torch.nn.Module:
    """A member's trained model from its stage directory."""
    c = member_config(cfg, k)
    if family == "search":
        model, path = build_learner(prep, c), root / f"member{k}" / "learn" / "model-learn.pt"
    else:
        depth = summary["best_depth"]
        model, _ = build_model(c, "baseline", prep.dataset.shape, prep.dataset.num_classes, depth=depth,
                               init=c.baseline.init)
        path = root / f"member{k}" / "sgd" / f"model-depth{depth}.pt"
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return prepare_model_for_device(model, prep.device).eval()


@torch.no_grad()
def _family(models: list[torch.nn.Module], x: torch.Tensor, y: torch.Tensor, diversity_images: int) -> dict:
    logits = torch.stack([torch.cat([staged_logits(m, x[i:i + 1000]).float() for i in range(0, len(x), 1000)])
                          for m in models])
    outs = [analysis.block_outputs(m, x[:diversity_images]) for m in models]
    return {**ensemble_metrics(logits, y), **diversity_metrics(outs)}


def ensemble(prep, cfg, out_dir, members: int = 4, diversity_images: int = 1000) -> dict:
    """Train (or resume) K members of each family and measure them; returns the measurements."""
    root = Path(out_dir)
    summaries = [_train_member(prep, cfg, k, root) for k in range(members)]
    x, y = prep.images("test")
    result = {"members": members, "diversity_images": min(diversity_images, len(y)), "families": {}}
    for family in FAMILIES:
        models = [_load_member(prep, cfg, k, root, family, s[family]) for k, s in enumerate(summaries)]
        result["families"][family] = _family(models, x, y, diversity_images)
    fam = result["families"]
    result.update({f"{f}_ensemble_accuracy": fam[f]["ensemble_accuracy_by_k"][-1] for f in FAMILIES})
    result.update({f"{f}_member_accuracy_mean": statistics.mean(fam[f]["member_accuracy"]) for f in FAMILIES})
    atomic_write_json(root / "ensemble.json", result)
    atomic_write_text(root / "ensemble.md", markdown(result))
    plot_ensemble(result, root / "ensemble.png")
    return result


def markdown(result: dict) -> str:
    fam = result["families"]
    blocks = sorted(k for k in fam["search"] if k.startswith("cka_block"))
    head = ["method", "members (mean)", f"ensemble of {result['members']}", "disagreement"]
    head += [f"CKA {b[4:]}" for b in blocks] + [f"N_eff {b[4:]}" for b in blocks]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for f, label in FAMILIES.items():
        m = fam[f]
        cells = [label, f"{100 * statistics.mean(m['member_accuracy']):.2f}", f"{100 * m['ensemble_accuracy_by_k'][-1]:.2f}",
                 f"{100 * m['disagreement']:.2f}%"]
        cells += [f"{m[b]:.3f}" for b in blocks] + [f"{m['n_eff_' + b[4:]]:.2f}" for b in blocks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_ensemble(result: dict, path: Path) -> None:
    """Left: ensemble accuracy vs members per family. Right: mean pairwise CKA per block."""
    from repsearch.report.plots import plt, save
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.6))
    for f, label in FAMILIES.items():
        m = result["families"][f]
        ks = range(1, len(m["ensemble_accuracy_by_k"]) + 1)
        ax.plot(ks, [100 * a for a in m["ensemble_accuracy_by_k"]], marker="o", label=label)
        blocks = sorted(k for k in m if k.startswith("cka_block"))
        bx.plot(range(len(blocks)), [m[b] for b in blocks], marker="o", label=label)
    ax.set(xlabel="members in the ensemble", ylabel="test accuracy (%)", title="ensemble accuracy")
    bx.set(xlabel="block", ylabel="mean pairwise linear CKA", title="similarity of members' representations")
    save(fig, path, integer_x=(ax, bx), legends=(ax, bx))
