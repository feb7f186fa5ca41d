"""The one path every working subcommand takes before it works:

    resolve the config -> check the device -> join the process group -> load the data
    -> preflight (the config against the model) -> the command's own checks -> the run directory

Everything a user can get wrong is refused in one line before the run directory exists, so a
refused command leaves nothing on disk.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from repsearch.config import Config, resolve
from repsearch.errors import UserError
from repsearch.events import show_progress
from repsearch.store import distributed


@dataclass
class Command:
    """A subcommand once set up: its resolved config, its data, and its run directory."""
    cfg: Config
    prep: object  # repsearch.data.Prepared
    run: object  # repsearch.store.rundir.RunDir


def resolve_args(args) -> Config:
    """Defaults <- preset <- overlays <- `--set` <- flags (seed, device, data root)."""
    return resolve(args.preset, args.overrides, args.overlays, seed=args.seed, device=args.device,
                   **{"data.root": args.data_root})


def check_device(device: str) -> None:
    import torch
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' requested but CUDA is not available here; use --device cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise UserError(f"unknown device '{device}'; use cpu or cuda[:N]")


def set_up(args, command: str, *, multi_process: bool = True, batches=("learn", "baseline"), preflight: str = "full",
           check=None, configure=None) -> Command:
    """The shared set-up. `multi_process`: the command takes torchrun (every rank joins the process
    group, rank 0 alone writes); the others are refused under torchrun by `main`. `batches`: the training
    sections whose batch size must fit the training images. `preflight`: "full" (search network and
    learner), "baseline" (the SGD model only) or "none". `configure(cfg)`: the command's own flags
    into the config; `check(cfg, prep)`: its own argument checks, both before anything is written."""
    from repsearch.data import check_batches, prepare
    from repsearch.learn.hooks import check_loggers
    show_progress(not args.no_progress)
    cfg = resolve_args(args)
    if configure is not None:
        configure(cfg)
    check_device(cfg.device)
    if multi_process:
        cfg.device = distributed.init(cfg.device)
    prep = prepare(cfg)
    _preflight(cfg, prep, preflight)
    check_batches(cfg, prep, batches)
    check_loggers(cfg)
    if check is not None:
        check(cfg, prep)
    run = shared_run_dir(args, command, cfg) if multi_process else run_dir(args, command, cfg)
    return Command(cfg, prep, run)


def _preflight(cfg, prep, kind: str) -> None:
    """The config against the model; per-point lists fitted to it are said in one line (rank 0)."""
    from repsearch.config import per_point
    from repsearch.studies.preflight import check_baseline_model, preflight
    if kind == "full":
        before = per_point.lists(cfg.search)
        preflight(cfg, prep)
        note = per_point.describe(before, cfg.search)
        if note and distributed.is_main():
            print(note, flush=True)
    elif kind == "baseline":
        check_baseline_model(cfg, prep)


def run_dir(args, command: str, cfg):
    """The run directory of `--out` (or a fresh one under runs/): checked to be this run's, locked
    for this process (`store.lock`), then written."""
    from repsearch.store.lock import lock_run_dir
    from repsearch.store.rundir import RunDir, check_run_path, default_run_path
    path = Path(args.out) if args.out else default_run_path(command, args.preset)
    config = {"command": command, "preset": args.preset, "overlays": args.overlays, **cfg.to_dict(),
              **({"later_set": args.later_set} if getattr(args, "later_set", None) else {}),  # rounds: part of the run
              **({"round0": [str(Path(p).resolve()) for p in args.round0]} if getattr(args, "round0", None) else {})}
    check_run_path(path, config)
    lock_run_dir(path)
    check_run_path(path, config)  # again, now that no other process can write it
    return RunDir(path, config, cfg.device)


def shared_run_dir(args, command: str, cfg):
    """Under torchrun: rank 0 checks and creates the run directory (its errors stop every rank with
    one line); every rank gets a RunDir for that path, and only rank 0's writes."""
    from repsearch.store.rundir import RunDir
    run = distributed.main_first(lambda: run_dir(args, command, cfg))
    path = distributed.broadcast(run.path if run else None)
    return run if run is not None else RunDir(path, {}, cfg.device, write=False)


def finish(c: Command, command: str, figures: dict, seeds: list[int] | None = None, study: dict | None = None) -> dict:
    """The end of every working command: summary.json, record.json, and the figures printed.
    `study`: a study's whole result, kept in the record when it is small (STUDY_BYTES)."""
    summary = c.run.summary(figures)
    write_record(c, command, summary, seeds, study)
    print_summary(summary, c.run)
    return summary


STUDY_BYTES = 40_000  # a record stays well under 100 KB with its config and environment


def _small_study(study: dict | None) -> dict:
    """The study's result as JSON values when it fits in STUDY_BYTES, else {} (its own file keeps it)."""
    if not study:
        return {}
    text = json.dumps(study, default=str)
    return json.loads(text) if len(text) <= STUDY_BYTES else {}


def write_record(c: Command, command: str, summary: dict, seeds: list[int] | None = None, study: dict | None = None) -> None:
    """RUN/record.json (`store.record`): the command, config, environment, stage times and the
    summary's figures (rank 0)."""
    if not distributed.is_main():
        return
    from repsearch.store import record, records
    run, cfg, prep = c.run, c.cfg, c.prep
    headline = {k: v for k, v in summary.items()
                if not isinstance(v, dict) and not (isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v))}
    record.write(run.path / "record.json", kind=command, preset=run.config.get("preset"),
                 overlays=run.config.get("overlays") or [], config=cfg.to_dict(),
                 environment=records.environment(run.path) or {}, seeds=seeds or [cfg.seed],
                 dataset=prep.dataset.name, train_images=len(prep.split.train), test_images=len(prep.dataset.test_y),
                 wall_seconds=float(summary.get("wall_time_s", 0.0)), stage_seconds=records.stage_seconds(run.path),
                 headline=headline, searched_ce=records.searched_ce(run.path), tables=summary.get("tables", {}),
                 study=_small_study(study))


def print_summary(summary: dict, run) -> None:
    """The summary's scalar figures as JSON and the run directory (rank 0 only)."""
    if not distributed.is_main():
        return
    shown = {k: v for k, v in summary.items() if not isinstance(v, (list, dict))}
    print(json.dumps(shown, indent=2))
    print(f"run directory: {run.path}")
