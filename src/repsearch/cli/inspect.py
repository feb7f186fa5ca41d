"""The subcommands that read, never train: verify a cache, report and tabulate finished runs,
list presets and overlays, print a resolved config (parser and main: `cli`)."""
from __future__ import annotations

import json
from pathlib import Path

import repsearch.config as config_mod
from repsearch.errors import UserError


def cmd_verify(args) -> int:
    from repsearch.store.cache import TargetCache
    from repsearch.store.verify import verify_cache
    cache = TargetCache.open(args.cache)
    report = verify_cache(cache)
    state = "complete" if report["complete"] else f"incomplete ({len(cache.done_chunks())}/{cache.manifest['num_chunks']} chunks)"
    print(f"ok: {cache.path}: {report['images']} images, {state}; {report['chunks_verified']} chunk(s) verified by "
          f"checksum, {report['chunks_without_checksum']} without one (written before checksums)")
    return 0


def cmd_report(args) -> int:
    from repsearch.report.html import write_report
    for run in args.runs:
        if not Path(run).is_dir():
            raise UserError(f"{run} is not a run directory")
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; name the HTML file to write")
    print(f"report: {write_report([Path(r) for r in args.runs], out)}")
    return 0


def cmd_tables(args) -> int:
    from repsearch.report.tables import write_tables
    md, tex = write_tables([Path(r) for r in args.runs], Path(args.out))
    print(md.read_text())
    print(f"tables: {md}, {tex}")
    return 0


def cmd_presets(args) -> int:
    for folder, names, flag in ((config_mod.PRESET_DIR, config_mod.list_presets(), "--preset"),
                                (config_mod.OVERLAY_DIR, config_mod.list_overlays(), "--overlay")):
        for name in names:
            text = (folder / f"{name}.toml").read_text().splitlines()
            desc = text[0].lstrip("# ") if text and text[0].startswith("#") else ""
            print(f"{flag} {name:16s} {desc}")
    return 0


def cmd_config(args) -> int:
    from .setup import resolve_args
    cfg = resolve_args(args)
    print(json.dumps(cfg.to_dict(), indent=2))
    return 0


def verify_args(p):
    p.add_argument("cache", help="target cache directory")


def report_args(p):
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (any repsearch command's --out)")
    p.add_argument("--out", required=True, help="the HTML file to write")


def tables_args(p):
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished 'repsearch run' directories, one per dataset")
    p.add_argument("--out", required=True, help="output prefix: writes PREFIX.md and PREFIX.tex")


def cmd_results(args) -> int:
    if args.update:
        from repsearch.report.embedded import update
        for doc in args.update:
            print(f"results: {doc}: {update(Path(doc))} generated block(s) rewritten from their records")
        return 0
    if not args.paths or not args.out:
        raise UserError("repsearch results needs DIR... --out FILE.md, or --update FILE... to rewrite a document's tables")
    from repsearch.report.results import write_results
    out = write_results(args.paths, Path(args.out))
    print(out.read_text())
    print(f"results: {out}")
    return 0


def results_args(p):
    p.add_argument("paths", nargs="*", metavar="DIR", help="directories searched for record.json (e.g. results/), or records")
    p.add_argument("--out", help="the Markdown file to write")
    p.add_argument("--update", nargs="+", metavar="FILE", help="rewrite the generated tables embedded in these documents "
                   "(e.g. README.md docs/evidence.md) from the records they name; run from the repository root")
