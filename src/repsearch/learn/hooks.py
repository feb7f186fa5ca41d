"""What the training loop reports to, as hooks (events: `learn.loop`): the run's metrics.jsonl, a
progress bar, a resumable checkpoint, and the optional loggers TensorBoard and Weights & Biases
(offline), which are imported only when a config asks for them (`log.tensorboard`, `log.wandb`).
"""
from __future__ import annotations

import numbers
from pathlib import Path

import torch

from repsearch.errors import UserError
from repsearch.events import progress_bar
from repsearch.store import distributed
from repsearch.store.atomic import atomic_torch_save


class MetricsLog:
    """Every record into the run directory's metrics.jsonl (rank 0's)."""

    def __init__(self, run):
        self.run = run

    def log(self, loop, record):
        self.run.log(record)


class ProgressBar:
    """A bar over epochs with the last training loss and validation accuracy."""

    def fit_start(self, loop):
        self.bar = progress_bar(distributed.is_main(), total=loop.epochs, initial=loop.state["epoch"], desc=loop.tag,
                                leave=False)

    def epoch_end(self, loop, record):
        self.bar.update(1)
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k in ("train_loss", "val_accuracy")})

    def fit_end(self, loop, result):
        self.bar.close()


class Checkpoint:
    """Everything needed to resume after each epoch, saved by rank 0 and loaded by every rank."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def resume(self, loop):
        if not self.path.exists():
            return
        ck = torch.load(self.path, weights_only=False)
        loop.model.load_state_dict(ck["model"])
        loop.opt.load_state_dict(ck["opt"])
        loop.loader.generator.set_state(ck["gen"])
        loop.loader.aug_generator.set_state(ck["aug_gen"])
        loop.state = ck["state"]

    def epoch_end(self, loop, record):
        if distributed.is_main():
            atomic_torch_save({"model": loop.model.state_dict(), "opt": loop.opt.state_dict(), "state": loop.state,
                               "gen": loop.loader.generator.get_state(),
                               "aug_gen": loop.loader.aug_generator.get_state()}, self.path)


def _scalars(record: dict) -> dict:
    """A record's numeric values (not the tag or the epoch itself)."""
    return {k: float(v) for k, v in record.items()
            if isinstance(v, numbers.Number) and not isinstance(v, bool) and k != "epoch"}


def _import_logger(key: str, module: str):
    """The logger's package, or one line saying how to get it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        package = key.split(".")[1]
        raise UserError(f"{key} = true needs the {package} package: pip install 'repsearch[loggers]' "
                        f"(or set {key}=false)") from None


def check_loggers(cfg) -> None:
    """Before anything runs: every logger the config asks for can be imported."""
    if cfg.log.tensorboard:
        _import_logger("log.tensorboard", "torch.utils.tensorboard")
    if cfg.log.wandb:
        _import_logger("log.wandb", "wandb")


class TensorBoardLog:
    """Scalars per epoch as TensorBoard event files in STAGE_DIR/tensorboard, named TAG/KEY."""

    def __init__(self, logdir: Path):
        self.writer = _import_logger("log.tensorboard", "torch.utils.tensorboard").SummaryWriter(str(logdir))

    def log(self, loop, record):
        for k, v in _scalars(record).items():
            self.writer.add_scalar(f"{record['tag']}/{k}", v, record["epoch"])

    def fit_end(self, loop, result):
        self.writer.flush()
        self.writer.close()


class WandbLog:
    """One offline Weights & Biases run per training stage under STAGE_DIR/wandb (`wandb sync` uploads it)."""

    def __init__(self, directory: Path, project: str, name: str, config: dict):
        self.wandb = _import_logger("log.wandb", "wandb")
        self.directory, self.project, self.name, self.config = Path(directory), project, name, config

    def fit_start(self, loop):
        self.directory.mkdir(parents=True, exist_ok=True)
        self.run = self.wandb.init(mode="offline", dir=str(self.directory), project=self.project,
                                   name=f"{self.name}/{loop.tag}", config=self.config, reinit="create_new",
                                   settings=self.wandb.Settings(silent=True, console="off"))

    def log(self, loop, record):
        self.run.log({f"{record['tag']}/{k}": v for k, v in _scalars(record).items()}, step=record["epoch"])

    def fit_end(self, loop, result):
        self.run.summary.update(_scalars(result))
        self.run.finish()


def training_hooks(cfg, run, checkpoint: str | None = None, *extra) -> list:
    """The hooks of one training stage: `extra` first (measurements join the record before it is
    logged), then the run's metrics.jsonl and the loggers its config asks for (rank 0), the
    progress bar, and with `checkpoint` (a file name in the run directory) a resumable state."""
    hooks = [*extra, ProgressBar()]
    if run is not None:
        hooks.append(MetricsLog(run))
        if checkpoint is not None:
            hooks.append(Checkpoint(run.path / checkpoint))
        if distributed.is_main() and cfg.log.tensorboard:
            hooks.append(TensorBoardLog(run.path / "tensorboard"))
        if distributed.is_main() and cfg.log.wandb:
            hooks.append(WandbLog(run.path / "wandb", cfg.log.wandb_project, run.path.name, cfg.to_dict()))
    return hooks
