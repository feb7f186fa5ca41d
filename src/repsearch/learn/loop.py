"""What every gradient-trained model here shares: airbench's SGD convention, the lr schedule,
evaluation, and the epoch loop with best-by-validation checkpointing."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from repsearch.models.staged import logits as staged_logits
from repsearch.models.staged import stage_outputs


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


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000, autocast=None,
             keep_outputs: bool = False) -> dict:
    """Accuracy and mean cross-entropy in eval mode. `keep_outputs`: also return every stage's
    output ("outputs": the forward the accuracy came from, so bf16-rounded under CUDA's autocast,
    stored as fp32), so that per-epoch diagnostics on the same images need no second forward
    pass (at 4,800 MNIST validation images that pass is ~12 s of a ~160 s epoch on CPU)."""
    model.eval()
    correct, loss, outs = 0, 0.0, []
    for i in range(0, len(y), batch_size):
        with autocast() if autocast else _null():
            if keep_outputs:
                outs.append(stage_outputs(model, x[i:i + batch_size]))
                logits = model.head(outs[-1][-1]).float()
            else:
                logits = staged_logits(model, x[i:i + batch_size]).float()
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
        loss += nn.functional.cross_entropy(logits, y[i:i + batch_size], reduction="sum").item()
    model.train()
    result = {"accuracy": correct / max(1, len(y)), "loss": loss / max(1, len(y))}
    if keep_outputs:
        result["outputs"] = [torch.cat([batch[k] for batch in outs]).float() for k in range(len(model.stages))]
    return result


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def autocast_for(device: str, precision: str = "fp32"):
    """A bf16 autocast context factory for `precision="bf16"`, or None: full fp32."""
    if precision == "bf16":
        kind = "cuda" if device.startswith("cuda") else "cpu"
        return lambda: torch.autocast(kind, dtype=torch.bfloat16)
    return None


def channels_last(device: str, memory_format: str = "auto") -> bool:
    """Whether training runs in channels_last: asked for, or "auto" on CUDA."""
    if memory_format not in ("auto", "channels_last", "contiguous"):
        from repsearch.errors import UserError
        raise UserError(f"memory_format must be auto, channels_last or contiguous; got '{memory_format}'")
    return memory_format == "channels_last" or (memory_format == "auto" and device.startswith("cuda"))


def prepare_model_for_device(model: nn.Module, device: str, memory_format: str = "auto") -> nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last(device, memory_format) else model


def in_layout(tensors: dict, device: str, memory_format: str = "auto") -> dict:
    """4-d tensors (regression targets) in the layout the model computes in, so that the loss
    subtracts like from like instead of paying a strided copy per block per step."""
    if not channels_last(device, memory_format):
        return tensors
    return {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in tensors.items()}


def freeze_whitening_bias(model: nn.Module) -> None:
    for m in model.modules():
        if getattr(m, "bias_warmup_only", False):  # airbench's whitening: trained for whiten_bias_epochs
            m.bias.requires_grad = False
            m.bias.grad = None


def matmul_peak_flops(device: str = "cpu", n: int = 1024, repeats: int = 5) -> float:
    """Achieved FLOP/s of a square fp32 matmul on this device, measured now (the reference for
    'fraction of peak' figures, so that ratios are taken in one process on one noisy machine)."""
    import time
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = math.inf
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def fit(model: nn.Module, loader, opt: torch.optim.Optimizer, tc, *, loss_fn, val: tuple, run=None, tag: str = "train",
        epoch_hook=None, autocast=None, checkpoint=None, progress: bool = True) -> dict:
    """One readable training loop for every gradient-trained model in the project.

    loss_fn(model, idx, x, y) -> (loss summed over the batch, dict of floats to log). After each
    epoch the model is scored on `val` = (x, y) and the best state by validation accuracy is kept.
    `checkpoint` (a path) saves everything needed to resume after each epoch, and resumes from it.
    epoch_hook(model, epoch, val_outputs=None) -> dict adds diagnostics to the epoch's metrics
    record; val_outputs = (val images, their stage outputs) from the epoch's validation pass, so a
    hook measuring the same images reuses them instead of running the forward again.
    """
    import copy
    import time

    from tqdm import tqdm

    from repsearch.store import distributed

    epochs = planned_epochs(tc, len(loader))
    total_steps = epochs * len(loader)
    state = {"epoch": 0, "best_acc": -1.0, "best_state": None, "best_epoch": -1}
    if checkpoint is not None and checkpoint.exists():
        ck = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        loader.generator.set_state(ck["gen"])
        loader.aug_generator.set_state(ck["aug_gen"])
        state = ck["state"]
        if state["epoch"] >= tc.whiten_bias_epochs:
            freeze_whitening_bias(model)
    t0, images_seen = time.time(), 0
    main = distributed.is_main()
    epoch_hook = epoch_hook if main else None  # diagnostics are rank 0's (they only feed its log)
    if epoch_hook is not None and run is not None and state["epoch"] == 0:  # epoch 0: the untrained model
        run.log({"tag": tag, "epoch": 0, **epoch_hook(model, 0)})
    step, world = data_parallel(model, loss_fn), distributed.world()
    if tc.compile:
        step = torch.compile(step)  # the same step, traced once per batch shape
    first_epoch, steady = state["epoch"], None
    keep_best = selects_best(tc, len(val[1]))
    bar = tqdm(range(state["epoch"], epochs), desc=tag, disable=not (progress and main), leave=False,
               dynamic_ncols=True)
    model.train()
    for epoch in bar:
        if epoch == tc.whiten_bias_epochs:
            freeze_whitening_bias(model)
        sums: dict[str, float] = {}
        n = 0  # images this rank trained on this epoch (its logged means are over them)
        for i, (idx, x, y) in enumerate(loader):
            set_lr(opt, lr_factor(epoch * len(loader) + i, total_steps, tc.warmup, tc.final_lr))
            with autocast() if autocast else _null():
                loss, parts = step(idx, x, y)
            opt.zero_grad(set_to_none=True)
            (loss * world).backward()  # DDP averages gradients over ranks; the loss is a sum over the global batch
            opt.step()
            images_seen += len(y) * world
            n += len(y)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(y)
        record = {"tag": tag, "epoch": epoch + 1, **{f"train_{k}": v / n for k, v in sums.items()}}
        val_outputs = None
        if (epoch + 1) % tc.eval_every == 0 or epoch + 1 == epochs:
            ev = evaluate(model, *val, autocast=autocast, keep_outputs=epoch_hook is not None)
            val_outputs = (val[0], ev.pop("outputs")) if epoch_hook is not None else None
            # rank 0's score decides for every rank: another rank's BatchNorm statistics differ by
            # its last batch, and ranks that disagreed on stopping early would part at a collective
            ev = distributed.broadcast(ev)
            record.update(val_accuracy=ev["accuracy"], val_loss=ev["loss"])
            if ev["accuracy"] > state["best_acc"] or not keep_best:
                state.update(best_acc=ev["accuracy"], best_epoch=epoch + 1,
                             best_state=copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()}))
        if epoch_hook is not None:
            record.update(epoch_hook(model, epoch + 1, val_outputs=val_outputs))
        del val_outputs
        record["images_per_s"] = images_seen / max(1e-9, time.time() - t0)
        if run is not None:
            run.log(record)
        bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k in ("train_loss", "val_accuracy")})
        state["epoch"] = epoch + 1
        if epoch == first_epoch:  # after the first epoch: a compiled step's tracing is behind us
            steady = (time.time(), images_seen)
        if checkpoint is not None and main:
            from repsearch.store.atomic import atomic_torch_save
            atomic_torch_save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state,
                               "gen": loader.generator.get_state(), "aug_gen": loader.aug_generator.get_state()}, checkpoint)
        if stops_early(tc, len(val[1])) and state["epoch"] - state["best_epoch"] >= tc.patience:
            break  # early stopping: no better validation accuracy for `patience` epochs
    bar.close()
    model.load_state_dict(state["best_state"])
    model.eval()
    return {"best_val_accuracy": state["best_acc"], "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
            "epochs_planned": epochs, "images_per_s": images_seen / max(1e-9, time.time() - t0),
            "steady_images_per_s": _rate_since(steady, images_seen, time.time())}


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
    when the validation set can resolve epochs (>= patience_min_val images). At 80 images one
    image is 1.25 points, and the choice among late epochs is noise (docs/learnability.md).
    The value itself is checked with the config (validation.CHOICES)."""
    return tc.select == "best" or (tc.select == "auto" and val_images >= tc.patience_min_val)


def planned_epochs(tc, steps_per_epoch: int) -> int:
    """`epochs`, lowered to the whole epochs that `max_steps` covers (rounded up, so a large
    training set keeps the steps a preset was tuned with), then raised so that a small training
    set still gets `min_steps` optimizer steps."""
    per = max(1, steps_per_epoch)
    epochs = min(tc.epochs, -(-tc.max_steps // per)) if tc.max_steps else tc.epochs
    return max(epochs, -(-tc.min_steps // per))


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
    from repsearch.store import distributed
    step = _Step(model, loss_fn)
    if distributed.world() == 1:
        return step
    from torch.nn.parallel import DistributedDataParallel
    dev = next(model.parameters()).device
    # unused parameters happen: a frozen whitening bias, stages outside learn.supervise
    return DistributedDataParallel(step, device_ids=[dev] if dev.type == "cuda" else None, find_unused_parameters=True)
