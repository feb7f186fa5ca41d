"""Learning from searched representations (paper Section 4.2, Appendix A.3).

    L = mean_{l in S} mean_elements (H_theta^l(x) - H_hat^l(x))^2  +  lambda * KL(p_hat || p_phi(sg(H_theta^last(x))))

The body (theta) learns only from the regression targets; the head (phi) only from the KL term,
on stop-gradient features. Under stop-gradient lambda only scales the head's step, so the head
has its own learning-rate multiplier (`learn.head_lr_scale`, default 1/lambda: the head steps as
if lambda were 1) and every run reports a linear probe of the last block beside the head.

Where targets meet block outputs: with `search.target_space = "normalized"` every search point
is a per-sample-normalized block output, and the learner's blocks end in the same per-sample
normalization (a parameter-free `SampleNorm`), so both sides live in one space.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from repsearch.config.validation import check_supervise
from repsearch.data import DeviceLoader, Prepared, check_batch
from repsearch.errors import UserError
from repsearch.models import build_model, init_from_data
from repsearch.models.staged import forward_flops, stage_outputs
from repsearch.store import distributed
from repsearch.store.cache import TargetCache
from repsearch.store.rundir import RunDir
from repsearch.store.verify import verify_cache

from .diagnostics import Diagnostics
from .head_refit import refit_learned_head, refit_val_accuracy
from .hooks import training_hooks
from .loop import fit, selects_best
from .objectives import class_informative_weights, head_kl, regression_loss
from .optim import make_optimizer, standard_groups
from .runtime import autocast_for, evaluate, in_layout, prepare_model_for_device


def split_parameters(model, lc) -> list[dict]:
    """Body groups as airbench (BN biases x bias_scaler); the head with its own lr multiplier."""
    head = {id(p) for p in model.head.parameters()}
    groups = standard_groups(model, lc, exclude=head)
    groups.append({"params": list(model.head.parameters()), "lr_scale": lc.head_lr_scale})
    return groups


def make_loss_fn(targets: dict, supervise, lc, weights=None):
    """targets: dict of tensors indexed by loader position (block0..block{S-1}, logits)."""

    def loss_fn(model, idx, x, y):
        outs = stage_outputs(model, x)
        tg = [targets[f"block{l}"][idx] for l in range(len(outs))]
        body, parts = (regression_loss(outs, tg, supervise, weights, lc.reduction) if supervise
                       else (outs[-1].sum() * 0, {}))
        logits = model.head(outs[-1].detach())  # stop-gradient: no KL gradient reaches the body
        kl = head_kl(logits, targets["logits"][idx])
        loss = body + lc.kl_weight * kl
        parts.update(kl=kl.detach() / len(y), head_accuracy=(logits.argmax(1) == y).float().mean(),
                     loss=loss.detach() / len(y))
        return loss, parts

    return loss_fn


def build_learner(prep: Prepared, cfg):
    """A fresh learner: the search network's family at the learner's depth (`learn.groups_per_block`)."""
    lc = cfg.learn
    torch.manual_seed(cfg.seed + 1)
    model, shapes = build_model(cfg, "learner", prep.dataset.shape, prep.dataset.num_classes, depth=lc.groups_per_block,
                                init=lc.init, normalize=cfg.search.target_space == "normalized")
    x, _ = prep.images("train")
    init_from_data(model, x.cpu())
    return model


def fit_to_targets(model, x, y, targets: dict, lc, *, val=None, supervise=None, augment: bool = False,
                   seed: int = 0, num_classes: int | None = None, tag: str = "learn", hooks=()) -> tuple[torch.nn.Module, dict]:
    """Train `model` (fresh, or warm-started: any staged model) to regress its stage outputs to
    `targets` (dict: block{i} per stage in loader order, and logits); the head learns the KL to
    the searched logits. With `val` = (x, y) the best epoch by validation accuracy is kept.
    `hooks`: the training loop's (`learn.hooks`: metrics, checkpoint, diagnostics, loggers)."""
    n_stages = len(model.stages)
    supervise = check_supervise(range(n_stages) if supervise is None else supervise, n_stages)
    weights = None
    if lc.loss == "class_weighted":
        k = num_classes or targets["logits"].shape[1]
        weights = [class_informative_weights(targets[f"block{l}"], y, k) for l in range(n_stages)]
    dev = str(x.device)
    model = prepare_model_for_device(model, dev, lc.memory_format)
    targets = in_layout(targets, dev, lc.memory_format)
    check_batch(len(y), lc.batch_size, "learn.batch_size")
    loader = DeviceLoader(x, y, lc.batch_size, augment=augment, fixed_batches=lc.fixed_batches, seed=seed)
    opt = make_optimizer(split_parameters(model, lc), lc, lc.batch_size)
    stats = fit(model, loader, opt, lc, loss_fn=make_loss_fn(targets, supervise, lc, weights), val=val or (x, y),
                tag=tag, hooks=hooks, autocast=autocast_for(dev, lc.precision))
    return model, {**stats, "supervise": supervise}


