"""The SGD baseline: the same network trained end to end by cross-entropy (paper's comparison).

The paper reports the best of 1x, 2x and 3x depth (groups per block 1, 2, 3); `baseline.depths`
lists the depths to train, and the one with the best validation accuracy is tested.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from repsearch.data import DeviceLoader, Prepared, check_batch
from repsearch.models import build_model, init_from_data
from repsearch.models.staged import forward_flops
from repsearch.models.staged import logits as staged_logits
from repsearch.store.rundir import RunDir

from .hooks import training_hooks
from .loop import fit
from .optim import make_optimizer, standard_groups
from .runtime import autocast_for, evaluate, prepare_model_for_device


def train_baseline(prep: Prepared, cfg, depth: int, run: RunDir | None = None, hooks=()) -> tuple[torch.nn.Module, dict]:
    """SGD at `depth` groups per block; `hooks` join the loop's (e.g. diagnostics per epoch)."""
    tc, dev = cfg.baseline, prep.device
    torch.manual_seed(cfg.seed)
    train_x, train_y = prep.images("train")
    val = prep.images("val")
    model, _ = build_model(cfg, "baseline", prep.dataset.shape, prep.dataset.num_classes, depth=depth, init=tc.init)
    init_from_data(model, train_x.cpu())
    model = prepare_model_for_device(model, dev, tc.memory_format)
    check_batch(len(train_y), tc.batch_size, "baseline.batch_size")
    loader = DeviceLoader(train_x, train_y, tc.batch_size, augment=tc.augment, fixed_batches=tc.fixed_batches,
                          seed=cfg.seed)
    opt = make_optimizer(standard_groups(model, tc), tc, tc.batch_size)

    def loss_fn(m, idx, x, y):
        logits = staged_logits(m, x).float()
        loss = F.cross_entropy(logits, y, reduction="sum", label_smoothing=tc.label_smoothing)
        return loss, {"loss": loss.detach() / len(y), "accuracy": (logits.argmax(1) == y).float().mean()}

    stats = fit(model, loader, opt, tc, loss_fn=loss_fn, val=val, tag=f"sgd-depth{depth}",
                hooks=training_hooks(cfg, run, f"checkpoint-depth{depth}.pt", *hooks),
                autocast=autocast_for(dev, tc.precision))
    if run:
        run.save(model.state_dict(), f"model-depth{depth}.pt")
    flops = forward_flops(model, prep.dataset.shape, dev)
    return model, {"depth": depth, "val_accuracy": stats["best_val_accuracy"], "best_epoch": stats["best_epoch"],
                   "images_per_s": stats["images_per_s"], "steady_images_per_s": stats["steady_images_per_s"],
                   "forward_flops_per_image": flops,
                   "epochs_run": stats["epochs_run"], "train_flops": 3 * flops * stats["epochs_run"] * len(train_y)}


def run_baseline(prep: Prepared, cfg, run: RunDir | None = None, hooks=()) -> dict:
    """Train each configured depth, pick the best by validation, test it once. `hooks` join each
    depth's training loop (e.g. `Diagnostics`: cosine to searched targets, paper Figure 5)."""
    results, best_model, best = [], None, None
    for depth in cfg.baseline.depths:
        model, res = train_baseline(prep, cfg, depth, run, hooks)
        results.append(res)
        if best is None or res["val_accuracy"] > best["val_accuracy"]:
            best_model, best = model, res
    test = evaluate(best_model, *prep.images("test"), autocast=autocast_for(prep.device, cfg.baseline.precision))
    summary = {"dataset": prep.dataset.name, "test_accuracy": test["accuracy"], "val_accuracy": best["val_accuracy"],
               "best_depth": best["depth"], "depths": results, "train_images": len(prep.split.train),
               "val_images": len(prep.split.val), "test_images": len(prep.dataset.test_y),
               "train_flops": sum(r["train_flops"] for r in results)}
    if run:
        run.log({"tag": "sgd-test", **{k: v for k, v in summary.items() if k != "depths"}})
    return summary
