"""One readable training loop for every gradient-trained model in the project (nanoGPT's habit),
with what happens around it as hooks (`learn.hooks`: metrics log, progress bar, checkpoint,
diagnostics, TensorBoard, W&B), never as arguments threaded through it.

Events a training hook may define (see `repsearch.events`):
    resume(loop)                      restore a saved state before the first epoch
    fit_start(loop)                   the loop begins (epochs planned, state restored)
    measure(loop, epoch, val_outputs) -> dict: diagnostics added to the epoch's record (rank 0)
    log(loop, record)                 one record per epoch (epoch 0: the untrained model's measures)
    epoch_end(loop, record)           after an epoch's record is logged (checkpoints, progress)
    fit_end(loop, result)             the loop is done, the kept weights are loaded
"""
from __future__ import annotations

import copy
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from repsearch.events import Hooks
from repsearch.store import distributed

from .optim import freeze_whitening_bias, lr_factor, planned_epochs, set_lr
from .runtime import evaluate


@dataclass
class Loop:
    """What the hooks see of a training loop: the model and its optimizer, the loader, the
    training section, the stage's tag, the planned epochs and the state a checkpoint keeps."""
    model: nn.Module
    opt: torch.optim.Optimizer
    loader: object
    tc: object
    tag: str
    epochs: int
    state: dict = field(default_factory=lambda: {"epoch": 0, "best_acc": -1.0, "best_state": None, "best_epoch": -1,
                                                 "peak_acc": -1.0, "peak_epoch": -1})


def fit(model: nn.Module, loader, opt: torch.optim.Optimizer, tc, *, loss_fn, val: tuple, tag: str = "train",
        hooks=(), autocast=None) -> dict:
    """Train `model` for the planned epochs; keep the best epoch by validation accuracy (or the last).

    loss_fn(model, idx, x, y) -> (loss summed over the batch, dict of floats to log). After each
    epoch the model is scored on `val` = (x, y). A "measure" hook gets the epoch's validation
    stage outputs (val_outputs = (val images, outputs)), so it needs no second forward pass."""
    loop = Loop(model, opt, loader, tc, tag, planned_epochs(tc, len(loader)))
    hooks = Hooks(*hooks)
    hooks("resume", loop)
    if loop.state["epoch"] >= tc.whiten_bias_epochs:
        freeze_whitening_bias(model)
    measuring = hooks.wants("measure") and distributed.is_main()  # diagnostics only feed rank 0's log
    hooks("fit_start", loop)
    if measuring and hooks.wants("log") and loop.state["epoch"] == 0:  # epoch 0: the untrained model, when logged
        hooks("log", loop, {"tag": tag, "epoch": 0, **hooks.collect("measure", loop, 0, None)})
    step, world = data_parallel(model, loss_fn), distributed.world()
    if tc.compile:
        step = torch.compile(step)  # the same step, traced once per batch shape
    t0, images_seen, steady, first_epoch = time.time(), 0, None, loop.state["epoch"]
    keep_best = selects_best(tc, len(val[1]))
    model.train()
    for epoch in range(loop.state["epoch"], loop.epochs):
        record, seen = _train_epoch(loop, step, world, epoch, autocast)
        images_seen += seen
        ev = evaluate(model, *val, autocast=autocast, keep_outputs=measuring) if _evaluates(tc, epoch, loop.epochs) else None
        if ev is not None:
            val_outputs = (val[0], ev.pop("outputs")) if measuring else None
            # rank 0's score decides for every rank: another rank's BatchNorm statistics differ by
            # its last batch, and ranks that disagreed on stopping early would part at a collective
            ev = distributed.broadcast(ev)
            record.update(val_accuracy=ev["accuracy"], val_loss=ev["loss"])
            if ev["accuracy"] > loop.state.get("peak_acc", loop.state["best_acc"]):  # early stopping's reference
                loop.state.update(peak_acc=ev["accuracy"], peak_epoch=epoch + 1)
            if ev["accuracy"] > loop.state["best_acc"] or not keep_best:  # the weights kept
                loop.state.update(best_acc=ev["accuracy"], best_epoch=epoch + 1, best_state=copy.deepcopy(
                    {k: v.detach().cpu() for k, v in model.state_dict().items()}))
        if measuring:
            record.update(hooks.collect("measure", loop, epoch + 1, val_outputs if ev is not None else None))
        record["images_per_s"] = images_seen / max(1e-9, time.time() - t0)
        loop.state["epoch"] = epoch + 1
        hooks("log", loop, record)
        hooks("epoch_end", loop, record)
        if epoch == first_epoch:  # after the first epoch: a compiled step's tracing is behind us
            steady = (time.time(), images_seen)
        if stops_early(tc, len(val[1])) and loop.state["epoch"] - loop.state.get("peak_epoch", loop.state["best_epoch"]) >= tc.patience:
            break  # early stopping: no better validation accuracy for `patience` epochs
    model.load_state_dict(loop.state["best_state"])
    model.eval()
    result = {"best_val_accuracy": loop.state["best_acc"], "best_epoch": loop.state["best_epoch"],
              "epochs_run": loop.state["epoch"], "epochs_planned": loop.epochs,
              "images_per_s": images_seen / max(1e-9, time.time() - t0),
              "steady_images_per_s": _rate_since(steady, images_seen, time.time())}
    hooks("fit_end", loop, result)
    return result