def mean_targets(caches: list[TargetCache], dataset_indices, device) -> dict:
    """The targets of K searches of the same images (`learn.target_searches`): block targets
    averaged, logits as the log of the mean softmax. Then the MSE to the mean, and the head's KL
    to the mean distribution, are each search's loss averaged over the K searches, up to a
    constant; one tensor per point is held instead of K."""
    first = caches[0].load(caches[0].rows_for(dataset_indices), device, torch.float32)
    if len(caches) == 1:
        return first
    total = {k: v.log_softmax(1) if k == "logits" else v for k, v in first.items()}
    for cache in caches[1:]:
        for k, v in cache.load(cache.rows_for(dataset_indices), device, torch.float32).items():
            total[k] = torch.logaddexp(total[k], v.log_softmax(1)) if k == "logits" else total[k].add_(v)
    k_searches = len(caches)
    return {k: v - math.log(k_searches) if k == "logits" else v.div_(k_searches) for k, v in total.items()}


def target_caches(cache, lc) -> list[TargetCache]:
    """One cache or several as a list, checked: as many as `learn.target_searches`, complete, undamaged."""
    caches = [cache] if isinstance(cache, TargetCache) else list(cache)
    if len(caches) != lc.target_searches:
        raise UserError(f"learn.target_searches = {lc.target_searches} averages that many searches of the same "
                        f"images, but {len(caches)} target cache(s) were given (repsearch run searches them; "
                        "repsearch train takes them as --cache DIR DIR ...)")
    for c in caches:
        c.require_complete()
        verify_cache(c)  # checksums and finite values: never learn from damaged targets
    return caches


def train_from_cache(prep: Prepared, cfg, cache: TargetCache | list[TargetCache], run: RunDir | None = None, *,
                     supervise=None, augment: bool | None = None, tag: str = "learn",
                     diagnostics: Diagnostics | None = None, learner=None) -> tuple[torch.nn.Module, dict]:
    """Train the learner on cached targets only; select by validation; test once; probe at the end.
    `cache`: one target cache, or `learn.target_searches` of them (streams s..s+K-1 of the same
    images; the first one's validation targets serve the diagnostics). `learner`: start from this
    model (warm start, trained in place) instead of a fresh one."""
    lc, dev = cfg.learn, prep.device
    augment = lc.augment if augment is None else augment
    caches = target_caches(cache, lc)
    cache = caches[0]
    train_x, train_y = prep.images("train")
    targets = mean_targets(caches, prep.split.train.numpy(), dev)
    diagnostics = diagnostics or Diagnostics.for_learner(prep, cache, lc)
    model, stats = fit_to_targets(
        build_learner(prep, cfg) if learner is None else learner, train_x, train_y, targets, lc, val=prep.images("val"),
        supervise=(lc.supervise or None) if supervise is None else supervise, augment=augment, seed=cfg.seed,
        num_classes=prep.dataset.num_classes, tag=tag, hooks=training_hooks(cfg, run, f"checkpoint-{tag}.pt", diagnostics))
    val = prep.images("val")
    refit = (refit_learned_head(model, train_x, targets["logits"], val, lc.head_refit_l2,
                                select_on_val=selects_best(lc, len(val[1]))) if lc.head_refit_l2 > 0 else None)
    # The trained model's measurements on one rank, the untrained control on another (under
    # torchrun; ~60 s and ~40 s on one thread at 60,000 MNIST images, where each rank did both)
    (test, final), control = distributed.shared([
        lambda: (evaluate(model, *prep.images("test"), autocast=autocast_for(dev, lc.precision)), diagnostics.final(model)),
        lambda: diagnostics.control(prepare_model_for_device(build_learner(prep, cfg), dev))])
    final.update(control)
    if run:
        run.save(model.state_dict(), f"model-{tag}.pt")
    flops = forward_flops(model, prep.dataset.shape, dev)
    summary = {"test_accuracy": test["accuracy"],
               "val_accuracy": refit_val_accuracy(refit) if refit else stats["best_val_accuracy"],
               "best_epoch": stats["best_epoch"], "supervise": stats["supervise"], "augment": augment,
               "images_per_s": stats["images_per_s"], "steady_images_per_s": stats["steady_images_per_s"],
               "train_flops": 3 * flops * stats["epochs_run"] * len(train_y),
               "epochs_run": stats["epochs_run"],
               **final, "target_baselines": diagnostics.baselines, **({"head_refit": refit} if refit else {}),
               "target_searches": len(caches),
               "target_ce_mean": F.cross_entropy(targets["logits"], train_y.to(dev)).item()}
    if run:
        run.log({"tag": f"{tag}-final", **{k: v for k, v in summary.items() if k != "target_baselines"}})
    return model, summary
