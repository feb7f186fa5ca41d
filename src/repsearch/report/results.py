"""`repsearch results DIR... --out FILE.md`: the results tables, rendered from run records only.

Every number in the README's results table comes from a committed record under `results/`
through this module (embedded and checked by `report.embedded`). A row names its command (preset, overlays and
`--set` items, as typed), the machine and the record it came from.
"""
from __future__ import annotations

from pathlib import Path

from repsearch.store import record as records_mod

# (headline key of the SGD figure, of the search-based figure) for each kind of record in the table
FIGURES = {"run": ("sgd_test_accuracy", "search_test_accuracy"),
           "rounds": ("sgd_test_accuracy", "last_round_test_accuracy")}
HEADER = ("| command | dataset | training images | seeds | SGD | search-based | gap (points) | time | machine | record |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def command(rec) -> str:
    """The command's settings as typed: subcommand, preset, overlays and each --set item."""
    ranks = int(rec.environment.get("world_size") or 1)
    argv, parts, i = rec.argv, [f"torchrun --nproc_per_node {ranks} -m repsearch {rec.kind}" if ranks > 1 else rec.kind], 0
    if rec.preset:
        parts.append(f"--preset {rec.preset}")
    parts += [f"--overlay {o}" for o in rec.overlays]
    while i < len(argv):
        if argv[i] in ("--set", "--later-set", "--seeds", "--rounds", "--learners", "--members") and i + 1 < len(argv):
            parts.append(f"{argv[i]} {argv[i + 1]}")
            i += 1
        i += 1
    return "`" + " ".join(parts) + "`"


def machine(env: dict) -> str:
    """The hardware in a few words: the GPU if one ran it, else the CPU's name and core count."""
    if env.get("cuda_device"):
        return env["cuda_device"]
    name = (env.get("cpu_model_name") or env.get("processor") or "CPU").replace("(R)", "").replace("(TM)", "")
    return f"{' '.join(name.split()[:3])}, {env.get('cpu_count', '?')} cores ({env.get('cpu_capability', '?')})"


def _percent(values: list, mean: float, std: float | None) -> str:
    return f"{100 * mean:.2f}%" if len(values) < 2 else f"{100 * mean:.2f} ± {100 * std:.2f}%"


def row(rec, path: Path, root: Path | None = None) -> str | None:
    """One table row for a run or rounds record (None for other kinds)."""
    if rec.kind not in FIGURES:
        return None
    h = rec.headline
    sgd_key, search_key = FIGURES[rec.kind]
    n = len(rec.seeds)
    sgd = _percent(rec.seeds, h[sgd_key], h.get(f"{sgd_key}_std"))
    search = _percent(rec.seeds, h[search_key], h.get(f"{search_key}_std"))
    gap = 100 * (h[sgd_key] - h[search_key])
    gap_text = f"{gap:.2f}" if n < 2 else f"{gap:.2f} ± {h.get('gap_points_std', 0.0):.2f} (max {h.get('gap_points_max', gap):.2f})"
    minutes = f"{rec.wall_seconds / 60:.1f} min" + (" †" if resumed(rec) else "")
    shown = path.relative_to(root) if root is not None and path.is_relative_to(root) else path
    from .tables import DISPLAY
    return (f"| {command(rec)} | {DISPLAY.get(rec.dataset, rec.dataset)} | {rec.train_images:,} | {n} | {sgd} | {search} | {gap_text} | "
            f"{minutes} | {machine(rec.environment)} | [{shown.parent.name}]({shown}) |")


# The settings a row is compared on with the paper's (Appendix A), in the words a reader knows.
COMPARED = (("model.widths", "width"), ("search.pop_size", "population"), ("search.generations", "generations"),
            ("search.alpha", "alpha"), ("learn.groups_per_block", "learner groups per block"),
            ("learn.epochs", "learner epochs"), ("learn.max_steps", "learner step cap"),
            ("learn.patience", "learner early stopping"), ("baseline.depths", "SGD depths"),
            ("baseline.epochs", "SGD epochs"), ("baseline.max_steps", "SGD step cap"), ("baseline.lr", "SGD lr"),
            ("learn.batch_size", "learner batch"), ("baseline.batch_size", "SGD batch"),
            ("learn.head_refit_l2", "head refit L2"))


def _get(config: dict, key: str):
    section, field = key.split(".")
    return config.get(section, {}).get(field)


def departures(rec) -> str:
    """What a row's command reduces or adds against the paper's settings for its dataset (Appendix A;
    for datasets the paper does not use, the nearest it does), and which of them it keeps, in one
    line computed from the record's config."""
    from repsearch.config import resolve
    from repsearch.config.assemble import PAPER_PRESET
    paper_name = PAPER_PRESET.get(rec.dataset)
    if paper_name is None:
        return ""
    paper = resolve(paper_name).to_dict()
    diffs = [f"{label} {_get(rec.config, key)} ({_get(paper, key)})" for key, label in COMPARED
             if _get(rec.config, key) != _get(paper, key)]
    kept = [label for key, label in COMPARED if _get(rec.config, key) == _get(paper, key)]
    subset = rec.config["data"]["subset"]
    images = f"{subset:,} training images (holdout included)" if subset else "every training image"
    return (f"{command(rec)}: {images}; against `{paper_name}` (the paper's, in parentheses): "
            + ("; ".join(diffs) if diffs else "the paper's settings")
            + (f"; keeps the paper's {', '.join(kept)}" if kept and diffs else ""))


def resumed(rec) -> bool:
    """Whether the record's stages took longer than its own call: part of the run ran in earlier calls."""
    return sum(rec.stage_seconds.values()) > rec.wall_seconds + 1


RESUMED_NOTE = ("- † the record's wall time is its last call's; its stages' own times add to more, so part of the "
                "run ran in earlier calls (it was stopped and resumed).")


def table(paths, root: Path | None = None) -> str:
    """The Markdown table of every run/rounds record at or under `paths` (sorted by record path),
    then one line per row saying what its command reduces of the paper's settings."""
    rows, notes = [], []
    for path in records_mod.find(paths):
        rec = records_mod.read(path)
        r = row(rec, path, root)
        if r is not None:
            rows.append(r)
            notes.append(f"- {departures(rec)}")
            if resumed(rec) and RESUMED_NOTE not in notes:
                notes.insert(0, RESUMED_NOTE)
    return HEADER + "\n" + "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n"


def write_results(paths, out: Path, root: Path | None = None) -> Path:
    from repsearch.store.atomic import atomic_write_text
    atomic_write_text(Path(out), table(paths, root))
    return Path(out)