def _train_epoch(loop: Loop, step, world: int, epoch: int, autocast) -> tuple[dict, int]:
    """One epoch of steps; returns the epoch's record (training means) and the images seen."""
    tc, loader, opt = loop.tc, loop.loader, loop.opt
    if epoch == tc.whiten_bias_epochs:
        freeze_whitening_bias(loop.model)
    sums: dict[str, float] = {}
    n = seen = 0  # n: images this rank trained on this epoch (its logged means are over them)
    total_steps = loop.epochs * len(loader)
    for i, (idx, x, y) in enumerate(loader):
        set_lr(opt, lr_factor(epoch * len(loader) + i, total_steps, tc.warmup, tc.final_lr))
        with autocast() if autocast else nullcontext():
            loss, parts = step(idx, x, y)
        opt.zero_grad(set_to_none=True)
        (loss * world).backward()  # DDP averages gradients over ranks; the loss is a sum over the global batch
        opt.step()
        seen += len(y) * world
        n += len(y)
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(y)
    return {"tag": loop.tag, "epoch": epoch + 1, **{f"train_{k}": v / n for k, v in sums.items()}}, seen


def _evaluates(tc, epoch: int, epochs: int) -> bool:
    return (epoch + 1) % tc.eval_every == 0 or epoch + 1 == epochs


def _rate_since(mark, images_seen: int, now: float) -> float | None:
    """Images/s after `mark` = (time, images seen then); None with a single epoch."""
    if mark is None or images_seen == mark[1]:
        return None
    return (images_seen - mark[1]) / max(1e-9, now - mark[0])


def stops_early(tc, val_images: int) -> bool:
    """Early stopping is on when `patience` is set and the validation set can resolve epochs."""
    return bool(tc.patience) and val_images >= tc.patience_min_val


def selects_best(tc, val_images: int) -> bool:
    """Keep the best epoch by validation, or the last one: under `select = "auto"` the best only
    when the validation set can resolve epochs (>= select_min_val images). At 80 images one
    image is 1.25 points, and the choice among late epochs is noise (docs/learnability.md).
    The value itself is checked with the config (validation.CHOICES)."""
    return tc.select == "best" or (tc.select == "auto" and val_images >= tc.select_min_val)


class _Step(nn.Module):
    """One training step's forward as a module, so that DistributedDataParallel can wrap it: the
    loss functions call the model's stem, stages and head directly, not its forward."""

    def __init__(self, model: nn.Module, loss_fn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, idx, x, y):
        return self.loss_fn(self.model, idx, x, y)


def data_parallel(model: nn.Module, loss_fn) -> nn.Module:
    """The step, under torchrun wrapped in DistributedDataParallel (gradients all-reduced, buffers
    such as BatchNorm statistics broadcast from rank 0); in one process, the step itself."""
    step = _Step(model, loss_fn)
    if distributed.world() == 1:
        return step
    from torch.nn.parallel import DistributedDataParallel
    dev = next(model.parameters()).device
    # unused parameters happen: a frozen whitening bias, stages outside learn.supervise
    return DistributedDataParallel(step, device_ids=[dev] if dev.type == "cuda" else None, find_unused_parameters=True)
