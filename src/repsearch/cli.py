"""`repsearch` command line: one contract for every subcommand.

    repsearch SUBCOMMAND [--preset NAME] [--set key=value ...] [--data-root DIR] [--out RUN_DIR]
                         [--device DEV] [--seed N]

Every subcommand resolves its config (defaults <- preset <- --set <- flags) before touching the
disk, writes a run directory, and ends by writing RUN_DIR/summary.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import config as config_mod
from . import distributed
from .cli_experiments import (cmd_diversity, cmd_ensemble, cmd_neuroevolution, cmd_rounds, cmd_scaling, cmd_sweep,
                              diversity_args, ensemble_args, neuroevolution_args, rounds_args, scaling_args, sweep_args)
from .cli_inspect import cmd_config, cmd_presets, cmd_report, cmd_tables, cmd_verify
from .errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit code 2
        raise UserError(f"{message} (see 'repsearch {self.prog.split()[-1]} --help')")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help=f"preset name: {', '.join(config_mod.list_presets())}")
    p.add_argument("--overlay", dest="overlays", action="append", default=[], metavar="NAME",
                   help=f"apply an overlay after the preset (repeatable): {', '.join(config_mod.list_overlays())}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (dotted key, repeatable), e.g. --set baseline.epochs=5")
    p.add_argument("--data-root", help="data root (default $REPSEARCH_DATA or ./data)")
    p.add_argument("--out", help="run directory (default runs/<time>-<command>-<preset>)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _resolve(args) -> config_mod.Config:
    return config_mod.resolve(args.preset, args.overrides, args.overlays, seed=args.seed, device=args.device,
                              **{"data.root": args.data_root})


def _check_device(device: str) -> None:
    import torch
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' requested but CUDA is not available here; use --device cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise UserError(f"unknown device '{device}'; use cpu or cuda[:N]")


def _run_dir(args, command: str, cfg):
    from .runs import RunDir, check_run_path, default_run_path
    path = Path(args.out) if args.out else default_run_path(command, args.preset)
    config = {"command": command, "preset": args.preset, "overlays": args.overlays, **cfg.to_dict(),
              **({"later_set": args.later_set} if getattr(args, "later_set", None) else {}),  # rounds: part of the run
              **({"round0": [str(Path(p).resolve()) for p in args.round0]} if getattr(args, "round0", None) else {})}
    check_run_path(path, config)
    return RunDir(path, config, cfg.device)


def _shared_run_dir(args, command: str, cfg):
    """Under torchrun: rank 0 checks and creates the run directory (its errors stop every rank with
    one line); every rank gets a RunDir for that path, and only rank 0's writes."""
    from .runs import RunDir
    run = distributed.main_first(lambda: _run_dir(args, command, cfg))
    path = distributed.broadcast(run.path if run else None)
    return run if run is not None else RunDir(path, {}, cfg.device, write=False)


def _print_summary(summary: dict, run) -> None:
    if not distributed.is_main():
        return
    shown = {k: v for k, v in summary.items() if not isinstance(v, (list, dict))}
    print(json.dumps(shown, indent=2))
    print(f"run directory: {run.path}")


def cmd_baseline(args) -> int:
    from .baseline import run_baseline
    from .data import check_batches, prepare
    from .models import build_model
    cfg = _resolve(args)
    _check_device(cfg.device)
    cfg.device = distributed.init(cfg.device)
    prep = prepare(cfg)
    check_batches(cfg, prep, ["baseline"])
    build_model(cfg, "baseline", prep.dataset.shape, prep.dataset.num_classes)  # a bad model: one line, nothing written
    run = _shared_run_dir(args, "baseline", cfg)
    summary = run_baseline(prep, cfg, run, progress=not args.no_progress)
    _print_summary(run.summary(summary), run)
    return 0


def cmd_search(args) -> int:
    from .data import prepare
    from .plots import plot_search_curves
    from .search import preflight, run_search
    cfg = _resolve(args)
    _check_device(cfg.device)
    if args.limit < 0:
        raise UserError("--limit must be >= 0")
    cfg.device = distributed.init(cfg.device)  # under torchrun: this rank's process group and device
    prep = prepare(cfg)
    preflight(cfg, prep)
    run = _shared_run_dir(args, "search", cfg)
    cache_path = Path(args.cache) if args.cache else run.path / "cache"
    cache, summary = run_search(prep, cfg, cache_path, limit=args.limit, progress=not args.no_progress, log=run.log)
    if not distributed.is_main():
        return 0
    plot_search_curves(cache.curves(), run.path / "search_curves.png")
    for layer in summary["layers"]:
        print(f"point {layer['layer']} ({layer['name']}): mean best CE {layer['ce_start']:.4f} -> {layer['ce_end']:.4f}, "
              f"{layer['evaluations_per_s']:.0f} evaluations/s")
    _print_summary(run.summary({"cache": str(cache_path), **summary}), run)
    return 0


