"""`repsearch` command line: one contract for every subcommand.

    repsearch SUBCOMMAND [--preset NAME] [--set key=value ...] [--data-root DIR] [--out RUN_DIR]
                         [--device DEV] [--seed N]

Every working subcommand takes the same set-up path (`setup.set_up`: config, device, process
group, data, preflight, run directory) and ends by writing RUN_DIR/summary.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from repsearch.config import list_overlays, list_presets
from repsearch.errors import UserError
from repsearch.store import distributed
from repsearch.store.lock import release_all

from . import core, inspect, studies

# name: (function, one line of help, extra arguments, takes the common options)
COMMANDS = {
    "baseline": (core.cmd_baseline, "train the SGD baseline (best of baseline.depths by validation, then test)", None, True),
    "search": (core.cmd_search, "evolutionary search in representation space into a resumable target cache",
               core.search_args, True),
    "run": (core.cmd_run, "end to end: SGD baseline + search + learning per seed, then the paper's tables", core.run_args,
            True),
    "scaling": (studies.cmd_scaling, "paper Figure 2: mean best CE vs population and generations, one block evolved at "
                "a time", studies.scaling_args, True),
    "diversity": (studies.cmd_diversity, "paper Figure 3: N_eff of independent searches' solutions vs number of runs",
                  studies.diversity_args, True),
    "sweep": (studies.cmd_sweep, "paper Figure 4: validation accuracy vs population size and vs generations (resumable)",
              studies.sweep_args, True),
    "neuroevolution": (studies.cmd_neuroevolution, "weights mutated and selected (Whitelam et al.): cosine of the mean "
                       "accepted step with -grad vs sigma", studies.neuroevolution_args, True),
    "rounds": (studies.cmd_rounds, "iterative search and learning: round r searches with round r-1's learned network",
               studies.rounds_args, True),
    "ensemble": (studies.cmd_ensemble, "K independent searches -> K learned models vs K SGD seeds: ensemble accuracy, "
                 "disagreement, CKA", studies.ensemble_args, True),
    "train": (core.cmd_train, "train a network by regressing to the searched representations of a target cache",
              core.train_args, True),
    "config": (inspect.cmd_config, "print the resolved config (preset + overrides) without running anything", None, True),
    "presets": (inspect.cmd_presets, "list the presets and overlays", None, False),
    "verify": (inspect.cmd_verify, "check a target cache: array shapes, every chunk's checksum, finite values",
               inspect.verify_args, False),
    "tables": (inspect.cmd_tables, "Tables 1/2 across datasets from 'run' directories (one per dataset), as Markdown "
               "and LaTeX", inspect.tables_args, False),
    "results": (inspect.cmd_results, "the results table (Markdown) from run records (record.json) under the given "
                "directories", inspect.results_args, False),
    "report": (inspect.cmd_report, "one self-contained HTML page of run directories: config, search, learning, "
               "Tables 1/2, Figures 2-7", inspect.report_args, False),
}


MULTI_PROCESS = ("search", "train", "baseline", "run", "rounds")  # the commands that take torchrun


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line, exit code 2
        raise UserError(f"{message} (see 'repsearch {self.prog.split()[-1]} --help')")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help=f"preset name: {', '.join(list_presets())}")
    p.add_argument("--overlay", dest="overlays", action="append", default=[], metavar="NAME",
                   help=f"apply an overlay after the preset (repeatable): {', '.join(list_overlays())}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (dotted key, repeatable), e.g. --set baseline.epochs=5")
    p.add_argument("--data-root", help="data root (default $REPSEARCH_DATA or ./data)")
    p.add_argument("--out", help="run directory (default runs/<time>-<command>-<preset>)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="repsearch", description="Decoupling search and learning: evolutionary search in "
                     "representation space, then regression to the searched representations.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, (fn, help_text, extra, common) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if common:
            _common(p)
        if extra is not None:
            extra(p)
        p.set_defaults(func=fn)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        if args.command not in MULTI_PROCESS:
            distributed.require_single(args.command)
        try:
            return args.func(args)
        finally:
            release_all()
            distributed.shutdown()
    except UserError as e:
        print(f"repsearch: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk at a write that storage does not wrap: still one line
        from repsearch.store.atomic import FULL, disk_full
        if e.errno not in FULL:
            raise
        print(f"repsearch: error: {disk_full(Path(e.filename or '.'))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("repsearch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
