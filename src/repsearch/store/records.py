"""The one reader of what runs leave on disk: run directories (config.json, environment.json,
summary.json, results.json, metrics.jsonl) and a target cache's search summary.

Report, tables, figures and studies read through here, so that a missing file is `None` the same
way everywhere, a damaged one is one line (`UserError`), and files written by older versions are
brought to today's vocabulary in one place (`search_summary`).
"""
from __future__ import annotations

import json
from pathlib import Path

from repsearch.errors import UserError


def read_json(path: Path, what: str = ""):
    """The JSON at `path`, or None when it does not exist; a damaged file is one line naming it."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{path} is unreadable (damaged){'; ' + what if what else ''}") from None


def config(run: Path) -> dict | None:
    """The resolved config a run wrote (with "command", "preset", "overlays" beside the sections)."""
    return read_json(Path(run) / "config.json", "re-run the command into a new --out")


def environment(run: Path) -> dict | None:
    return read_json(Path(run) / "environment.json")


def summary(run: Path) -> dict | None:
    """A finished stage's or command's summary.json (None: unfinished)."""
    return read_json(Path(run) / "summary.json", "delete it to re-run that stage")


def results(run: Path) -> dict:
    """A finished `repsearch run`'s results.json (Tables 1/2 per seed), checked to hold a table."""
    path = Path(run) / "results.json"
    data = read_json(path, "re-run 'repsearch run' there to rewrite it")
    if data is None:
        raise UserError(f"{run} has no results.json (not a finished 'repsearch run' directory)")
    if not isinstance(data, dict) or "dataset" not in data or "table" not in data:
        raise UserError(f"{path} is unreadable (damaged); re-run 'repsearch run' there to rewrite it")
    return data


def dataset(run: Path) -> str:
    cfg = config(run)
    return cfg["data"]["name"] if cfg else "?"


def epoch_records(stage_dir: Path, tag: str | None = None) -> list[dict]:
    """The per-epoch records of one stage's metrics.jsonl (one per epoch: a resumed run's repeat
    replaces the first), optionally only those of `tag`."""
    path = Path(stage_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    by_epoch = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if "epoch" in rec and (tag is None or rec.get("tag") == tag):
            by_epoch[(rec.get("tag"), rec["epoch"]) if tag is None else rec["epoch"]] = rec
    return [by_epoch[k] for k in sorted(by_epoch, key=lambda k: (str(k[0]), k[1]) if isinstance(k, tuple) else k)]


def lines(path: Path) -> list[dict]:
    """A JSON-lines file (a sweep's points, a run's metrics) as a list; [] when absent."""
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def cache_complete(cache_dir: Path) -> bool:
    manifest = read_json(Path(cache_dir) / "manifest.json")
    return bool(manifest and manifest.get("complete", False))


def search_summary(summary: dict | None) -> dict | None:
    """A cache's search summary in today's words: caches written before "point" was the one word
    for a search point list them under "layers" (each with "layer")."""
    if summary is None or "points" in summary or "layers" not in summary:
        return summary
    out = {k: v for k, v in summary.items() if k != "layers"}
    out["points"] = [{("point" if k == "layer" else k): v for k, v in p.items()} for p in summary["layers"]]
    return out


def stage_seconds(run: Path) -> dict[str, float]:
    """Each stage's own wall time under a run directory: training stages by their summary.json,
    searches by their cache's per-point seconds (which survive a resume), keyed by relative path."""
    run, out = Path(run), {}
    for path in sorted(run.rglob("summary.json")):
        if path.parent != run and (done := read_json(path)) and "wall_time_s" in done:
            out[str(path.parent.relative_to(run))] = float(done["wall_time_s"])
    for path in sorted(run.rglob("manifest.json")):
        done = search_summary((read_json(path) or {}).get("summary"))
        if done:  # the last call's wall time; caches written before it was kept: the chunks' seconds, summed over ranks
            wall = done.get("search_wall_time_s_this_call")
            out[str(path.parent.relative_to(run))] = float(wall if wall is not None else sum(p["seconds"] for p in done["points"]))
    return out


def searched_ce(run: Path) -> dict[str, dict[str, float]]:
    """The searched cross-entropy's statistics of every complete target cache under a run directory."""
    out = {}
    for path in sorted(Path(run).rglob("manifest.json")):
        done = (read_json(path) or {}).get("summary")
        if done:
            out[str(path.parent.relative_to(run))] = {k: float(done[f"searched_ce_{k}"])
                                                       for k in ("mean", "p50", "p90", "p99", "max")}
    return out