def cmd_train(args) -> int:
    from .cache import TargetCache
    from .data import check_batches, prepare
    from .learn import target_caches, train_from_cache
    from .pipeline import stream_config
    from .search import fingerprint_for, preflight
    cfg = _resolve(args)
    _check_device(cfg.device)
    if not args.cache:
        raise UserError("train needs --cache DIR (a target cache written by 'repsearch search')")
    cfg.device = distributed.init(cfg.device)
    prep = prepare(cfg)
    preflight(cfg, prep)
    check_batches(cfg, prep, ["learn"])
    if len(args.cache) > 1 and cfg.learn.target_searches not in (1, len(args.cache)):
        raise UserError(f"learn.target_searches is {cfg.learn.target_searches} but {len(args.cache)} caches were given")
    cfg.learn.target_searches = len(args.cache)  # what the run's config.json records
    caches = target_caches([TargetCache.open(path, fingerprint_for(stream_config(cfg, k), prep))
                            for k, path in enumerate(args.cache)], cfg.learn)  # before the run directory exists
    run = _shared_run_dir(args, "train", cfg)
    _, summary = train_from_cache(prep, cfg, caches, run, progress=not args.no_progress)
    _print_summary(run.summary({"dataset": prep.dataset.name, "cache": args.cache[0] if len(args.cache) == 1 else args.cache, **summary}), run)
    return 0


def cmd_run(args) -> int:
    from .pipeline import markdown, run_pipeline
    cfg = _resolve(args)
    if args.seeds is not None:
        if args.seeds < 1:
            raise UserError("--seeds must be >= 1")
        cfg.run.seeds = args.seeds
    _check_device(cfg.device)
    cfg.device = distributed.init(cfg.device)
    from .data import check_batches, prepare
    from .search import preflight
    prep = prepare(cfg)
    preflight(cfg, prep)  # fail early on missing data, a bad model or sizes, before anything is written
    check_batches(cfg, prep)
    run = _shared_run_dir(args, "run", cfg)
    summary, results = run_pipeline(cfg, run.path, progress=not args.no_progress)
    _print_summary(run.summary(summary), run)
    if not distributed.is_main():
        return 0
    print(markdown(results, cfg))
    from .report import write_report
    print(f"report: {write_report([run.path], run.path / 'report.html')}")
    return 0


COMMANDS = {
    "baseline": (cmd_baseline, "train the SGD baseline (best of baseline.depths by validation, then test)"),
    "search": (cmd_search, "evolutionary search in representation space into a resumable target cache"),
    "run": (cmd_run, "end to end: SGD baseline + search + learning per seed, then the paper's tables"),
    "scaling": (cmd_scaling, "paper Figure 2: mean best CE vs population and generations, one block evolved at a time"),
    "diversity": (cmd_diversity, "paper Figure 3: N_eff of independent searches' solutions vs number of runs"),
    "sweep": (cmd_sweep, "paper Figure 4: validation accuracy vs population size and vs generations (resumable)"),
    "neuroevolution": (cmd_neuroevolution, "weights mutated and selected (Whitelam et al.): cosine of the mean accepted step with -grad vs sigma"),
    "rounds": (cmd_rounds, "iterative search and learning: round r searches with round r-1's learned network"),
    "ensemble": (cmd_ensemble, "K independent searches -> K learned models vs K SGD seeds: ensemble accuracy, disagreement, CKA"),
    "train": (cmd_train, "train a network by regressing to the searched representations of a target cache"),
    "config": (cmd_config, "print the resolved config (preset + overrides) without running anything"),
    "presets": (cmd_presets, "list the presets and overlays"),
    "verify": (cmd_verify, "check a target cache: array shapes, every chunk's checksum, finite values"),
    "tables": (cmd_tables, "Tables 1/2 across datasets from 'run' directories (one per dataset), as Markdown and LaTeX"),
    "report": (cmd_report, "one self-contained HTML page of run directories: config, search, learning, Tables 1/2, Figures 2-7"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="repsearch", description="Decoupling search and learning: evolutionary search in "
                     "representation space, then regression to the searched representations.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, (fn, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name not in ("presets", "verify", "report", "tables"):
            _common(p)
        _extra_args.get(name, lambda p: None)(p)
        p.set_defaults(func=fn)
    return parser


def _search_args(p):
    p.add_argument("--limit", type=int, default=0, help="search only the first N images of the pool")
    p.add_argument("--cache", help="target cache directory (default RUN_DIR/cache); an existing matching "
                   "cache is resumed")


def _train_args(p):
    p.add_argument("--cache", nargs="+", help="target cache directory written by 'repsearch search' with the same "
                   "config; K directories (searches with search.stream = s, s+1, ..., s+K-1 in that order; s: the config's): the learner's targets "
                   "are their mean (learn.target_searches)")


def _run_args(p):
    p.add_argument("--seeds", type=int, help="number of seeds (default run.seeds)")


def _verify_args(p):
    p.add_argument("cache", help="target cache directory")


def _report_args(p):
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (any repsearch command's --out)")
    p.add_argument("--out", required=True, help="the HTML file to write")


def _tables_args(p):
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished 'repsearch run' directories, one per dataset")
    p.add_argument("--out", required=True, help="output prefix: writes PREFIX.md and PREFIX.tex")


_extra_args: dict = {"verify": _verify_args, "report": _report_args, "tables": _tables_args, "search": _search_args,
                     "train": _train_args, "run": _run_args, "scaling": scaling_args, "sweep": sweep_args,
                     "neuroevolution": neuroevolution_args, "diversity": diversity_args,
                     "rounds": rounds_args, "ensemble": ensemble_args}


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        if args.command not in ("search", "train", "baseline", "run", "rounds"):
            distributed.require_single(args.command)
        try:
            return args.func(args)
        finally:
            distributed.shutdown()
    except UserError as e:
        print(f"repsearch: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk at a write that storage does not wrap: still one line
        from .storage import FULL, disk_full
        if e.errno not in FULL:
            raise
        print(f"repsearch: error: {disk_full(Path(e.filename or '.'))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("repsearch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
