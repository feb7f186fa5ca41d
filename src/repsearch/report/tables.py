"""`repsearch tables RUN_DIR... --out PREFIX`: the paper's Tables 1 and 2 across datasets.

Datasets are columns (one per `repsearch run` directory, named by the dataset it ran on:
`cifar10-jpeg` stays `cifar10-jpeg`), methods are rows, cells are test accuracy mean ± std over
that run's seeds. Table 1 is without augmentation, Table 2 with it; a method a run did not train
is a dash. Written as PREFIX.md and PREFIX.tex (booktabs).
"""
from __future__ import annotations

from pathlib import Path

from repsearch.errors import UserError
from repsearch.store import records

LABELS = {"sgd": "SGD", "all": "Search-based (All layers)", "skip0": "Search-based (Skip block 0)"}
TITLES = {"noaug": "Table 1: test accuracy (%) without data augmentation",
          "aug": "Table 2: test accuracy (%) with data augmentation"}
METHOD_ORDER = ("sgd", "skip0", "all")
DISPLAY = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
           "digits": "digits (scikit-learn)", "cifar10-jpeg": "cifar10-jpeg"}  # the JPEG copy is never "CIFAR-10"


def column_name(results: dict, config: dict) -> str:
    """The dataset, and the number of training images when the run used a subset."""
    subset = config.get("data", {}).get("subset", 0)
    name = DISPLAY.get(results["dataset"], results["dataset"])
    return f"{name} ({subset:,} images)" if subset else name


def _results(path: Path) -> tuple[dict, dict]:
    """(results as results.json has them, the run's config) from a run directory or from a run
    record (record.json, or a directory holding one and no results.json): committed records are
    enough to rebuild the tables."""
    from repsearch.store import record
    path = Path(path)
    found = path if path.name == "record.json" else path / "record.json"
    if found.is_file() and not (path / "results.json").exists():
        rec = record.read(found)
        if not rec.tables:
            raise UserError(f"{found} holds no Tables 1-2 (a 'repsearch run' record written since 2026-12-04 does)")
        return {"dataset": rec.dataset, "seeds": len(rec.seeds), "table": rec.tables}, rec.config
    return records.results(path), records.config(path) or {}


def gather(run_dirs: list[Path]) -> dict:
    """{"columns": [(name, seeds)], "tables": {aug: {method: [cell or None per column]}}}: each
    source a finished `run` directory or its record."""
    columns, tables = [], {"noaug": {}, "aug": {}}
    for i, run in enumerate(run_dirs):
        res, config = _results(run)
        columns.append((column_name(res, config), res["seeds"]))
        for method, by_aug in res["table"].items():
            for aug, cell in by_aug.items():
                row = tables[aug].setdefault(method, [None] * len(run_dirs))
                row[i] = cell
    ordered = {aug: {m: rows[m] for m in sorted(rows, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 9)}
               for aug, rows in tables.items() if rows}
    return {"columns": columns, "tables": ordered}


def _cell(cell, pm: str) -> str:
    """mean ± std; one seed has no spread to show, so its cell is the value alone."""
    if cell is None:
        return "–"
    if len(cell.get("values", [])) == 1:
        return f"{100 * cell['mean']:.1f}"
    return f"{100 * cell['mean']:.1f} {pm} {100 * cell['std']:.1f}"


def markdown(g: dict) -> str:
    out = []
    for aug, rows in g["tables"].items():
        head = [f"{name}, {seeds} seed{'s' if seeds > 1 else ''}" for name, seeds in g["columns"]]
        out += [f"{TITLES[aug]}. Mean ± std over seeds.", "", "| method | " + " | ".join(head) + " |",
                "|---|" + "---|" * len(head)]
        out += [f"| {LABELS.get(m, m)} | " + " | ".join(_cell(c, "±") for c in cells) + " |" for m, cells in rows.items()]
        out.append("")
    return "\n".join(out)


def latex(g: dict) -> str:
    esc = lambda s: s.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%").replace("&", "\\&")
    out = ["% repsearch tables (booktabs)"]
    for aug, rows in g["tables"].items():
        n = len(g["columns"])
        out += ["\\begin{table}[t]", "\\centering", f"\\caption{{{esc(TITLES[aug])}. Mean $\\pm$ std over seeds.}}",
                f"\\begin{{tabular}}{{l{'c' * n}}}", "\\toprule",
                " & ".join(["Method", *(esc(name) for name, _ in g["columns"])]) + " \\\\", "\\midrule"]
        out += [" & ".join([esc(LABELS.get(m, m)), *(_cell(c, "$\\pm$") for c in cells)]) + " \\\\"
                for m, cells in rows.items()]
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)


def write_tables(run_dirs: list[Path], prefix: Path) -> tuple[Path, Path]:
    from repsearch.store.atomic import atomic_write_text
    g = gather(run_dirs)
    md, tex = Path(f"{prefix}.md"), Path(f"{prefix}.tex")
    atomic_write_text(md, markdown(g))
    atomic_write_text(tex, latex(g))
    return md, tex
